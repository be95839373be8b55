"""Hole fillers: one protocol, a registry, and the choice behind ``--fill auto``.

A filler turns frame-matrix cells (``matrix.Cells``: warped views with holes, their depth, the input
view) into hole-free views. The fill stage calls it chunk by chunk::

    filler = make("classical", config, device)          # REGISTRY[name](config, device)
    filler.prepare(context)                             # optional pre-pass (diffusion denoises its windows)
    views = filler.fill(cells, core=(a, b))             # cells cover a - context .. b + context - 1

``fill`` returns ``(V, b - a, 3, H, W)`` in [0, 1] for ``cells.views`` and the frames ``a .. b-1``, with
every known pixel unchanged; its result may depend only on the cells it is given, so a clip filled in
chunks equals the clip filled whole. ``context`` is the frames it needs on each side of a chunk;
``params()`` is what decides its output (the stage record's key).

A new filler is one module with a class following ``Filler`` (``SinglePass`` gives one without a pre-pass its
``prepare`` and ``stages``) and one line in ``REGISTRY``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ...checks import InputError

if TYPE_CHECKING:
    import torch

    from ...camera import ViewPlan
    from ...config import ConvertConfig
    from ..matrix import Cells, MatrixSource

log = logging.getLogger(__name__)


@dataclass
class FillContext:
    """What a filler's ``prepare`` may use: the clip's cells, its view plan, and stage stores of its own.

    stage(name, params, inputs) -> ``work.StageStore`` for a resumable pre-pass, and run(store, need_data,
    body) to compute it (skipped when complete, resumed when partly done, with a progress bar); inputs:
    the digests the fill stage's key holds, for the pre-pass's own key.
    """

    source: MatrixSource
    plan: ViewPlan
    num_frames: int
    chunk_frames: int
    stage: Callable
    progress: Callable
    inputs: dict
    run: Callable


class Filler(Protocol):
    name: str
    context: int  # frames of temporal context on each side of a chunk

    def params(self) -> dict: ...

    def prepare(self, context: FillContext) -> None: ...

    def stages(self) -> tuple[str, ...]: ...  # the names of its own pre-pass stages (cleaned with the others)

    def fill(self, cells: Cells, core: tuple[int, int]) -> torch.Tensor: ...


class SinglePass:
    """For fillers that fill each chunk from its cells alone: no pre-pass, no stages of their own."""

    def stages(self) -> tuple[str, ...]:
        return ()

    def prepare(self, context: FillContext) -> None:
        pass


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
