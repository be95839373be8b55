"""Hole fillers: one protocol, a registry, and the choice behind ``--fill auto``.

A filler turns frame-matrix cells (``matrix.Cells``: warped views with holes, their depth, the input
view) into hole-free views. The fill stage (``stage.FillStage``) calls it chunk by chunk::

    filler = make("classical", config, device)          # REGISTRY[name](config, device)
    filler.stages(clip, plan, ...)                      # its pre-pass stages, run before the fill (diffusion: denoised)
    filler.bind(inputs)                                 # the stores of the stages it reads
    views = filler.fill(cells, core=(a, b), progress)   # cells cover a - context .. b + context - 1 of one shot

``fill`` returns ``(V, b - a, 3, H, W)`` in [0, 1] for ``cells.views`` and the frames ``a .. b-1`` (calling
``progress(n)``, when given, as it does them: n sums to b - a; ``stages.scaled`` counts other units as frames), with
every known pixel unchanged; its result may depend only on the cells it is given, so a clip filled in
chunks equals the clip filled whole. ``context`` is the frames it needs on each side of a chunk; the stage
cuts a chunk at a cut and stops the context there (``shots.chunk_pieces``), so each shot is filled as a clip of
its own. ``params()`` is what decides its output (the stage record's key).

A new filler is one module with a class following ``Filler`` (``SinglePass`` gives one without a pre-pass its
``stages`` and ``bind``) and one line in ``REGISTRY``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...checks import InputError
from .base import Filler

if TYPE_CHECKING:
    import torch

    from ...config import ConvertConfig

log = logging.getLogger(__name__)


def _classical(config: ConvertConfig, device: torch.device) -> Filler:
    from .classical import ClassicalFiller

    return ClassicalFiller(config.classical)


def _telea(config: ConvertConfig, device: torch.device) -> Filler:
    from .telea import TeleaFiller

    return TeleaFiller()


def _previous(config: ConvertConfig, device: torch.device) -> Filler:
    from .previous import PreviousFiller

    return PreviousFiller()


def _diffusion(config: ConvertConfig, device: torch.device) -> Filler:
    from .diffusion import DiffusionFiller

    return DiffusionFiller(config.diffusion, device=device)


REGISTRY: dict[str, Callable[[ConvertConfig, torch.device], Filler]] = {
    "classical": _classical,  # weight-free: background from other frames along flow and depth, then space
    "diffusion": _diffusion,  # the paper's: frame-matrix denoising with zeroscope
    "telea": _telea,  # OpenCV's Telea inpainting, blind to depth and time: the baseline
    "previous": _previous,  # the weight-free filler before issue 12 (a static camera's), kept to compare with
}
# Views a filler needs in the matrix beyond the eyes (diffusion denoises along the paper's 8 views).
VIEWS: dict[str, int | None] = {"classical": None, "diffusion": 8, "telea": None, "previous": None}


def make(name: str, config: ConvertConfig, device: torch.device) -> Filler:
    if name not in REGISTRY:
        raise InputError(f"fill {name}: expected one of {', '.join(REGISTRY)}", params=("fill",))
    return REGISTRY[name](config, device)


def resolve(name: str, config: ConvertConfig, device: torch.device) -> str:
    """``auto`` -> ``diffusion`` when the video model is here and the device is CUDA, else ``classical``
    (said in one line); any other name as it is. ``diffusion`` with its model missing fails now, before
    any stage runs."""
    from ... import models

    if name == "diffusion":
        models.check_available(config.diffusion.model, "video model", flag="video_model", probe_file="unet/config.json")
    if name != "auto":
        return name
    if device.type != "cuda":
        reason = "no CUDA device (diffusion on the CPU takes hours)"
    else:
        reason = models.missing_reason(config.diffusion.model, "unet/config.json")
    if reason is None:
        return "diffusion"
    log.info("fill: classical (auto: %s; --fill diffusion to use the model anyway)", reason)
    return "classical"
