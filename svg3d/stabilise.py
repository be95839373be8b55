"""Stage 2: temporal depth stabilisation (DESIGN.md §3; the reference's ``svg_enhance_depth.py``).

For every frame i, with offsets k in [-r, r] (window 2r + 1) and weights w_k = 0.5^|k| / sum:

1. flow from frame i to each neighbour i + k (any ``flow.FlowBackend``);
2. backward-warp the neighbour's RGB and disparity into frame i, nearest sampling. A warped pixel
   is valid where its sample is inside the neighbour, its max-channel colour difference to frame i
   is <= ``rgb_threshold`` (0-255 scale) and its disparity differs from frame i's by at most
   ``depth_ratio`` x (max - min of the warped disparity). Frames past the clip ends are invalid;
   frame i itself is always valid;
3. fused = sum_k w_k m_k d_k / (sum_k w_k m_k + 1e-10);
4. guided filter (guide = raw disparity of frame i, input = fused), clamped at 0.

Conventions from ``camera``: pixel centres at integers, ``grid_sample(align_corners=True)``
everywhere — the reference normalises with ``W - 1`` but samples with ``align_corners=False``, which
shifts every sample by up to half a pixel; we use one convention. Disparity is relative inverse depth.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import io
from .checks import InputError, check_same, check_shape
from .depth import write_previews
from .flow import FlowBackend

log = logging.getLogger(__name__)

FUSE_EPS = 1e-10  # the reference's denominator guard in temporal_smoothness


@dataclass(frozen=True)
class StabiliseConfig:
    """Stage 2 settings; defaults are the reference's (``svg_enhance_depth.py``) and DESIGN.md §3."""

    window_size: int = 3  # --window_size: offsets -1, 0, +1; odd
    decay: float = 0.5  # neighbour weight decay^|k| (the reference's kernel, its "eps = 1")
    rgb_threshold: float = 20.0  # --rgb_threshold: max-channel colour difference, 0-255 scale
    depth_ratio: float = 0.5  # consistency_check: |d_k - d_i| <= 0.5 * (max - min) of d_k
    radius: int = 30  # guided filter radius: spatial_smoothness(radius_whole=30)
    eps: float = 1e-4  # guided filter epsilon: spatial_smoothness(epsilon=0.0001)
    pairs_per_batch: int = 8  # flow pairs per backend call: bounds memory, results do not depend on it

    def __post_init__(self) -> None:
        if self.window_size < 1 or self.window_size % 2 == 0:
            raise InputError(f"--window_size {self.window_size}: must be odd and >= 1")
        if not 0 < self.decay <= 1:
            raise InputError(f"decay {self.decay}: must be in (0, 1]")
        if self.rgb_threshold < 0:
            raise InputError(f"--rgb_threshold {self.rgb_threshold}: must be >= 0")
        if self.depth_ratio < 0:
            raise InputError(f"--depth_ratio {self.depth_ratio}: must be >= 0")
        if self.radius < 0:
            raise InputError(f"--radius {self.radius}: must be >= 0")
        if self.eps <= 0:
            raise InputError(f"--eps {self.eps}: must be > 0 (eps = 0 divides by zero on flat regions)")
        if self.pairs_per_batch < 1:
            raise InputError(f"pairs_per_batch {self.pairs_per_batch}: must be >= 1")

    @property
    def half_window(self) -> int:
        return self.window_size // 2


def window_weights(window_size: int, decay: float = 0.5) -> torch.Tensor:
    """Normalised weights ``(window_size,)`` float64 for offsets ``-r .. r``: ``decay^|k| / sum``."""
    r = window_size // 2
    w = decay ** torch.arange(-r, r + 1, dtype=torch.float64).abs()
    return w / w.sum()


# --------------------------------------------------------------------------------------------------
# guided filter


def _reflect_index(n: int, r: int, device: torch.device) -> torch.Tensor:
    """Indices ``(n + 2r,)`` of a length-``n`` axis padded by ``r`` with OpenCV's BORDER_REFLECT
    (``fedcba|abcdefgh|hgfedcb``), repeating the reflection when ``r > n``."""
    idx = torch.arange(-r, n + r, device=device) % (2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the ``(2r+1) x (2r+1)`` window of each pixel, borders reflected as OpenCV's BORDER_REFLECT.

    x: ``(N, H, W)``. Returns ``(N, H, W)`` in x's dtype. Separable running sums (cumsum): O(1) per pixel
    whatever the radius. Use float64 for large images: the running sums lose precision in float32.
    """
    check_shape(x, "N H W", "x")
    k = 2 * radius + 1
    for dim in (1, 2):
        n = x.shape[dim]
        padded = x.index_select(dim, _reflect_index(n, radius, x.device))  # (.., n + 2r, ..)
        csum = F.pad(padded.cumsum(dim), (1, 0) if dim == 2 else (0, 0, 1, 0))  # a leading 0 along dim
        x = (csum.narrow(dim, k, n) - csum.narrow(dim, 0, n)) / k
    return x


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """Grey-guide guided filter (He et al. 2010), equal to ``cv2.ximgproc.guidedFilter(guide, src, radius, eps)``.

    guide, src: ``(N, H, W)``. Returns ``(N, H, W)`` in src's dtype. Never NaN/inf for finite inputs and
    ``eps > 0``: computed in float64 on inputs shifted by their means (the filter commutes with such
    shifts), and the local variance is clamped at 0 before ``+ eps`` — the reference's float32
    ``var = E[I^2] - E[I]^2`` can go negative on flat regions and divide by ~0.
    """
    sizes = [check_shape(guide, "N H W", "guide"), check_shape(src, "N H W", "src")]
    check_same(sizes, "N H W", ["guide", "src"])
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    i = guide.double()
    p = src.double()
    i = i - i.mean(dim=(1, 2), keepdim=True)
    p_mean = p.mean(dim=(1, 2), keepdim=True)
    p = p - p_mean
    mean_i, mean_p = box_filter(i, radius), box_filter(p, radius)
    var_i = (box_filter(i * i, radius) - mean_i * mean_i).clamp_min(0.0)
    cov_ip = box_filter(i * p, radius) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    q = box_filter(a, radius) * i + box_filter(b, radius) + p_mean
    return q.to(src.dtype)


# --------------------------------------------------------------------------------------------------
# warping and fusion


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``image`` at ``(u + fx, v + fy)`` for every pixel ``(u, v)``, nearest neighbour.

    image: ``(N, C, H, W)``; flow: ``(N, 2, H, W)`` pixels (``flow`` module convention). Returns the
    warped image ``(N, C, H, W)`` (0 outside) and ``inside (N, H, W)`` bool: the sample fell in the image.
    """
    sizes = [check_shape(image, "N C H W", "image"), check_shape(flow, "N 2 H W", "flow")]
    check_same(sizes, "N H W", ["image", "flow"])
    n, c, h, w = image.shape
    v, u = torch.meshgrid(
        torch.arange(h, device=flow.device, dtype=flow.dtype),
        torch.arange(w, device=flow.device, dtype=flow.dtype),
        indexing="ij",
    )
    x = (u + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0  # (N, H, W), align_corners=True (camera conventions)
    y = (v + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([x, y], dim=-1)  # (N, H, W, 2), (x, y) order for grid_sample
    ones = torch.ones_like(image[:, :1])
    # Sampling a ones channel with the same call gives "inside" with exactly grid_sample's rounding.
    out = F.grid_sample(
        torch.cat([image, ones], 1), grid.to(image.dtype), mode="nearest", padding_mode="zeros", align_corners=True
    )
    return out[:, :c], out[:, c] > 0.5


def consistency_mask(
    rgb: torch.Tensor,
    disparity: torch.Tensor,
    warped_rgb: torch.Tensor,
    warped_disparity: torch.Tensor,
    inside: torch.Tensor,
    *,
    rgb_threshold: float,
    depth_ratio: float,
) -> torch.Tensor:
    """Where a warped neighbour can be trusted (step 2 of the module docstring).

    rgb, warped_rgb: ``(N, 3, H, W)`` on the 0-255 scale; disparity, warped_disparity: ``(N, H, W)``;
    inside: ``(N, H, W)`` bool. Returns ``(N, H, W)`` bool.

    The disparity range is taken over the samples inside the image. The reference takes it over the
    whole warped map, whose outside samples are grid_sample's zero padding: a pixel of padding is no
    disparity of the neighbour, and it would widen the threshold whenever the flow leaves the frame.
    """
    sizes = [
        check_shape(rgb, "N 3 H W", "rgb"),
        check_shape(warped_rgb, "N 3 H W", "warped_rgb"),
        check_shape(disparity, "N H W", "disparity"),
        check_shape(warped_disparity, "N H W", "warped_disparity"),
        check_shape(inside, "N H W", "inside"),
    ]
    check_same(sizes, "N H W", ["rgb", "warped_rgb", "disparity", "warped_disparity", "inside"])
    colour_ok = (warped_rgb - rgb).abs().amax(dim=1) <= rgb_threshold
    inf = torch.tensor(float("inf"), device=disparity.device, dtype=warped_disparity.dtype)
    hi = torch.where(inside, warped_disparity, -inf).amax(dim=(1, 2), keepdim=True)
    lo = torch.where(inside, warped_disparity, inf).amin(dim=(1, 2), keepdim=True)
    depth_ok = (warped_disparity - disparity).abs() <= depth_ratio * (hi - lo)
    return inside & colour_ok & depth_ok


@torch.inference_mode()
def stabilise_disparity(
    rgb: torch.Tensor,
    disparity: torch.Tensor,
    flow: FlowBackend,
    config: StabiliseConfig = StabiliseConfig(),
    *,
    device: torch.device | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Temporally stabilised disparity of a clip.

    rgb: ``(T, 3, H, W)``, float in [0, 1] or ``uint8``; disparity: ``(T, H, W)`` (clamped at 0 as the
    reference does on loading). Frames are moved to ``device`` (default: disparity's) a block at a
    time, so memory is bounded by ``config.pairs_per_batch``. Returns float32 ``(T, H, W)`` >= 0 on
    disparity's device. ``progress(n)`` after each block of frames.
    """
    sizes = [check_shape(rgb, "T 3 H W", "rgb"), check_shape(disparity, "T H W", "disparity")]
    check_same(sizes, "T H W", ["rgb", "disparity"])
    device = disparity.device if device is None else device
    t = sizes[0]["T"]
    r = config.half_window
    weights = window_weights(config.window_size, config.decay).tolist()  # index k + r
    offsets = [k for k in range(-r, r + 1) if k != 0]
    frames_per_block = max(1, config.pairs_per_batch // max(1, len(offsets)))
    out = torch.empty(disparity.shape, dtype=torch.float32, device=disparity.device)

    for a in range(0, t, frames_per_block):
        b = min(t, a + frames_per_block)
        lo, hi = max(0, a - r), min(t, b + r)  # frames [lo, hi) are needed for targets [a, b)
        block_rgb = rgb[lo:hi].to(device)
        block_rgb = block_rgb.float() if block_rgb.dtype == torch.uint8 else block_rgb.float() * 255.0  # 0-255
        block_d = disparity[lo:hi].to(device, torch.float32).clamp_min(0.0)
        own = block_d[a - lo : b - lo]  # (B, H, W) raw disparity of the targets
        num = weights[r] * own  # step 3: frame i itself is always valid
        den = torch.full_like(own, weights[r])

        pairs = [(i, i + k) for i in range(a, b) for k in offsets if 0 <= i + k < t]  # past the ends: invalid
        for c in range(0, len(pairs), config.pairs_per_batch):
            chunk = pairs[c : c + config.pairs_per_batch]
            ti = torch.tensor([i - lo for i, _ in chunk], device=device)  # targets, block index
            si = torch.tensor([j - lo for _, j in chunk], device=device)  # neighbours, block index
            fl = flow(block_rgb[ti] / 255.0, block_rgb[si] / 255.0)  # (P, 2, H, W) target -> neighbour
            neighbour = torch.cat([block_rgb[si], block_d[si][:, None]], 1)  # (P, 4, H, W): RGB + disparity
            warped, inside = backward_warp(neighbour, fl.to(device, torch.float32))
            valid = consistency_mask(
                block_rgb[ti],
                block_d[ti],
                warped[:, :3],
                warped[:, 3],
                inside,
                rgb_threshold=config.rgb_threshold,
                depth_ratio=config.depth_ratio,
            )
            w = torch.tensor([weights[j - i + r] for i, j in chunk], device=device).view(-1, 1, 1)
            wm = w * valid  # (P, H, W)
            num.index_add_(0, ti - (a - lo), wm * warped[:, 3])
            den.index_add_(0, ti - (a - lo), wm)

        fused = num / (den + FUSE_EPS)
        filtered = guided_filter(own, fused, config.radius, config.eps)  # step 4, guide = raw disparity
        out[a:b] = filtered.clamp_min(0.0).to(out.device)
        if progress is not None:
            progress(b - a)
    return out


# --------------------------------------------------------------------------------------------------
# the stage on disk


@dataclass(frozen=True)
class StageInputs:
    """What stage 2 reads: frames ``uint8 (T, H, W, 3)``, disparity ``float32 (T, H, W)``, output stems."""

    frames: np.ndarray
    disparity: np.ndarray
    names: tuple[str, ...]  # the depth files' stems, reused for the outputs (00000_depth ...)
    depth_folder: Path


def load_inputs(
    images: str | os.PathLike,
    depths: str | os.PathLike,
    *,
    file_suffix: str | None = None,
    depth_suffix: str | None = None,
) -> StageInputs:
    """Read frames (folder or video) and exactly one depth map per frame, of the frames' size.

    ``file_suffix`` keeps only frames with that suffix (the reference's ``--file_suffix``; None = all
    images); ``depth_suffix`` picks the depth format (None = the one present).
    """
    images, depths = Path(images), Path(depths)
    if images.is_dir() and file_suffix is not None:
        suffix = file_suffix if file_suffix.startswith(".") else f".{file_suffix}"
        folder = io.frames_folder(images)
        files = [f for f in io.list_images(folder) if f.suffix.lower() == suffix.lower()]
        if not files:
            raise InputError(f"{folder}: no {suffix} frames (--file_suffix)")
        frames = io.read_frames(files)
    else:
        frames = io.read_clip(images).frames
    depth_files = io.list_depths(depths, depth_suffix)
    if len(depth_files) != len(frames):
        raise InputError(f"{depths}: {len(depth_files)} depth maps for {len(frames)} frames in {images}")
    disparity = io.read_depths(depths, suffix=depth_files[0].suffix, count=len(frames), size=frames.shape[1:3])
    return StageInputs(frames, disparity, tuple(f.stem for f in depth_files), depths)


def run_stabilise_stage(
    inputs: StageInputs,
    out_dir: str | os.PathLike,
    flow: FlowBackend,
    config: StabiliseConfig = StabiliseConfig(),
    *,
    device: torch.device | None = None,
    preview: bool = True,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Stage 2: write ``out_dir/<depth stem>.npy`` (float32) per frame, previews to ``out_dir/preview/``.

    Returns the written depth paths.
    """
    out_dir = Path(out_dir)
    if out_dir.resolve() == inputs.depth_folder.resolve():
        raise InputError(f"{out_dir}: the output folder is the depth folder; it would overwrite its input")
    t, h, w, _ = inputs.frames.shape
    log.info("stabilise: %d frames %dx%d, flow %s, window %d", t, w, h, flow.name, config.window_size)
    rgb = torch.from_numpy(inputs.frames).permute(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W) uint8, a view
    disparity = torch.from_numpy(inputs.disparity)
    result = stabilise_disparity(rgb, disparity, flow, config, device=device, progress=progress).numpy()
    written = []
    for name, d in zip(inputs.names, result, strict=True):
        path = out_dir / f"{name}.npy"
        io.write_depth(path, d)
        written.append(path)
    if preview:
        write_previews(out_dir, list(inputs.names), result)
    return written
