"""The weight-free filler of before issue 12, kept as a registered filler (``--fill previous``) to compare with.

It fills each hole from the frames where the same place showed background, which is right for a static
camera only, then from space by a depth-layered pull-push; ``classical`` replaced it (background along
the scene's motion). The demo's report and ``bench/bench_fill.py`` put the two side by side.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ...checks import check_same, check_shape
from ...filters import box_filter
from ...pyramid import pull_push
from .. import scaled
from ..matrix import Cells
from .base import SinglePass
from .classical import FROM_SPACE, FROM_TIME, KNOWN, FillResult, background_depth

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class PreviousFillConfig:
    """Settings of the previous filler (``previous_fill``): kept so that its results can be compared."""

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


def _patch_mean(x: torch.Tensor, config: PreviousFillConfig) -> torch.Tensor:
    """Mean of ``x`` over the patch around each cell: float ``(n, H, W)`` -> ``(n, ceil(H / c), ceil(W / c))``."""
    c = config.patch_cell
    cells = F.avg_pool2d(x[:, None], c, ceil_mode=True)[:, 0]  # mean per c x c cell
    return box_filter(cells, max(1, round(config.patch_radius / c)))


def _to_pixels(cells: torch.Tensor, c: int, size: tuple[int, int]) -> torch.Tensor:
    """``(n, h, w)`` per cell -> ``(n, H, W)`` per pixel (each cell's value on its c x c pixels)."""
    return cells.repeat_interleave(c, dim=1).repeat_interleave(c, dim=2)[:, : size[0], : size[1]]


def previous_temporal_fill(
    images: torch.Tensor,
    known: torch.Tensor,
    depth: torch.Tensor,
    config: PreviousFillConfig,
    *,
    frames: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The previous filler's time step on one view: hole pixels from frames where the same place showed background.

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


def previous_spatial_fill(images: torch.Tensor, known: torch.Tensor, depth: torch.Tensor, config: PreviousFillConfig) -> torch.Tensor:
    """The previous filler's space step: fill every hole of ``images (N, 3, H, W)`` from the known background around it.

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


def previous_fill(
    images: torch.Tensor,
    masks: torch.Tensor,
    depth: torch.Tensor,
    config: PreviousFillConfig | None = None,
    *,
    views: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> FillResult:
    """The previous filler (before issue 12), kept to compare with: time only for a static camera, then pull-push.

    Per view: a hole pixel takes the mean of the frames where the same pixel showed background whose
    surroundings agree in colour (a static camera); the rest is filled by depth-layered pull-push from
    everything at least as far as its background.

    images: float ``(V, T, 3, H, W)`` in [0, 1]; masks: bool ``(V, T, 1, H, W)``, True = known;
    depth: Z ``(V, T, H, W)`` of every cell, 0 in holes (``warp_depth``). ``views``: which views to
    fill (default all). ``progress(n)`` after each batch of n frames of a view.
    """
    config = PreviousFillConfig() if config is None else config
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
                img_b, from_time, z_b = previous_temporal_fill(img, known, z, config, frames=batch)
            else:
                img_b, from_time, z_b = img[batch], torch.zeros_like(known[batch]), z[batch]
            now_known = known[batch] | from_time
            filled_view[batch] = previous_spatial_fill(img_b, now_known, z_b, config)
            origin[batch] = torch.where(from_time, FROM_TIME, origin[batch]).to(torch.uint8)
            if progress is not None:
                progress(len(batch))
        out_images.append(filled_view.clamp(0, 1))
        out_origin.append(origin)
        holes = (origin > 0).float().mean().item()
        log.debug("fill view %d: %.2f%% holes, %.0f%% of them from other frames", v, 100 * holes,
                  100 * (origin == FROM_TIME).float().mean().item() / max(holes, 1e-12))
    return FillResult(views, torch.stack(out_images), torch.stack(out_origin))


class PreviousFiller(SinglePass):
    """``previous_fill`` behind the ``Filler`` protocol (``fillers.REGISTRY["previous"]``)."""

    name = "previous"

    def __init__(self, config: PreviousFillConfig | None = None) -> None:
        self.config = PreviousFillConfig() if config is None else config
        self.context = self.config.window

    def params(self) -> dict:
        return {"config": asdict(self.config)}

    def fill(self, cells: Cells, core: tuple[int, int], progress: Callable[[int], None] | None = None) -> torch.Tensor:
        a, b = core[0] - cells.first, core[1] - cells.first
        v, t = cells.images.shape[:2]  # (it fills the context frames too)
        return previous_fill(cells.images, cells.known[:, :, None], cells.depth, self.config, progress=scaled(progress, v * t, b - a)).images[:, a:b]
