"""Stage 2: temporal depth stabilisation (DESIGN.md §3; the reference's ``svg_enhance_depth.py``).

For every frame i, with offsets k in [-r, r] (window 2r + 1) and weights w_k = 0.5^|k| / sum:

1. flow from frame i to each neighbour i + k (any ``flow.FlowBackend``). By default (``invert_flows``) only the
   forward flows (k > 0) are computed and each backward one (i -> i - k) is the inverse of the forward flow
   (i - k -> i) (``flow.invert_flow``): half the flows, and flicker and error to the true depth within 0.2 % of
   computed backward flows on bench/bench_stabilise.py's rendered scenes (bench/results/stabilise_quality_*.json);
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
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import io
from ..checks import InputError, check_same, check_shape
from ..config import StabiliseConfig
from ..filters import guided_filter
from ..flow import FlowBackend, invert_flow
from ..graphs import to_device
from ..source import Source, open_source
from ..work import FrameChunks
from .depth import frame_stats

log = logging.getLogger(__name__)

FUSE_EPS = 1e-10  # the reference's denominator guard in temporal_smoothness


def window_weights(window_size: int, decay: float = 0.5) -> torch.Tensor:
    """Normalised weights ``(window_size,)`` float64 for offsets ``-r .. r``: ``decay^|k| / sum``."""
    r = window_size // 2
    w = decay ** torch.arange(-r, r + 1, dtype=torch.float64).abs()
    return w / w.sum()


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
    # the infinities as Python scalars: a tensor made here would be an upload (a wait) per call on CUDA
    hi = torch.where(inside, warped_disparity, float("-inf")).amax(dim=(1, 2), keepdim=True)
    lo = torch.where(inside, warped_disparity, float("inf")).amin(dim=(1, 2), keepdim=True)
    depth_ok = (warped_disparity - disparity).abs() <= depth_ratio * (hi - lo)
    return inside & colour_ok & depth_ok


@torch.inference_mode()
def stabilise_disparity(
    rgb: torch.Tensor,
    disparity: torch.Tensor,
    flow: FlowBackend,
    config: StabiliseConfig | None = None,
    *,
    targets: tuple[int, int] | None = None,
    device: torch.device | None = None,
    progress: Callable[[int], None] | None = None,
    kept: dict[tuple[int, int], torch.Tensor] | None = None,
    first_frame: int = 0,
) -> torch.Tensor:
    """Temporally stabilised disparity of a clip, or of the frames ``targets = (a, b)`` of a part of one.

    rgb: ``(T, 3, H, W)``, float in [0, 1] or ``uint8``; disparity: ``(T, H, W)`` (clamped at 0 as the
    reference does on loading). Neighbours outside these T frames count as past the clip's ends, so a
    part must carry ``config.half_window`` frames of context on each side of its targets (where the
    clip has them); each target then gets exactly the result of the whole clip. Frames are moved to
    ``device`` (default: disparity's) a block at a time, so memory is bounded by ``config.pairs_per_batch``.
    Returns float32 ``(b - a, H, W)`` >= 0 on disparity's device. ``progress(n)`` after each block.

    Flows: each ordered pair once. With ``config.invert_flows`` only the forward ones (i -> i + k) are computed and
    the backward ones inverted from them (``flow.invert_flow``): a block keeps the forward flows that the next
    block's targets look back along, so a call computes ``window_size // 2`` flows per frame, plus ``r (r + 1) / 2``
    (r = ``half_window``) for its first targets' context, unless the call before on the same clip left them in
    ``kept``: a dict ``{(frame, k): flow frame -> frame + k}`` in clip frames, ``rgb[0]`` being frame ``first_frame``,
    that the call reads and leaves holding the flows a later part's targets need (consecutive parts of one clip, on
    one device: ``run_stabilise``). Nothing is read back to the host before the end (on CUDA the blocks queue up
    behind each other's flow).
    """
    config = StabiliseConfig() if config is None else config
    sizes = [check_shape(rgb, "T 3 H W", "rgb"), check_shape(disparity, "T H W", "disparity")]
    check_same(sizes, "T H W", ["rgb", "disparity"])
    device = disparity.device if device is None else torch.device(device)
    t = sizes[0]["T"]
    r = config.half_window
    weights = window_weights(config.window_size, config.decay).tolist()  # index k + r
    offsets = [k for k in range(-r, r + 1) if k != 0]
    computed = [k for k in offsets if k > 0 or not config.invert_flows]  # the flows' offsets computed, not inverted
    # a block's targets have at most pairs_per_batch pairs (memory; the progress moves a block at a time)
    frames_per_block = max(1, config.pairs_per_batch // max(1, len(offsets)))
    first, last = (0, t) if targets is None else targets
    if not 0 <= first < last <= t:
        raise ValueError(f"targets {targets} are outside the {t} frames given")
    out = torch.empty((last - first, *disparity.shape[1:]), dtype=torch.float32, device=device)
    # (s, k) -> flow s -> s + k (2, H, W) on device, s in this call's frames, kept while s + k is a target to come
    flows = {(s - first_frame, k): f for (s, k), f in (kept or {}).items() if 0 <= s - first_frame and s - first_frame + k < t}

    for a in range(first, last, frames_per_block):
        b = min(last, a + frames_per_block)
        lo, hi = max(0, a - r), min(t, b + r)  # frames [lo, hi) are needed for targets [a, b)
        block_rgb = to_device(rgb[lo:hi], device)
        block_rgb = block_rgb.float() if block_rgb.dtype == torch.uint8 else block_rgb.float() * 255.0  # 0-255
        block_d = to_device(disparity[lo:hi], device).float().clamp_min(0.0)
        own = block_d[a - lo : b - lo]  # (B, H, W) raw disparity of the targets
        num = weights[r] * own  # step 3: frame i itself is always valid
        den = torch.full_like(own, weights[r])

        # The flows (s, s + k) this block needs and has not got: for one k a run of sources [s0, s1), their
        # targets the run shifted by k, both slices of the block. Forward flows from before the block (s < a) are
        # for its targets' backward ones; the previous block computed them unless this is the call's first.
        todo = []
        for k in computed:
            s0, s1 = max(a - k if config.invert_flows else a, -k, 0), min(b, t - k)
            while (s0, k) in flows and s0 < s1:
                s0 += 1
            if s0 < s1:
                todo.append((k, s0, s1))
        if todo:
            src = torch.cat([block_rgb[s0 - lo : s1 - lo] for _, s0, s1 in todo])  # (P, 3, H, W)
            dst = torch.cat([block_rgb[s0 + k - lo : s1 + k - lo] for k, s0, s1 in todo])  # (P, 3, H, W)
            step = config.pairs_per_batch
            fl = torch.cat([flow(src[c : c + step] / 255.0, dst[c : c + step] / 255.0) for c in range(0, len(src), step)])
            fl = fl.to(device, torch.float32)  # (P, 2, H, W) src -> dst
            keys = [(s, k) for k, s0, s1 in todo for s in range(s0, s1)]
            flows.update(zip(keys, fl, strict=True))

        # The pairs (i, i + k) of the targets, offset by offset: for one k the targets with a neighbour in the clip
        # are a run [i0, i1) (past the ends: invalid) and their neighbours the run shifted by k.
        runs = [(k, max(a, -k), min(b, t - k)) for k in offsets]
        runs = [(k, i0, i1) for k, i0, i1 in runs if i0 < i1]
        if runs:  # (none for a clip of one frame)
            fl = torch.cat([
                torch.stack([flows[i, k] for i in range(i0, i1)]) if k in computed
                else invert_flow(torch.stack([flows[i + k, -k] for i in range(i0, i1)]))
                for k, i0, i1 in runs
            ])  # (P, 2, H, W) target -> neighbour  # fmt: skip
            nb = torch.cat([block_rgb[i0 + k - lo : i1 + k - lo] for k, i0, i1 in runs])  # (P, 3, H, W) neighbours
            nd = torch.cat([block_d[i0 + k - lo : i1 + k - lo] for k, i0, i1 in runs])  # (P, H, W)
            warped, inside = backward_warp(torch.cat([nb, nd[:, None]], 1), fl)  # RGB + disparity, (P, 4, H, W)
            tr = torch.cat([block_rgb[i0 - lo : i1 - lo] for _, i0, i1 in runs])  # (P, 3, H, W) targets
            td = torch.cat([block_d[i0 - lo : i1 - lo] for _, i0, i1 in runs])  # (P, H, W)
            valid = consistency_mask(tr, td, warped[:, :3], warped[:, 3], inside,
                                     rgb_threshold=config.rgb_threshold, depth_ratio=config.depth_ratio)  # fmt: skip
            p = 0
            for k, i0, i1 in runs:  # in offset order for every target: the sums' rounding does not depend on blocks
                wm = weights[k + r] * valid[p : p + i1 - i0]  # (n, H, W)
                num[i0 - a : i1 - a] += wm * warped[p : p + i1 - i0, 3]
                den[i0 - a : i1 - a] += wm
                p += i1 - i0
        flows = {(s, k): f for (s, k), f in flows.items() if k > 0 and s + k >= b and config.invert_flows}  # for later targets

        fused = num / (den + FUSE_EPS)
        filtered = guided_filter(own, fused, config.radius, config.eps)  # step 4, guide = raw disparity
        out[a - first : b - first] = filtered.clamp_min(0.0)
        if progress is not None:
            progress(b - a)
    if kept is not None:
        kept.clear()
        kept.update({(s + first_frame, k): f for (s, k), f in flows.items()})
    return out.to(disparity.device)


# --------------------------------------------------------------------------------------------------
# the stage


def run_stabilise(
    frames: Callable[[int, int], np.ndarray],
    disparity: Callable[[int, int], np.ndarray],
    num_frames: int,
    flow: FlowBackend,
    out: FrameChunks,
    chunks: list[tuple[int, int]],
    config: StabiliseConfig | None = None,
    *,
    device: torch.device | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Stage 2 over ``chunks`` [(a, b), ...]: each chunk reads its frames and raw disparity with ``half_window``
    frames of context, and commits ``{"disparity": ...}`` with ``depth.frame_stats`` — equal to the whole clip at once.
    ``progress(n)`` after each block of frames (``stabilise_disparity``).

    frames(a, b): ``uint8 (n, h, w, 3)`` at the disparity's size; disparity(a, b): float32 ``(n, h, w)``.
    """
    config = StabiliseConfig() if config is None else config
    r = config.half_window
    log.info("stabilise: %d frames, flow %s, window %d", num_frames, flow.name, config.window_size)
    kept: dict[tuple[int, int], torch.Tensor] = {}  # the flows that a chunk leaves for the next one's first frames
    for a, b in chunks:
        lo, hi = max(0, a - r), min(num_frames, b + r)
        rgb = torch.from_numpy(frames(lo, hi)).permute(0, 3, 1, 2)  # (n, h, w, 3) -> (n, 3, h, w) uint8, a view
        raw = torch.from_numpy(disparity(lo, hi))
        result = stabilise_disparity(rgb, raw, flow, config, targets=(a - lo, b - lo), device=device, progress=progress,
                                     kept=kept, first_frame=lo).cpu().numpy()  # fmt: skip
        out.commit(a, {"disparity": result}, frame_stats(result))


def load_inputs(
    images: str | os.PathLike,
    depths: str | os.PathLike,
    *,
    file_suffix: str | None = None,
    depth_suffix: str | None = None,
) -> tuple[Source, list[Path]]:
    """The seed script's inputs: the frames (folder or video) and exactly one depth map per frame.

    ``file_suffix`` keeps only frames with that suffix (the reference's ``--file_suffix``; None = all
    images); ``depth_suffix`` picks the depth format (None = the one present). Returns the frames'
    ``Source`` and the depth files in frame order.
    """
    images, depths = Path(images), Path(depths)
    source = open_source(images, suffix=file_suffix)
    depth_files = io.list_depths(depths, depth_suffix, choosable=True)
    if len(depth_files) != source.info.num_frames:
        raise InputError(f"{depths}: {len(depth_files)} depth maps for {source.info.num_frames} frames in {images}")
    return source, depth_files


class StabiliseStage:
    """Stage 2 in the pipeline (``svg3d.stages``): the depth stage's disparity, stabilised along the flow."""

    name = "stabilised"
    needs = ("depth",)
    spread = True

    def __init__(self, clip, config: StabiliseConfig, flow: str, depth_size: tuple[int, int], device: torch.device, *,
                 backend: FlowBackend | None = None) -> None:  # fmt: skip
        self.clip, self.config, self.flow, self.size, self.device = clip, config, flow, depth_size, device
        self.backend = backend  # a flow made by the caller (the seed script's RAFT options); None: ``make_flow(flow)``
        self.lookahead = config.half_window  # the neighbours of a chunk's last frame

    def params(self) -> dict:
        from dataclasses import asdict

        return {"flow": self.flow, "config": asdict(self.config)}

    def check(self) -> None:
        if self.flow in ("raft", "raft_small"):
            from .. import models

            models.check_raft("raft_small" if self.flow == "raft_small" else "raft_large")

    def run(self, inputs: dict, store, chunks: list[tuple[int, int]], progress: Callable[[int], None]) -> None:
        from ..flow import make_flow

        raw = inputs["depth"]
        backend = self.backend or make_flow(self.flow, device=self.device)
        run_stabilise(
            self.clip.reader(self.name, self.size), lambda a, b: raw.read(a, b, "disparity"), self.clip.num_frames,
            backend, store, chunks, self.config, device=self.device, progress=progress,
        )  # fmt: skip
