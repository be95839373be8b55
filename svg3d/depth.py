"""Stage 1: monocular disparity per frame (DESIGN.md §2).

The network (Depth Anything, or any ``AutoModelForDepthEstimation`` checkpoint, loaded by
``models.load_depth_model``) predicts relative inverse depth — *disparity* in ``camera``'s terms,
larger = nearer, no unit. We save it raw (not normalised): stage 3 normalises over the whole clip.

Pre-/post-processing as the Depth Anything reference (``svg_run.py``): resize keeping the aspect so
the short side is >= 518 and both sides are multiples of 14 (bicubic), ImageNet normalisation; the
prediction is upsampled bilinearly to the frame size and clamped at 0.

On disk: ``<out>/<stem>_depth.npy`` float32 (H, W) per frame, and a colour-mapped preview
``<out>/preview/<stem>_depth.png``. The previews live in a sub-folder (the reference writes them beside
the ``.npy`` files) so that the depth folder holds depth maps only and ``io.list_depths`` stays strict.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import io
from .checks import InputError, check_shape
from .models import DepthModel

log = logging.getLogger(__name__)

DEPTH_NAME = "{stem}_depth"  # the reference's file stem: 00000.jpg -> 00000_depth.npy
PREVIEW_DIR = "preview"
DEFAULT_BATCH_SIZE = 4  # frames per forward pass; memory only, results do not depend on it


def network_size(height: int, width: int, *, input_size: int = 518, multiple: int = 14) -> tuple[int, int]:
    """Network input ``(h, w)`` for a frame: aspect kept, short side >= ``input_size``, multiples of ``multiple``.

    Depth Anything's "lower_bound" resize: scale by ``input_size / short side``, round each side to
    the nearest multiple, rounding up instead when that would fall below ``input_size``.
    320x576 -> 518x938.
    """
    scale = input_size / min(height, width)

    def side(x: float) -> int:
        y = round(x / multiple) * multiple
        return y if y >= input_size else math.ceil(x / multiple) * multiple

    return side(height * scale), side(width * scale)


def preprocess(
    frames: torch.Tensor,
    size: tuple[int, int],
    *,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> torch.Tensor:
    """Resize and normalise frames for the network.

    frames: float ``(N, 3, H, W)`` RGB in [0, 1]. Returns float ``(N, 3, h, w)`` with ``size = (h, w)``.
    Bicubic as the reference's ``cv2.INTER_CUBIC`` (identical when enlarging); unlike it we
    antialias when shrinking (large videos), where plain bicubic would alias.
    """
    check_shape(frames, "N 3 H W", "frames")
    shrink = size[0] < frames.shape[-2] or size[1] < frames.shape[-1]
    x = F.interpolate(frames, size=size, mode="bicubic", align_corners=False, antialias=shrink)
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


@torch.inference_mode()
def predict_disparity(model: DepthModel, frames: torch.Tensor) -> torch.Tensor:
    """Relative disparity of each frame.

    frames: float ``(N, 3, H, W)`` RGB in [0, 1] (any device; moved to the model's).
    Returns float32 ``(N, H, W)`` >= 0 on the model's device.
    """
    sizes = check_shape(frames, "N 3 H W", "frames")
    h, w = sizes["H"], sizes["W"]
    size = network_size(h, w, input_size=model.input_size, multiple=model.multiple)
    x = preprocess(frames.to(model.device, torch.float32), size, mean=model.mean, std=model.std)
    pred = model.net(pixel_values=x.to(model.dtype)).predicted_depth  # (N, h', w'), about the input size
    pred = F.interpolate(pred.float()[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    return pred.clamp_min(0.0)


def iter_disparity(
    model: DepthModel,
    frames: np.ndarray,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Disparity of a clip, batch by batch: yields ``(first frame index, float32 (B, H, W))``.

    frames: ``uint8`` ``(T, H, W, 3)`` RGB (``io.Clip.frames``). ``progress(n)`` after each batch.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames: expected uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(frames), batch_size):
        batch = torch.from_numpy(frames[start : start + batch_size]).to(model.device)
        batch = batch.permute(0, 3, 1, 2).float() / 255.0  # (B, H, W, 3) uint8 -> (B, 3, H, W) [0, 1]
        yield start, predict_disparity(model, batch).cpu().numpy()
        if progress is not None:
            progress(len(batch))


def preview_image(disparity: np.ndarray, *, grayscale: bool = False) -> np.ndarray:
    """``uint8`` RGB ``(H, W, 3)`` picture of a ``(H, W)`` disparity, min-max normalised per frame."""
    lo, hi = float(disparity.min()), float(disparity.max())
    norm = (disparity - lo) / (hi - lo) if hi > lo else np.zeros_like(disparity)
    grey = np.round(norm * 255.0).astype(np.uint8)
    if grayscale:
        return np.repeat(grey[..., None], 3, axis=-1)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def write_previews(out_dir: Path, names: list[str], disparity: np.ndarray, *, grayscale: bool = False) -> None:
    """Write ``out_dir/preview/<name>.png`` for each ``(H, W)`` map of ``disparity (B, H, W)``."""
    for name, d in zip(names, disparity, strict=True):
        io.write_image(out_dir / PREVIEW_DIR / f"{name}.png", preview_image(d, grayscale=grayscale))


def run_depth_stage(
    clip: io.Clip,
    out_dir: str | os.PathLike,
    model: DepthModel,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    preview: bool = True,
    grayscale: bool = False,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Stage 1: write ``out_dir/<stem>_depth.npy`` for every frame of a clip (``io.read_clip``); return those paths.

    Files are written as their batch finishes (atomically), so memory does not grow with the clip.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    log.info("depth: %d frames %dx%d from %s -> %s", clip.num_frames, clip.size[1], clip.size[0], clip.source, out_dir)
    written = []
    for start, disparity in iter_disparity(model, clip.frames, batch_size=batch_size, progress=progress):
        names = [DEPTH_NAME.format(stem=stem) for stem in clip.names[start : start + len(disparity)]]
        for name, d in zip(names, disparity, strict=True):
            path = out_dir / f"{name}.npy"
            io.write_depth(path, d)
            written.append(path)
        if preview:
            write_previews(out_dir, names, disparity, grayscale=grayscale)
    return written
