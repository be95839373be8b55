"""The frame matrix: V views x T frames of warped pixels and known-masks (DESIGN.md §4).

In memory (conventions in ``camera``): ``images (V, T, 3, H, W)`` float32 in [0, 1] with holes 0,
``masks (V, T, 1, H, W)`` bool, True = known. A *column* is one view over time; a *row* is one time
over the views.

On disk, the reference layout, so that matrices made by either implementation load in both::

    {frame:05d}_baseline_{B}_{view:03d}.jpg        warped RGB (or .png with lossless=True)
    {frame:05d}_baseline_{B}_{view:03d}_mask.png   known-mask, 0 / 255
    manifest.json                                  ours: baselines, layout, focal, sizes, format

``manifest.json`` is written last, so a folder with a manifest is complete. Folders without one
(made by the reference) are read by parsing the file names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import camera, io
from .checks import InputError, check_shape

MANIFEST = "manifest.json"
_NAME = re.compile(r"^(\d+)_baseline_(.+)_(\d+)_mask\.png$")


@dataclass(frozen=True)
class MatrixInfo:
    """What a frame matrix on disk holds (its ``manifest.json``)."""

    num_views: int
    num_frames: int
    height: int
    width: int
    baselines: tuple[float, ...]  # metres, per view (camera.view_baselines)
    max_baseline: float
    layout: str  # camera.Layout value
    focal: float  # pixels
    image_suffix: str = ".jpg"  # ".jpg" (reference) or ".png" (lossless)
    frame_names: tuple[str, ...] = ()  # stems of the source frames, if known
    fps: float = io.DEFAULT_FPS
    # how depth became Z (camera.disparity_to_depth), recorded so that resume can compare runs
    nearest_depth: float = -1.0
    farest_depth: float = camera.DEFAULT_FAREST_DEPTH
    metric_depth: bool = False
    num_planes: int = 4

    @property
    def reference_view(self) -> int:
        return camera.reference_view(self.num_views, self.layout)


@dataclass
class FrameMatrix:
    """Warped views and their known-masks.

    images: float32 ``(V, T, 3, H, W)`` in [0, 1], 0 in holes.
    masks:  bool ``(V, T, 1, H, W)``, True = known.
    info:   sizes, baselines and camera.
    """

    images: torch.Tensor
    masks: torch.Tensor
    info: MatrixInfo

    def __post_init__(self) -> None:
        s = check_shape(self.images, "V T 3 H W", "images")
        m = check_shape(self.masks, "V T 1 H W", "masks")
        if (s["V"], s["T"], s["H"], s["W"]) != (m["V"], m["T"], m["H"], m["W"]):
            raise ValueError(f"images {tuple(self.images.shape)} and masks {tuple(self.masks.shape)} disagree")
        if self.masks.dtype != torch.bool:
            raise ValueError(f"masks must be bool, got {self.masks.dtype}")


def file_stem(frame: int, view: int, max_baseline: float) -> str:
    """The reference's name for one cell: ``%05d_baseline_%s_%03d`` (``%s`` of a Python float)."""
    return "%05d_baseline_%s_%03d" % (frame, max_baseline, view)  # noqa: UP031 (the reference format, verbatim)


def save_frame_matrix(fm: FrameMatrix, folder: str | Path, *, jpeg_quality: int = 95) -> None:
    """Write every cell atomically, then the manifest (whose presence marks the folder complete)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # incomplete until rewritten
    info = fm.info
    rgb = (fm.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()  # V T H W 3
    mask = fm.masks[:, :, 0].cpu().numpy().astype(np.uint8) * 255  # V T H W
    for v in range(info.num_views):
        for t in range(info.num_frames):
            stem = file_stem(t, v, info.max_baseline)
            io.write_image(folder / f"{stem}{info.image_suffix}", rgb[v, t], jpeg_quality=jpeg_quality)
            io.write_image(folder / f"{stem}_mask.png", mask[v, t])
    io.write_text(folder / MANIFEST, json.dumps(asdict(info), indent=1))


def read_matrix_info(folder: str | Path) -> MatrixInfo:
    """The manifest of a frame-matrix folder, or one inferred from reference file names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such frame-matrix folder")
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
            data["baselines"] = tuple(data["baselines"])
            data["frame_names"] = tuple(data.get("frame_names", ()))
            return MatrixInfo(**data)
        except (ValueError, TypeError, KeyError) as e:
            raise InputError(f"{manifest}: unreadable manifest ({e})") from None
    return _infer_info(folder)


def _infer_info(folder: Path) -> MatrixInfo:
    cells: dict[tuple[int, int], str] = {}
    baselines: set[str] = set()
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if m:
            cells[int(m.group(1)), int(m.group(3))] = m.group(2)
            baselines.add(m.group(2))
    if not cells:
        raise InputError(f"{folder}: no frame-matrix files (*_baseline_*_mask.png) in this folder")
    if len(baselines) > 1:
        raise InputError(f"{folder}: frame matrices of several baselines mixed ({sorted(baselines)})")
    num_frames = max(t for t, _ in cells) + 1
    num_views = max(v for _, v in cells) + 1
    max_baseline = float(baselines.pop())
    suffix = ".png" if (folder / (file_stem(0, 0, max_baseline) + ".png")).is_file() else ".jpg"
    first = io.read_image(folder / (file_stem(0, 0, max_baseline) + suffix))
    h, w = first.shape[:2]
    # The reference writes no manifest; its default is left2right-like numbering (view 0 = input).
    layout = camera.Layout.LEFT2RIGHT
    return MatrixInfo(
        num_views=num_views,
        num_frames=num_frames,
        height=h,
        width=w,
        baselines=tuple(camera.view_baselines(num_views, max_baseline, layout).tolist()),
        max_baseline=max_baseline,
        layout=layout.value,
        focal=camera.default_focal(w),
        image_suffix=suffix,
    )


def load_frame_matrix(
    folder: str | Path,
    *,
    num_views: int | None = None,
    num_frames: int | None = None,
    start_frame: int = 0,
) -> FrameMatrix:
    """Load a frame matrix, checking it holds the views and frames asked for.

    ``num_views``: must equal the views on disk when given. ``num_frames``/``start_frame``: the frame
    range to load (all when ``None``). Every missing file is an ``InputError`` naming it.
    """
    folder = Path(folder)
    info = read_matrix_info(folder)
    if num_views is not None and num_views != info.num_views:
        raise InputError(f"{folder}: holds {info.num_views} views, but --num_views is {num_views}")
    frames = info.num_frames - start_frame if num_frames is None else num_frames
    if start_frame + frames > info.num_frames or frames < 1:
        raise InputError(f"{folder}: holds {info.num_frames} frames, but frames {start_frame}..{start_frame + frames - 1} were asked for")
    images = np.empty((info.num_views, frames, info.height, info.width, 3), np.uint8)
    masks = np.empty((info.num_views, frames, info.height, info.width), bool)
    for v in range(info.num_views):
        for i in range(frames):
            stem = file_stem(start_frame + i, v, info.max_baseline)
            img = io.read_image(folder / f"{stem}{info.image_suffix}")
            mask_path = folder / f"{stem}_mask.png"
            mask = io.read_image(mask_path)[..., 0]
            for what, arr, path in (("image", img, stem + info.image_suffix), ("mask", mask, mask_path.name)):
                if arr.shape[:2] != (info.height, info.width):
                    raise InputError(f"{folder / path}: {what} is {arr.shape[1]}x{arr.shape[0]}, the matrix is {info.width}x{info.height}")
            images[v, i] = img
            masks[v, i] = mask > 127
    info = MatrixInfo(**{**asdict(info), "num_frames": frames, "frame_names": info.frame_names[start_frame : start_frame + frames]})
    return FrameMatrix(
        images=torch.from_numpy(images).permute(0, 1, 4, 2, 3).float() / 255,  # V T H W 3 -> V T 3 H W
        masks=torch.from_numpy(masks)[:, :, None],  # V T H W -> V T 1 H W
        info=info,
    )


def build_frame_matrix(
    frames: torch.Tensor,
    depth: torch.Tensor,
    info: MatrixInfo,
    *,
    num_planes: int = 4,
    chunk: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> FrameMatrix:
    """Warp every frame to every view of ``info`` (DESIGN.md §4).

    frames: float ``(T, 3, H, W)`` in [0, 1]. depth: metric depth ``Z`` ``(T, H, W)`` (see
    ``camera.disparity_to_depth``). The reference view is the input frame with an all-ones mask.
    ``chunk``: frames warped per batch (bounds memory; the result does not depend on it). Default:
    2 on the CPU (the working set then stays in cache, ~2x faster than 16), all frames on CUDA.
    ``progress``: called with the number of frames done after each chunk.
    """
    from .warp import warp_views

    s = check_shape(frames, "T 3 H W", "frames")
    d = check_shape(depth, "T H W", "depth")
    if (s["T"], s["H"], s["W"]) != (d["T"], d["H"], d["W"]):
        raise ValueError(f"frames {tuple(frames.shape)} and depth {tuple(depth.shape)} disagree")
    baselines = torch.tensor(info.baselines, dtype=frames.dtype, device=frames.device)
    chunk = chunk or (s["T"] if frames.device.type == "cuda" else 2)
    images, masks = [], []
    for t0 in range(0, s["T"], chunk):
        img, msk = warp_views(frames[t0 : t0 + chunk], depth[t0 : t0 + chunk], baselines, info.focal, num_planes=num_planes)
        images.append(img)
        masks.append(msk)
        if progress is not None:
            progress(min(chunk, s["T"] - t0))
    images_t = torch.cat(images, dim=1)  # V T 3 H W
    masks_t = torch.cat(masks, dim=1)
    ref = info.reference_view
    images_t[ref] = frames
    masks_t[ref] = True
    return FrameMatrix(images_t, masks_t, info)


@dataclass(frozen=True)
class MatrixConfig:
    """How to build a frame matrix (create_frame_matrix.py's flags)."""

    num_views: int = 8  # cameras from the input to the other eye (SVG README: 8; 4 is often enough)
    max_baseline: float = camera.DEFAULT_BASELINE  # metres between the two eyes (paper: 7 cm)
    layout: camera.Layout = camera.Layout.LEFT2RIGHT  # input = left eye, as the seed commands use
    focal: float | None = None  # pixels; None = 800 at 576 px wide, scaled with the width
    nearest_depth: float = -1.0  # metres; <= 0: the nearest point lands at ~0.91 m (reference)
    farest_depth: float = camera.DEFAULT_FAREST_DEPTH  # metres; the farthest point
    metric_depth: bool = False  # depth files hold inverse metric depth (1/m), not relative disparity
    num_planes: int = 4  # depth layers of the crack clean-up (reference)
    lossless: bool = False  # PNG instead of the reference's JPEG (JPEG bleeds colour into holes)


def frame_matrix_from_clip(
    frames: np.ndarray,
    disparity: np.ndarray,
    config: MatrixConfig,
    *,
    frame_names: tuple[str, ...] = (),
    fps: float = io.DEFAULT_FPS,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> FrameMatrix:
    """The frame matrix of a clip: frames ``uint8 (T, H, W, 3)``, disparity ``(T, H, W)`` (raw, as saved
    by the depth stage, or inverse metric depth with ``config.metric_depth``).

    Depth is normalised over the whole clip (``camera.disparity_to_depth``). Returned on the CPU.
    """
    t, h, w, _ = frames.shape
    if disparity.shape != (t, h, w):
        raise ValueError(f"disparity {disparity.shape} does not match frames {frames.shape}")
    focal = config.focal if config.focal is not None else camera.default_focal(w)
    baselines = camera.view_baselines(config.num_views, config.max_baseline, config.layout)
    info = MatrixInfo(
        num_views=config.num_views,
        num_frames=t,
        height=h,
        width=w,
        baselines=tuple(float(b) for b in baselines),
        max_baseline=config.max_baseline,
        layout=camera.Layout(config.layout).value,
        focal=float(focal),
        image_suffix=".png" if config.lossless else ".jpg",
        frame_names=tuple(frame_names),
        fps=fps,
        nearest_depth=config.nearest_depth,
        farest_depth=config.farest_depth,
        metric_depth=config.metric_depth,
        num_planes=config.num_planes,
    )
    rgb = torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).float() / 255  # T H W 3 -> T 3 H W
    z = camera.disparity_to_depth(
        torch.from_numpy(disparity).to(device).float(),
        nearest_depth=config.nearest_depth,
        farest_depth=config.farest_depth,
        metric=config.metric_depth,
    )
    fm = build_frame_matrix(rgb, z, info, num_planes=config.num_planes, progress=progress)
    return FrameMatrix(fm.images.cpu(), fm.masks.cpu(), info)
