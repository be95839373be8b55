"""Classical, weight-free hole filling of the frame matrix (DESIGN.md §7: a real result with no weights).

A hole in a warped view is a disocclusion: background the input camera did not see because a nearer
object covered it. So the filling takes its colours from the background only, never from the occluder:

1. Background depth. Along its row, a hole pixel has a nearest known pixel on each side; the farther of
   the two is the background side (the nearer one is the occluder's edge). ``background_depth``.
2. Time. The same view at other frames may have seen that background (the occluder moved). A hole pixel
   takes the mean of the frames where the pixel is known, at least as far as the hole's background
   (not the occluder, which may have moved onto it), and whose background around it agrees in colour
   with this frame's: where copying the pixel at the same place is right, i.e. a static camera. A
   panning camera fails that check, and such pixels fall through to step 3. ``temporal_fill``.
3. Space. The rest is filled by a pull-push pyramid (normalised convolution, as the Lumigraph's
   hole filling) from the known background: for each hole, known pixels nearer than its background
   get zero weight at every scale, so the occluder does not bleed into the disocclusion. ``spatial_fill``.

Consistency over time: every step is a deterministic function of the frame-matrix cells, so identical
frames (a static shot) get identical fills, and background seen in any frame of a static shot is
copied into all of them; nothing is drawn at random.

Conventions from ``camera``: frame matrix ``images (V, T, 3, H, W)`` in [0, 1], ``masks (V, T, 1, H, W)``
bool with True = known; ``depth`` is metric Z in metres (larger = farther), 0 where unknown.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .checks import check_same, check_shape
from .filters import box_filter
from .warp import warp_views

log = logging.getLogger(__name__)

# Origin of each output pixel (FillResult.origin).
KNOWN, FROM_TIME, FROM_SPACE = 0, 1, 2


@dataclass(frozen=True)
class FillConfig:
    """Settings of the classical filling; the defaults were tuned on rendered scenes (tests/test_fill.py)."""

    window: int = 16  # frames before and after a frame searched for background seen there (step 2)
    depth_tolerance: float = 0.05  # relative depth: Z >= (1 - tol) * Z_background counts as background
    colour_tolerance: float = 10 / 255  # mean colour difference of the background around a pixel under which two frames agree (step 2)
    patch_radius: int = 16  # px, half-size of the neighbourhood whose background must agree (step 2)
    patch_cell: int = 4  # px: that agreement is counted on cells of this size (16x less work, same decisions in practice)
    min_support: float = 0.05  # share of the neighbourhood that must be comparable at all
    depth_layers: int = 8  # step 3 fills holes in this many groups of background depth, each from what is behind it
    frames_per_batch: int = 8  # frames of one view processed together: memory only, results do not depend on it

    def __post_init__(self) -> None:
        checks = [
            (self.window >= 0, "window must be >= 0 (0: no temporal filling)"),
            (0 <= self.depth_tolerance < 1, "depth_tolerance must be in [0, 1)"),
            (self.colour_tolerance >= 0, "colour_tolerance must be >= 0"),
            (self.patch_radius >= 1 and self.patch_cell >= 1, "patch_radius and patch_cell must be >= 1"),
            (0 < self.min_support <= 1, "min_support must be in (0, 1]"),
            (self.depth_layers >= 1 and self.frames_per_batch >= 1, "depth_layers and frames_per_batch must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class FillResult:
    """Filled views of a frame matrix.

    views:  the view indices filled, in order.
    images: float ``(len(views), T, 3, H, W)`` in [0, 1], no holes.
    origin: uint8 ``(len(views), T, H, W)``: ``KNOWN``, ``FROM_TIME`` or ``FROM_SPACE`` per pixel.
    """

    views: tuple[int, ...]
    images: torch.Tensor
    origin: torch.Tensor


# --------------------------------------------------------------------------------------------------
# depth in the target views


def warp_depth(
    depth: torch.Tensor, baselines: torch.Tensor, focal: float, *, num_planes: int = 4
) -> torch.Tensor:
    """Metric depth of every frame-matrix cell: Z ``(T, H, W)`` warped to views at ``baselines (V,)``.

    Returns ``(V, T, H, W)``, 0 in holes. It is ``warp.warp_views`` applied to Z itself as a
    one-channel image, so its holes are exactly the frame matrix's (which depend on Z alone) and the
    crack clean-up blurs depth where it blurs colour.
    """
    check_shape(depth, "T H W", "depth")
    check_shape(baselines, "V", "baselines")
    warped, known = warp_views(depth[:, None], depth, baselines.to(depth), focal, num_planes=num_planes)
    return torch.where(known, warped, 0)[:, :, 0]  # (V, T, 1, H, W) -> (V, T, H, W)


def background_depth(depth: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """For each hole pixel, the depth of the farther of its nearest known neighbours along the row.

    depth: Z ``(N, H, W)``; known: bool ``(N, H, W)`` (pixels with depth <= 0 count as unknown).
    Returns ``(N, H, W)``: that depth in holes, 0 at known pixels and in rows with nothing known.
    """
    check_same([check_shape(depth, "N H W", "depth"), check_shape(known, "N H W", "known")], "N H W", ["depth", "known"])
    valid = known & (depth > 0)
    w = depth.shape[-1]
    cols = torch.arange(w, device=depth.device).expand_as(depth)
    left = torch.where(valid, cols, -1).cummax(dim=-1).values  # nearest valid column at or left of each pixel; -1: none
    mirrored = torch.where(valid.flip(-1), cols, -1).cummax(dim=-1).values.flip(-1)  # the same in mirrored columns
    right = torch.where(mirrored >= 0, w - 1 - mirrored, -1)  # nearest valid column at or right of each pixel
    z_left = torch.where(left >= 0, depth.gather(-1, left.clamp_min(0)), 0)
    z_right = torch.where(right >= 0, depth.gather(-1, right.clamp_min(0)), 0)
    return torch.where(valid, 0, torch.maximum(z_left, z_right))


# --------------------------------------------------------------------------------------------------
# step 2: time


def _max_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Max over the ``(2r+1) x (2r+1)`` window of each pixel of float ``(N, H, W)`` (outside counts as -inf).

    By doubling along each axis: about log2(2r+1) shifted maxima instead of 2r.
    """
    check_shape(x, "N H W", "x")
    size = 2 * radius + 1
    for dim in (1, 2):
        n = x.shape[dim]
        m = F.pad(x, (0, 0, radius, radius) if dim == 1 else (radius, radius), value=float("-inf"))
        span = 1  # m[i] holds the max over padded positions [i, i + span)
        while span < size:
            step = min(span, size - span)
            ahead = torch.cat([m.narrow(dim, step, m.shape[dim] - step), torch.full_like(m.narrow(dim, 0, step), float("-inf"))], dim)
            m = torch.maximum(m, ahead)
            span += step
        x = m.narrow(dim, 0, n)
    return x


def _patch_mean(x: torch.Tensor, config: FillConfig) -> torch.Tensor:
    """Mean of ``x`` over the patch around each cell: float ``(n, H, W)`` -> ``(n, ceil(H / c), ceil(W / c))``."""
    c = config.patch_cell
    cells = F.avg_pool2d(x[:, None], c, ceil_mode=True)[:, 0]  # mean per c x c cell
    return box_filter(cells, max(1, round(config.patch_radius / c)))


def _to_pixels(cells: torch.Tensor, c: int, size: tuple[int, int]) -> torch.Tensor:
    """``(n, h, w)`` per cell -> ``(n, H, W)`` per pixel (each cell's value on its c x c pixels)."""
    return cells.repeat_interleave(c, dim=1).repeat_interleave(c, dim=2)[:, : size[0], : size[1]]


def temporal_fill(
    images: torch.Tensor,
    known: torch.Tensor,
    depth: torch.Tensor,
    config: FillConfig,
    *,
    frames: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step 2 on one view: fill hole pixels from the frames where the same place showed background.

    images: float ``(T, 3, H, W)``; known: bool ``(T, H, W)``; depth: Z ``(T, H, W)`` (0 where unknown).
    ``frames``: the frames to fill (default all); the others only serve as sources.
    Returns, for those frames, images ``(F, 3, H, W)``, the filled-from-time mask ``(F, H, W)`` and
    depth ``(F, H, W)`` with the filled pixels' depth.
    """
    s = check_shape(images, "T 3 H W", "images")
    check_same([s, check_shape(known, "T H W", "known"), check_shape(depth, "T H W", "depth")], "T H W", ["images", "known", "depth"])
    t_count = s["T"]
    frames = list(range(t_count)) if frames is None else list(frames)
    keep = 1.0 - config.depth_tolerance
    out_img, out_filled, out_depth = [], [], []
    for t in frames:
        img, k, z = images[t], known[t], depth[t]
        hole = ~k
        sources = [u for u in range(max(0, t - config.window), min(t_count, t + config.window + 1)) if u != t]
        if not hole.any() or not sources:
            out_img.append(img), out_filled.append(torch.zeros_like(k)), out_depth.append(z)
            continue
        z_bg = background_depth(z[None], k[None])[0]  # (H, W), 0 at known pixels
        # A known pixel is background for the agreement test if it is at least as far as the nearest
        # background of the holes around it: the occluder (which may move) is left out of the test.
        bg_near = -_max_filter(-torch.where(hole, z_bg, float("inf"))[None], config.patch_radius)[0]
        bg_pixels = k & (z >= keep * bg_near)
        total = torch.zeros_like(img)
        count = torch.zeros_like(z)
        z_sum = torch.zeros_like(z)
        for c0 in range(0, len(sources), config.frames_per_batch):
            u = sources[c0 : c0 + config.frames_per_batch]
            ku, zu, iu = known[u], depth[u], images[u]  # (n, H, W), (n, H, W), (n, 3, H, W)
            same_surface = bg_pixels & ku & ((zu - z).abs() <= config.depth_tolerance * torch.maximum(zu, z))
            diff = (iu - img).abs().mean(1) * same_surface  # (n, H, W) colour difference where comparable
            support = _patch_mean(same_surface.float(), config)
            mean_diff = _patch_mean(diff, config) / support.clamp_min(1e-6)
            static = _to_pixels((support >= config.min_support) & (mean_diff <= config.colour_tolerance), config.patch_cell, k.shape)
            use = hole & ku & (zu >= keep * z_bg) & static  # (n, H, W)
            total += (iu * use[:, None]).sum(0)
            count += use.sum(0)
            z_sum += (zu * use).sum(0)
        filled = count > 0
        n = count.clamp_min(1)
        out_img.append(torch.where(filled, total / n, img))
        out_filled.append(filled)
        out_depth.append(torch.where(filled, z_sum / n, z))
    return torch.stack(out_img), torch.stack(out_filled), torch.stack(out_depth)


# --------------------------------------------------------------------------------------------------
# step 3: space


def pull_push(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Fill zero-weight pixels by pull-push (Gortler et al. 1996): a pyramid of weighted averages.

    values: float ``(N, C, H, W)``; weights: float ``(N, 1, H, W)`` in [0, 1]. Pull: halve the
    resolution, averaging weight-premultiplied values, down to one pixel on the short side (always
    the whole pyramid, so an image's result does not depend on the others in the batch). Push: from
    coarse to fine, each level's pixel is its own average blended with the bilinear upsampling of
    the coarser level by its coverage. Pixels of weight 1 are returned unchanged; an image with no
    weight at all comes back as zeros.
    """
    check_same([check_shape(values, "N C H W", "values"), check_shape(weights, "N 1 H W", "weights")], "N H W", ["values", "weights"])
    levels = [(values * weights, weights)]
    while min(levels[-1][1].shape[-2:]) > 1:
        p, w = levels[-1]
        levels.append((F.avg_pool2d(p, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)))
    p, w = levels[-1]
    colour = p / w.clamp_min(1e-12)
    for p, w in reversed(levels[:-1]):
        up = F.interpolate(colour, size=p.shape[-2:], mode="bilinear", align_corners=False)
        alpha = w.clamp(0, 1)
        colour = p / w.clamp_min(1e-12) * alpha + up * (1 - alpha)
    return torch.where(weights >= 1, values, colour)


def spatial_fill(images: torch.Tensor, known: torch.Tensor, depth: torch.Tensor, config: FillConfig) -> torch.Tensor:
    """Step 3: fill every hole of ``images (N, 3, H, W)`` from the known background around it.

    known: bool ``(N, H, W)``; depth: Z ``(N, H, W)`` (0 where unknown). Holes are grouped by their
    background depth (``background_depth``) into ``depth_layers`` bins, even in inverse depth; each
    bin is filled by ``pull_push`` from the known pixels at least as far as the nearest background of
    the bin (less the tolerance). So at every pyramid level an occluder, nearer than the hole's
    background, has zero weight: it cannot bleed into the hole however wide the hole is. Holes
    whose row has nothing known (no background depth) are filled from every known pixel.
    Returns ``(N, 3, H, W)``; known pixels are unchanged.
    """
    s = check_shape(images, "N 3 H W", "images")
    check_same([s, check_shape(known, "N H W", "known"), check_shape(depth, "N H W", "depth")], "N H W", ["images", "known", "depth"])
    hole = ~known
    if not hole.any():
        return images
    z_bg = background_depth(depth, known)
    inv = torch.where(hole & (z_bg > 0), 1.0 / z_bg.clamp_min(1e-12), 0.0)  # (N, H, W) inverse background depth, 0 = none
    has_bg = inv > 0
    # Bins even in inverse depth between each frame's own extremes, so frames do not affect each other.
    lo = torch.where(has_bg, inv, math.inf).amin(dim=(1, 2), keepdim=True)
    hi = inv.amax(dim=(1, 2), keepdim=True)
    pos = (inv - lo) / (hi - lo).clamp_min(1e-12) * config.depth_layers
    layer = torch.where(has_bg, pos.floor().clamp(0, config.depth_layers - 1), -1).long()  # (N, H, W), -1 = no background
    out = images.clone()
    for k in layer[hole].unique().tolist():
        in_layer = hole & (layer == k)
        # per frame, the bin's nearest background (its largest inverse depth): the most permissive threshold
        z_min = 1.0 / torch.where(in_layer, inv, 0.0).amax(dim=(1, 2), keepdim=True).clamp_min(1e-12) if k >= 0 else torch.zeros(1, 1, 1)
        weights = (known & (depth >= (1.0 - config.depth_tolerance) * z_min)).to(images.dtype)[:, None]
        out = torch.where(in_layer[:, None], pull_push(images, weights), out)
    return out


# --------------------------------------------------------------------------------------------------
# the frame matrix


def fill_frame_matrix(
    images: torch.Tensor,
    masks: torch.Tensor,
    depth: torch.Tensor,
    config: FillConfig | None = None,
    *,
    views: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> FillResult:
    """Fill the holes of frame-matrix views (module docstring: background depth, time, space).

    images: float ``(V, T, 3, H, W)`` in [0, 1]; masks: bool ``(V, T, 1, H, W)``, True = known;
    depth: Z ``(V, T, H, W)`` of every cell, 0 in holes (``warp_depth``). ``views``: which views to
    fill (default all). ``progress(n)`` after each batch of n frames of a view.
    """
    config = FillConfig() if config is None else config
    s = check_shape(images, "V T 3 H W", "images")
    m = check_shape(masks, "V T 1 H W", "masks")
    d = check_shape(depth, "V T H W", "depth")
    check_same([s, m, d], "V T H W", ["images", "masks", "depth"])
    views = tuple(range(s["V"])) if views is None else tuple(views)
    out_images, out_origin = [], []
    for v in views:
        img, known, z = images[v].float(), masks[v, :, 0], depth[v].float()
        origin = torch.where(known, KNOWN, FROM_SPACE).to(torch.uint8)
        filled_view = img.clone()
        for t0 in range(0, s["T"], config.frames_per_batch):
            batch = list(range(t0, min(s["T"], t0 + config.frames_per_batch)))
            if config.window > 0:
                img_b, from_time, z_b = temporal_fill(img, known, z, config, frames=batch)
            else:
                img_b, from_time, z_b = img[batch], torch.zeros_like(known[batch]), z[batch]
            now_known = known[batch] | from_time
            filled_view[batch] = spatial_fill(img_b, now_known, z_b, config)
            origin[batch] = torch.where(from_time, FROM_TIME, origin[batch]).to(torch.uint8)
            if progress is not None:
                progress(len(batch))
        out_images.append(filled_view.clamp(0, 1))
        out_origin.append(origin)
        holes = (origin > 0).float().mean().item()
        log.debug("fill view %d: %.2f%% holes, %.0f%% of them from other frames", v, 100 * holes,
                  100 * (origin == FROM_TIME).float().mean().item() / max(holes, 1e-12))
    return FillResult(views, torch.stack(out_images), torch.stack(out_origin))


def telea_fill(images: torch.Tensor, known: torch.Tensor, *, radius: int = 3) -> torch.Tensor:
    """The naive baseline: OpenCV's Telea inpainting of each image's holes, blind to depth and time.

    images: float ``(N, 3, H, W)`` in [0, 1]; known: bool ``(N, H, W)``. Returns ``(N, 3, H, W)``
    (computed on 8-bit images, as ``cv2.inpaint`` requires; known pixels are unchanged).
    """
    check_same([check_shape(images, "N 3 H W", "images"), check_shape(known, "N H W", "known")], "N H W", ["images", "known"])
    out = images.clone()
    rgb = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # N H W 3
    holes = (~known).to(torch.uint8).cpu().numpy()
    for i in range(len(rgb)):
        if holes[i].any():
            filled = cv2.inpaint(np.ascontiguousarray(rgb[i]), holes[i], radius, cv2.INPAINT_TELEA)
            out[i] = torch.from_numpy(filled).permute(2, 0, 1).to(out) / 255  # H W 3 -> 3 H W
    return torch.where(known[:, None], images, out)
