"""A quick look at the 3D effect of one frame, in seconds, before a long conversion (the web UI's preview).

The same library code as ``convert``, on one frame: the disparity of the frame from the chosen depth source
(a depth network, ``stages.depth.predict_disparity``, or a map the user gave), the normalisation range of a
one-frame clip (``depth.frame_stats`` and ``shots.depth_ranges``), the view plan (``camera.plan_views``), the
warp (``stages.matrix.MatrixSource``, over ``warp.warp_views``) and a quick fill of the holes on that frame
alone (``QUICK_FILLERS``: classical or Telea; diffusion needs minutes, so its preview uses classical and says
so). The result is the stereo pair, shown as an anaglyph, side by side and as a wiggle GIF.

``Previewer`` keeps the disparity of the frames it has seen (``cache_frames``), so moving a slider re-warps
and re-fills only. Library code: no gradio, no printing.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .config import ConvertConfig

log = logging.getLogger(__name__)

QUICK_FILLERS = ("classical", "telea")  # fill a single frame in well under a second at 640x360 on a CPU core
STAND_IN_FILLER = "classical"  # what previews a filler that is not quick (diffusion, auto)
WIGGLE_MS = 140  # ms per eye in the wiggle GIF: fast enough to see depth, slow enough to follow
CACHE_FRAMES = 16  # disparity maps kept (one per frame, source and size)
MAX_WIDTH = 960  # px: the page shows the preview smaller; a wider frame is previewed downscaled (1080p: ~4x faster)


@dataclass(frozen=True)
class PreviewPair:
    """The stereo pair of one frame: ``left``, ``right`` ``uint8 (H, W, 3)``; ``filler``: the filler used;
    ``holes``: the share of the far eye's pixels that were holes before the fill (the effect's cost)."""

    left: np.ndarray
    right: np.ndarray
    filler: str
    holes: float


def quick_filler(name: str) -> str:
    """The filler a preview uses for ``--fill name``: itself when it is quick, else ``STAND_IN_FILLER``."""
    return name if name in QUICK_FILLERS else STAND_IN_FILLER


def stereo_pair(frame: np.ndarray, disparity: np.ndarray, config: ConvertConfig) -> PreviewPair:
    """The filled stereo pair of one frame as ``convert`` with ``config`` would make it.

    frame: ``uint8 (H, W, 3)`` RGB; disparity: float ``(h, w)`` relative inverse depth (larger = nearer), any
    size (resized bilinearly to the frame's, as ``MatrixSource`` does). The depth range is the frame's own (a
    one-frame clip); views, strength, screen plane, layout, border as ``config`` says.
    """
    import torch

    from . import camera, shots
    from .stages import depth as depth_stage
    from .stages import fill as fillers
    from .stages.matrix import MatrixSource

    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame: expected uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    if disparity.ndim != 2:
        raise ValueError(f"disparity: expected (h, w), got {disparity.shape}")
    d = np.ascontiguousarray(disparity, np.float32)[None]  # (1, h, w)
    lo, hi = shots.depth_ranges(depth_stage.frame_stats(d), config.matrix.depth_range)
    filler_name = quick_filler(config.filler)
    device = torch.device("cpu")
    plan = camera.plan_views(config.matrix, frame.shape[1], filler_views=None, all_views=False)
    source = MatrixSource(lambda a, b: frame[None], lambda a, b: d, lo, hi, plan, config.matrix, device=device, cache_frames=1)
    views = plan.fill_views  # the eyes that are not the input
    cells = source.cells(0, 1, views=views)
    filled = fillers.make(filler_name, config, device).fill(cells, (0, 1))  # (V, 1, 3, H, W)
    rgb = (filled[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # V 3 H W -> V H W 3
    out = {v: rgb[i] for i, v in enumerate(views)}
    out[plan.reference] = frame
    left, right = plan.eyes
    holes = float((~cells.known).float().mean())
    return PreviewPair(out[left], out[right], filler_name, holes)


def downscale(frame: np.ndarray, config: ConvertConfig, max_width: int = MAX_WIDTH) -> tuple[np.ndarray, ConvertConfig]:
    """``frame`` ``uint8 (H, W, 3)`` at most ``max_width`` wide (area interpolation, aspect kept) and ``config`` with
    a given focal length (pixels) scaled alike, so that the effect looks as at full size: the strength is in % of
    the width and the default focal follows the width."""
    import cv2

    h, w = frame.shape[:2]
    if w <= max_width:
        return frame, config
    scale = max_width / w
    small = cv2.resize(frame, (max_width, max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    if config.matrix.focal is not None:
        config = replace(config, matrix=replace(config.matrix, focal=config.matrix.focal * scale))
    return small, config


def anaglyph(pair: PreviewPair, kind: str) -> np.ndarray:
    """The pair as an anaglyph ``uint8 (H, W, 3)`` (``export.anaglyph``, the export's own)."""
    from .stages import export

    return export.anaglyph(pair.left[None], pair.right[None], kind)[0]


def side_by_side(pair: PreviewPair) -> np.ndarray:
    """The pair side by side, left eye left ``uint8 (H, 2W, 3)`` (``export.side_by_side``)."""
    from .stages import export

    return export.side_by_side(pair.left[None], pair.right[None])[0]


def write_wiggle(path: Path, pair: PreviewPair, *, ms: int = WIGGLE_MS) -> Path:
    """A looping GIF alternating the left and the right eye (a "wiggle stereogram"), written atomically."""
    from . import io

    io.write_gif(path, np.stack([pair.left, pair.right]), fps=1000.0 / ms)
    return Path(path)


class Previewer:
    """Results by key, computed once and the last ``cache_frames`` kept: the page keeps each frame and its
    disparity, so that a changed setting re-warps and re-fills only. Thread-safe (a web server's threads).
    ``computed`` counts the values computed rather than found."""

    def __init__(self, cache_frames: int = CACHE_FRAMES) -> None:
        self.cache_frames = cache_frames
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0

    def get(self, key: tuple, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The value kept under ``key``, or ``compute()`` kept under it."""
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = compute()
        with self._lock:
            self.computed += 1
            self._cache[key] = value
            while len(self._cache) > self.cache_frames:
                self._cache.popitem(last=False)
        return value


def model_disparity(model, frame: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """The disparity ``float32 (h, w)`` of one ``uint8 (H, W, 3)`` frame by a ``models.DepthModel``, at ``size``
    (default: the frame's; ``convert`` keeps depth at ``stages.depth.depth_size``)."""
    import torch

    from .stages import depth as depth_stage

    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255.0  # H W 3 -> 1 3 H W, [0, 1]
    return depth_stage.predict_disparity(model, x, size=size)[0].cpu().numpy()
