"""Classical, weight-free hole filling of the frame matrix (DESIGN.md §7: a real result with no weights).

A hole in a warped view is a disocclusion: background the input camera did not see at this frame
because a nearer object covered it, or the out-of-view band at the frame edge. The filling takes its
colours from the background only, never from the occluder (``fill_views``, per view and frame):

1. Background side. Along its row, a hole pixel has a nearest known pixel on each side; the farther of
   the two is the background (the nearer one is the occluder's edge); at the frame edge, the one
   side there is. Its depth ``z_bg`` places the hidden point in the input view at
   ``x = u + f b / z_bg`` (``camera``: a view at baseline b sees column u of a point the input sees at
   u + f b / Z). ``background_depth``. But a hole always opens on the far side of a near edge (right of
   it in a view right of the input): where the end on that side is the nearer one, a second occluder
   moved over the background (a crossed hole: a box passing in front of a ball), and the background is
   what the input saw just past the first occluder's edge (``_behind``: its depth, and in step 3 its colour).
2. Time, along the scene's motion. The hidden point may have been seen in the frames around (the
   camera or the occluder moved). Its place there comes from the input's motion, chained one frame at
   a time over ``window`` frames each way: the scene's motion (``fit_scene_motion``: plane plus
   parallax, fitted robustly to OpenCV DIS flow between neighbouring frames at ``flow_width``, exact
   for a static background whatever the camera does: pan, truck, dolly, shake; it needs no flow near
   the hole, where the flow is the occluder's), or, for a background that moves by itself, the flow
   followed from a reference point on the background ``flow_margin`` away from the occluder's edge
   (flow blurs across motion edges). A frame saw the point where the input's depth there is the
   expected one on all four bilinear taps and the reference kept its colour (and, for the scene's
   motion, moved as the scene does); its colour comes in bilinearly (sub-pixel exact). Frames are
   averaged with weights ``decay^(k - 1)``. A static shot is the special case of no motion.
3. Space (``row_fill`` and ``soft_fill``). What no frame saw is filled along its row from the hole's
   two ends: where their depths differ (a disocclusion) and the depth can be trusted, the farther
   end, the background, is carried across; where the two ends are one surface, or an end is blown out
   (saturated: its depth is a guess), the ends are interpolated: a blend that cannot paint a layer it
   did not see on both sides. The row values are smoothed over the hole's rows, the more the farther
   from its edge, so the fill follows the edge's structure and fades into a soft average, never into
   streaks or flat patches. Untrusted pixels are further blended (``ROW_SHARE``) with a soft 2-D fill
   (normalised convolution over growing windows from every known pixel around). Measured on real
   stereo captures with true and monocular-like depth (bench/bench_fill_real.py): depth-trusting
   layered pull-push (this filler before issue 23) lost 0.3-9 dB to Telea there; this wins back most.
4. Border. The out-of-view band (holes with no known pixel between them and the frame edge) is
   filled by the ``border`` choice (``BORDER_CHOICES``): ``stretch`` (default: step 3 from the one
   end there, mostly the soft 2-D fill (``BAND_ROW_SHARE``), blended with OpenCV's Telea
   (``BAND_TELEA_SHARE``), which continues the edges the soft fill blurs: the picture continues,
   objects entering the frame included, without a seam; then faded over the band's rows, the more the
   farther from its inner edge: ``band.fade_band``), ``mirror`` (the row's content reflected about the band's
   inner edge, ``fill_border``), ``float`` (a floating window: black, straight columns at the edge,
   as wide as the band within the context frames), or ``inpaint`` (step 3 as for any hole).
   ``crop_width`` gives the columns to crop instead, for a caller that can change the frame size.
   On real captures mirror copied the occluder at the edge into the band (a chair's back where a
   door was): 0.5-8 dB below the stretch; where the camera moves, step 2 fills most of the band.

5. Stillness. Each filled pixel averages the first passes (steps 1-4) of the ``smooth`` frames around,
   at the place the scene's motion carries its point, where that place was filled for (or shows)
   the same depth; what other frames saw outweighs spatial guesses (``guess_weight``), so a filled
   pixel stays put while its background does not move (``_consolidate``).

Chunks: the output for frame t depends only on the inputs of frames within ``FillConfig.context``
(``window + smooth``) of it, and no op mixes cells (a view at a frame): cells are filled in batches
(``BATCH_PIXELS``: few large ops, for the GPU) with elementwise ops, gathers and running sums along
each image's own rows and columns, never a reduction across cells, so every cell comes out as it would
alone, and filling a clip in chunks with their context equals filling it whole. The motion fit is per
pair of frames, and nothing is read back to the host per frame but one list of hole pixels per batch. The
chunks of one run hand their flows and first passes on to the next (``Carry``): each is computed once.

Conventions from ``camera``: frame matrix ``images (V, T, 3, H, W)`` in [0, 1], ``known (V, T, H, W)``
bool with True = known; ``depth`` is metric Z in metres (larger = farther), 0 where unknown. CPU-only
parts: the default flow (OpenCV DIS; pass a ``flow.FlowBackend`` such as RAFT to stay on the GPU) and
Telea's share of the band (``telea.TeleaJob``: on CUDA beside the next batch's kernels); everything else is torch
and runs on CUDA. The previous filler (before issue 12: time
only for a static camera, then pull-push) stays as ``previous_fill`` to compare with.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ...checks import check_same, check_shape
from ...config import FillConfig
from ...filters import box_sum, column_mean_growing
from ...flow import FlowBackend, weight_free_flow
from ...graphs import HostCopy, take_rows, to_device
from ...motion import MOTION_EDGE, MOTION_SAMPLE_STRIDE, STILL, fit_scene_motion, predict_motion
from ...pyramid import bilinear_taps, sample_bilinear
from .. import scaled
from ..matrix import Cells
from .band import fade_band
from .base import SinglePass
from .telea import TeleaJob

log = logging.getLogger(__name__)

# Origin of each output pixel (FillResult.origin).
KNOWN, FROM_TIME, FROM_SPACE, FROM_BORDER = 0, 1, 2, 3

@dataclass
class FillResult:
    """Filled views of a frame matrix.

    views:  the view indices filled, in order.
    images: float ``(len(views), T, 3, H, W)`` in [0, 1], no holes.
    origin: uint8 ``(len(views), T, H, W)``: ``KNOWN``, ``FROM_TIME``, ``FROM_SPACE`` or ``FROM_BORDER`` per pixel.
    """

    views: tuple[int, ...]
    images: torch.Tensor
    origin: torch.Tensor


# --------------------------------------------------------------------------------------------------
# depth in the target views


def _row_neighbours(valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest valid column at or left of / at or right of each pixel of bool ``(..., W)``; -1: none. Both long ``(..., W)``."""
    w = valid.shape[-1]
    cols = torch.arange(w, device=valid.device).expand_as(valid)
    left = torch.where(valid, cols, -1).cummax(dim=-1).values
    mirrored = torch.where(valid.flip(-1), cols, -1).cummax(dim=-1).values.flip(-1)  # the same in mirrored columns
    right = torch.where(mirrored >= 0, w - 1 - mirrored, -1)
    return left, right


def background_depth(depth: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """For each hole pixel, the depth of the farther of its nearest known neighbours along the row.

    depth: Z ``(N, H, W)``; known: bool ``(N, H, W)`` (pixels with depth <= 0 count as unknown).
    Returns ``(N, H, W)``: that depth in holes, 0 at known pixels and in rows with nothing known.
    """
    check_same([check_shape(depth, "N H W", "depth"), check_shape(known, "N H W", "known")], "N H W", ["depth", "known"])
    valid = known & (depth > 0)
    left, right = _row_neighbours(valid)
    z_left = torch.where(left >= 0, depth.gather(-1, left.clamp_min(0)), 0)
    z_right = torch.where(right >= 0, depth.gather(-1, right.clamp_min(0)), 0)
    return torch.where(valid, 0, torch.maximum(z_left, z_right))


# --------------------------------------------------------------------------------------------------
# sampling at points (every op elementwise: a point's value never depends on the others)


def _tap_range(z: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and max ``(N,)`` of ``z (H, W)`` over the 4 bilinear taps of each point: are they all one surface?"""
    _, lo, hi = _sample_with_depth(z.reshape(-1, 1), z.shape[0], z.shape[1], x, y)
    return lo, hi


def _sample_with_depth(
    flat: torch.Tensor, h: int, w: int, x: torch.Tensor, y: torch.Tensor, base: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear samples ``(N, C)`` of pixels ``flat (H*W, C)`` (channels last: one row per tap) whose last
    channel is depth, and the min and max ``(N,)`` of that depth over the 4 taps. With ``base`` (long
    ``(N,)``), ``flat`` holds several images ``(B*H*W, C)`` and point i samples the one from row ``base[i]``."""
    index, weight = bilinear_taps(h, w, x, y)
    index = torch.cat(index) if base is None else torch.cat([i + base for i in index])
    taps = take_rows(flat, index).view(4, x.numel(), -1)  # one gather: (4 taps, N, C)
    out = taps[0] * weight[0][:, None]
    for tap, wt in zip(taps[1:], weight[1:], strict=True):
        out = out + tap * wt[:, None]
    lo = torch.minimum(torch.minimum(taps[0][:, -1], taps[1][:, -1]), torch.minimum(taps[2][:, -1], taps[3][:, -1]))
    hi = torch.maximum(torch.maximum(taps[0][:, -1], taps[1][:, -1]), torch.maximum(taps[2][:, -1], taps[3][:, -1]))
    return out, lo, hi


def _inside(x: torch.Tensor, y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


# --------------------------------------------------------------------------------------------------
# flow of the source


class Carry:
    """What the fill of one chunk leaves to the next chunk's in one run over one clip (``ClassicalFiller.bind``).

    A chunk's cells overlap its neighbours' by ``2 x context`` frames, and everything a frame's output needs
    is a function of the cells within ``context`` of it: the source's flow and scene motion per pair of
    frames, and each cell's first pass (steps 1-4), which depends on the cells of the frames within
    ``window`` of its own. Kept by absolute frame (``fill_views``' ``first``), they are reused where the
    next chunk needs them, so the result is the same bytes as without (tested), and a run's flows and first
    passes are computed once instead of once per chunk that reads them (at 16-frame chunks, 60 first
    passes for 48 frames became 48). ``flows``, ``motions``: by pair ``(i, j)``; ``passes``: by
    ``(shift, offset, frame)`` of the cell, ``(lo, hi, colour and depth (H*W, 4), origin (H*W,))`` with
    ``lo .. hi-1`` the frames its pass read. Only valid while every call's cells of a frame are the same
    data: one clip, one matrix (the fill stage's run).
    """

    def __init__(self) -> None:
        self.flows: dict[tuple[int, int], torch.Tensor] = {}
        self.motions: dict[tuple[int, int], torch.Tensor] = {}
        self.passes: dict[tuple[float, float, int], tuple[int, int, torch.Tensor, torch.Tensor]] = {}

    def keep_from(self, pairs: int, passes: int) -> None:
        """Forget the pairs with a frame before ``pairs`` and the passes of frames before ``passes``: what a chunk
        that starts later does not read."""
        for d in (self.flows, self.motions):
            for key in [k for k in d if min(k) < pairs]:
                del d[key]
        for key in [k for k in self.passes if k[2] < passes]:
            del self.passes[key]


# Source flows computed together on a device (``_Flows.prefetch``); others one pair a call. A call of the torch flow at
# ``flow_width`` is ~9,400 small kernels whatever the batch: on an H100 at 1080p, two single pairs a frame made ~17,900
# of the filler's 20,833 kernels a frame (bench/results/h100-2026-12-07-g/before/profile_fill-cuda.txt).
FLOW_BATCH = {"cuda": 16}


class _Flows:
    """Optical flow between neighbouring source frames at ``flow_width`` and the scene's motion fitted to it.

    Only neighbours: motion to a frame k away is chained over k steps of one frame, whose flows are
    accurate (small motion) and shared by every frame of the chunk (2 flows per frame, not 2k). Each
    pair's result does not depend on the chunk: on a CPU each pair is one backend call and one fit; on CUDA the pairs
    go in calls of exactly ``FLOW_BATCH`` pairs, flows (``prefetch``) and fits (``fit``) alike, the last call padded,
    since a kernel's rounding may depend on the batch's size but never on the other pairs in it. Pairs computed by
    the previous chunk are taken from ``carry`` (keyed by absolute frame: local + ``first``).
    ``table(step, starts)``: for the pairs (i, i + step) of the frames i in ``starts`` (at least), the scene's
    motion (``fit_scene_motion``'s parameters, ``(n, 12)``, row i) and the flow ``(2, n, lh, lw)``, for points
    of many frames at once (rows of pairs not computed yet: no motion; every chain reads only rows of its own
    starts, so the rows others added change nothing). ``sample(flow, i, x, y)``: that flow ``(2, N)`` in
    full-resolution pixels at full-resolution points of frames ``i (N,)``. ``frames``: every source
    frame's colour and Z together, channels last ``(n*H*W, 4)``, for gathers at points of any frame.
    """

    def __init__(
        self, source: torch.Tensor, source_depth: torch.Tensor, config: FillConfig, backend: FlowBackend | None,
        carry: Carry | None = None, first: int = 0,
    ) -> None:  # fmt: skip
        n, _, h, w = source.shape
        self.n, self.h, self.w, self.first = n, h, w, first
        lw = min(w, config.flow_width)
        lh = max(8, round(h * lw / w))
        self.sx, self.sy = lw / w, lh / h  # low-resolution pixels per full-resolution pixel
        self.backend = weight_free_flow(source.device) if backend is None else backend  # on CUDA the torch flow: no copies to the CPU
        self.batch = FLOW_BATCH.get(source.device.type, 1)
        self.source, self.depth = source, source_depth
        self.inlier_px = max(0.5, 0.002 * w)  # DIS's typical error, ~0.25 px of its grid
        self.small: dict[int, torch.Tensor] = {}  # the reduced frames, made as pairs need them
        self.frames = torch.cat([source, source_depth[:, None]], 1).permute(0, 2, 3, 1).reshape(n * h * w, 4)
        carry = Carry() if carry is None else carry
        self.flows, self.motions = carry.flows, carry.motions
        # the fit's sample points: a grid on the flow's pixels, in full-resolution coordinates
        gy, gx = torch.meshgrid(
            torch.arange(0, lh, MOTION_SAMPLE_STRIDE, device=source.device, dtype=source.dtype),
            torch.arange(0, lw, MOTION_SAMPLE_STRIDE, device=source.device, dtype=source.dtype),
            indexing="ij",
        )
        self.grid = (gx.reshape(-1), gy.reshape(-1))
        still = to_device(STILL, source.device, torch.float64)
        self.lowres = (lh, lw)
        # per step: the tables, their rows written as pairs are added (no copy of the whole table per call)
        self.tables = {step: (still.repeat(n, 1), source.new_zeros(2, n, lh, lw), set()) for step in (1, -1)}

    def reduced(self, i: int) -> torch.Tensor:
        """Frame i at the flow's size ``(1, 3, lh, lw)``: each frame on its own, so it does not depend on the chunk."""
        if i not in self.small:
            frame = self.source[i : i + 1]
            self.small[i] = frame if self.lowres == (self.h, self.w) else F.interpolate(frame, size=self.lowres, mode="area")
        return self.small[i]

    def prefetch(self, pairs) -> None:
        """Compute the flows of the (local) ``pairs`` ``(i, j)`` not known yet, ``self.batch`` pairs a backend call."""
        todo = [(i, j) for i, j in dict.fromkeys(pairs) if (self.first + i, self.first + j) not in self.flows]
        for k in range(0, len(todo), self.batch):
            group = todo[k : k + self.batch]
            # a fixed batch: each pair's bits whatever the others (a backend of pairs apart, DIS on the CPU, needs no padding)
            padded = group if getattr(self.backend, "pairs_apart", False) else group + group[-1:] * (self.batch - len(group))
            src = torch.cat([self.reduced(i) for i, _ in padded])
            dst = torch.cat([self.reduced(j) for _, j in padded])
            out = self.backend(src, dst).to(self.source.device, torch.float32)  # (batch, 2, lh, lw)
            for m, (i, j) in enumerate(group):
                self.flows[(self.first + i, self.first + j)] = out[m]

    def flow(self, i: int, j: int) -> torch.Tensor:
        self.prefetch([(i, j)])
        return self.flows[(self.first + i, self.first + j)]  # (2, lh, lw)

    def fit(self, pairs) -> None:
        """On a device with ``FLOW_BATCH``: the flows (``prefetch``) and the scene's motion of the (local) ``pairs`` not
        fitted yet, ``self.batch`` pairs a call (the masked fit, padded as ``prefetch``). Elsewhere nothing: ``motion``
        computes each pair's flow and fit alone when a chain asks for it."""
        todo = [(i, j) for i, j in dict.fromkeys(pairs) if (self.first + i, self.first + j) not in self.motions]
        if self.batch == 1 or not todo:
            return
        self.prefetch(todo)
        gx, gy = self.grid
        rows, cols = gy.long(), gx.long()
        u, v = (gx + 0.5) / self.sx - 0.5, (gy + 0.5) / self.sy - 0.5  # the sample points in full-resolution coordinates
        count, hw, b = u.numel(), self.h * self.w, self.batch
        u_all, v_all, depth = u.repeat(b), v.repeat(b), self.depth.reshape(-1, 1)  # (every pair's points, flat)
        for k in range(0, len(todo), b):
            group = todo[k : k + b]
            padded = group + group[-1:] * (b - len(group))
            f = torch.stack([self.flows[(self.first + i, self.first + j)] for i, j in padded])[:, :, rows, cols]  # (B, 2, N)
            us, vs = u + f[:, 0] / self.sx, v + f[:, 1] / self.sy  # (B, N)
            base = to_device([i * hw for i, _ in padded], u.device).repeat_interleave(count)  # each point's depth frame
            z, lo, hi = (x.reshape(b, count) for x in _sample_with_depth(depth, self.h, self.w, u_all, v_all, base))
            ok = (lo > 0) & (hi <= lo * (1 + MOTION_EDGE)) & _inside(us, vs, self.h, self.w)
            params = fit_scene_motion(u.expand(b, -1), v.expand(b, -1), 1.0 / z, us, vs, (self.h, self.w), inlier_px=self.inlier_px, valid=ok)
            for m, (i, j) in enumerate(group):
                self.motions[(self.first + i, self.first + j)] = params[m]

    def table(self, step: int, starts: set[int]) -> tuple[torch.Tensor, torch.Tensor]:
        motion, flow, done = self.tables[step]
        self.fit([(i, i + step) for i in sorted(starts - done)])
        for i in sorted(starts - done):
            motion[i] = self.motion(i, i + step)
            flow[:, i] = self.flow(i, i + step)
            done.add(i)
        return motion, flow

    def sample(self, flow: torch.Tensor, i: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        f = sample_bilinear(flow, (x + 0.5) * self.sx - 0.5, (y + 0.5) * self.sy - 0.5, which=i)  # (2, N) low-res pixels
        return torch.stack([f[0] / self.sx, f[1] / self.sy])

    def motion(self, i: int, j: int) -> torch.Tensor:
        key = (self.first + i, self.first + j)
        if key not in self.motions:
            gx, gy = self.grid
            f = self.flow(i, j)[:, gy.long(), gx.long()]  # (2, N) low-res pixels
            u, v = (gx + 0.5) / self.sx - 0.5, (gy + 0.5) / self.sy - 0.5  # full-resolution coordinates
            us, vs = u + f[0] / self.sx, v + f[1] / self.sy
            lo, hi = _tap_range(self.depth[i], u, v)
            ok = (lo > 0) & (hi <= lo * (1 + MOTION_EDGE)) & _inside(us, vs, self.h, self.w)
            z = sample_bilinear(self.depth[i][None], u, v)[0]
            if ok.device.type == "cpu":  # the matches selected; on a GPU masked instead (selecting them waits for the GPU)
                picked = ok.nonzero()[:, 0]
                u, v, z, us, vs = (a[picked] for a in (u, v, z, us, vs))
                ok = None
            self.motions[key] = fit_scene_motion(u, v, 1.0 / z, us, vs, (self.h, self.w), inlier_px=self.inlier_px, valid=ok)
        return self.motions[key]


def _behind(
    left: torch.Tensor, right: torch.Tensor, z_left: torch.Tensor, z_right: torch.Tensor,
    frames: Sequence[int], shift: torch.Tensor, offset: torch.Tensor, flows: _Flows, tol: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """The background of crossed holes, from the source: holes whose background-side end is nearer than the other.

    A view right of the input (shift > 0) moves near things left more than far ones, so a hole opens right of
    a near edge: its left end is the occluder, the background the hidden continuation of what the source
    shows right of that edge. Usually the hole's right end shows that background; where it is nearer than the
    left end, a second, nearer occluder has moved over it (a box passing in front of a ball), and "the farther
    end" is the first occluder. The background is then read where the source saw it: the source pixel just
    past the occluder's edge (at the column the edge came from), if it is farther than the edge by ``tol``:
    a sharp edge. (Up to 3 px past it, the blurred edges of monocular-like depth read their own ramp as a
    background: -0.24 dB on bench_fill_real's degraded donkey-zoom; bbb-truck's exact edges gain alike.)
    Left views (shift < 0) mirrored. Every op elementwise over the maps.

    left, right: the row's nearest valid columns of each pixel ``(N, H, W)`` (``_row_neighbours``), z_left,
    z_right their Z (0: none); frames, shift, offset ``(N,)``: each cell's frame and view (``temporal_fill``).
    Returns the background's Z ``(N, H, W)`` (0 where the pixel's hole is not crossed or nothing farther was
    found), its column in the source ``(N, H, W)`` (its colour: ``flows.source[frame, :, row, column]``) and
    whether the background lies right of the hole ``(N, H, W)``.
    """
    w = flows.w
    s = shift.view(-1, 1, 1)
    on_right = (s > 0).expand_as(left)
    edge = torch.where(on_right, left, right)  # the occluder's end: the near side of the edge that opened the hole
    z_edge = torch.where(on_right, z_left, z_right)
    z_other = torch.where(on_right, z_right, z_left)
    crossed = (left >= 0) & (right >= 0) & (z_other > 0) & (z_other * (1 + tol) < z_edge)
    # the occluder's edge in the source: u + f b (1 / Z - screen) (as temporal_fill's hidden point)
    x_src = edge.to(z_edge.dtype) + z_edge.clamp_min(1e-12).reciprocal() * s.to(z_edge.dtype) - offset.view(-1, 1, 1).to(z_edge.dtype)
    col = (x_src.round().long() + torch.where(on_right, 1, -1)).clamp(-1, w)
    z = flows.depth[to_device(frames, flows.depth.device)].gather(-1, col.clamp(0, w - 1))
    return torch.where(crossed & (col >= 0) & (col < w) & (z > z_edge * (1 + tol)), z, 0), col, on_right


def _chain_starts(frames: Sequence[int], step: int, steps: int, n: int) -> set[int]:
    """The frames i whose pair (i, i + step) a chain of up to ``steps`` steps from each of ``frames`` passes (within n)."""
    return {t + step * (k - 1) for t in frames for k in range(1, steps + 1) if 0 <= t + step * k < n}


# --------------------------------------------------------------------------------------------------
# step 2: time, along flow


def temporal_fill(
    frames: Sequence[int],
    hole: torch.Tensor,
    depth: torch.Tensor,
    shift: torch.Tensor,
    offset: torch.Tensor,
    flows: _Flows,
    config: FillConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step 2 for N cells (a view at a frame) of a chunk: hole pixels seen by the source in other frames.

    frames: the frame t of each cell; hole: bool ``(N, H, W)``; depth: Z ``(N, H, W)`` of the cells (0 in
    holes); shift: focal x baseline (px m) of each cell's view ``(N,)``; offset: the view's screen-plane
    offset, shift x screen (px: ``camera``) ``(N,)``. The source's frames are ``flows``'.
    Returns the flat indices into ``(N, H, W)`` of the filled pixels ``(M,)``, their colours ``(M, 3)``
    and their depth ``(M,)`` (the hole's background depth at frame t).

    Two motions of the hidden point are followed frame by frame, ``window`` frames each way: the
    scene's (``fit_scene_motion`` per pair of neighbours, chained with the point's depth; exact for a
    static background whatever the camera does, and needing no flow near the hole) and the flow read
    at the reference point (for a background that moves by itself). With a usable reference
    (background at the hole's depth, ``flow_margin`` away from the occluder), a motion counts at a
    frame only if the reference keeps its colour along it, and the one that keeps it better wins.
    Every point's arithmetic is its own (elementwise ops and gathers): cells batched together give what
    each gives alone.
    """
    n, h, w = flows.n, flows.h, flows.w
    device, dtype = depth.device, flows.frames.dtype
    valid = ~hole & (depth > 0)
    left, right = _row_neighbours(valid)  # (N, H, W)
    z_left = torch.where(left >= 0, depth.gather(-1, left.clamp_min(0)), 0)
    z_right = torch.where(right >= 0, depth.gather(-1, right.clamp_min(0)), 0)
    z_behind, behind_col, behind_right = _behind(left, right, z_left, z_right, frames, shift, offset, flows, config.depth_tolerance)
    z_bg_map = torch.where(valid, 0, torch.where(z_behind > 0, z_behind, torch.maximum(z_left, z_right)))
    cell, ys, xs = (hole & (z_bg_map > 0)).nonzero(as_tuple=True)
    empty = torch.zeros(0, dtype=torch.long, device=device)
    if ys.numel() == 0 or config.window == 0 or n == 1:
        return empty, flows.frames.new_zeros(0, 3), depth.new_zeros(0)
    flat = cell * (h * w) + ys * w + xs
    t = to_device(frames, device)[cell]  # each point's frame
    z_bg = z_bg_map.reshape(-1)[flat]
    crossed = z_behind.reshape(-1)[flat] > 0
    on_right = z_right.reshape(-1)[flat] >= z_left.reshape(-1)[flat]  # background side (ties: right)
    on_right = torch.where(crossed, behind_right.reshape(-1)[flat], on_right)
    edge = torch.where(on_right, right.reshape(-1)[flat], left.reshape(-1)[flat]).to(dtype)  # its nearest known column
    side = torch.where(on_right, 1.0, -1.0).to(dtype)
    # px: the hidden point sits at u + f b (1 / Z - screen) in the source (f b / Z as torch computes a number over a tensor)
    disparity = z_bg.reciprocal() * shift[cell] - offset[cell]
    # a crossed hole's background edge is where the source saw it (_behind): there the reference below starts
    edge = torch.where(crossed, behind_col.reshape(-1)[flat].to(dtype) - disparity, edge)
    x_hidden = xs.to(dtype) + disparity
    y = ys.to(dtype)
    keep = 1 - config.depth_tolerance

    def same_surface(lo: torch.Tensor, hi: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        return (lo >= keep * expected) & (hi * keep <= expected)

    # The reference point: on the background, flow_margin into it from the occluder's edge (or half of
    # that) where the source shows the hole's background surface there.
    at_t = t * (h * w)
    x_ref = edge + disparity
    ref_ok = torch.zeros_like(on_right)
    for m in (config.flow_margin * w, 0.5 * config.flow_margin * w):
        x_try = edge + disparity + side * m
        _, lo, hi = _sample_with_depth(flows.frames, h, w, x_try, y, at_t)
        good = ~ref_ok & _inside(x_try, y, h, w) & same_surface(lo, hi, z_bg)
        x_ref = torch.where(good, x_try, x_ref)
        ref_ok |= good
    ref, _, _ = _sample_with_depth(flows.frames, h, w, x_ref, y, at_t)
    ref_colour, ref_depth = ref[:, :3], ref[:, 3].clamp_min(1e-12)  # (N, 3), (N,)

    total = torch.zeros(ys.numel(), 3, dtype=dtype, device=device)
    weight = torch.zeros(ys.numel(), dtype=dtype, device=device)
    inf = torch.full_like(z_bg, math.inf)
    static_px = 2 * flows.inlier_px  # per sqrt(frame): how far the flow and the scene's motion may drift apart
    num = ys.numel()
    for step in (1, -1):  # forward in time, then backward: a fixed order
        starts = _chain_starts(frames, step, config.window, n)
        motion, flow = flows.table(step, starts)
        # scene-motion chain of the hidden points and the references together: (2N,) positions and depths
        xc, yc, zc = torch.cat([x_hidden, x_ref]), torch.cat([y, y]), torch.cat([z_bg, ref_depth])
        # flow chain: the reference followed along the flow
        xf, yf = x_ref, y
        for k in range(1, config.window + 1):
            if not any(0 <= f + step * k < n for f in frames):
                break
            i, s = t + step * (k - 1), t + step * k
            within = (s >= 0) & (s < n)  # a point's chain ends at the chunk's end
            i = i.clamp(0, n - 1)
            xc, yc, wc = predict_motion(take_rows(motion, torch.cat([i, i])), xc, yc, 1.0 / zc, (h, w))
            zc = zc * wc
            f = flows.sample(flow, i, xf, yf)
            xf, yf = xf + f[0], yf + f[1]
            xm, xr, ym, yr, zm = xc[:num], xc[num:], yc[:num], yc[num:], zc[:num]
            xq, yq = x_hidden + (xf - x_ref), yf  # the hidden point keeps its offset to the flow-carried reference
            # one gather for the four places: reference and hidden point under the scene's motion, then under the flow
            px, py = torch.cat([xr, xm, xf, xq]), torch.cat([yr, ym, yf, yq])
            got_s, lo4, hi4 = _sample_with_depth(flows.frames, h, w, px, py, (s.clamp(0, n - 1) * (h * w)).repeat(4))
            inside4 = _inside(px, py, h, w)
            ref_m, col_m, ref_f, col_f = got_s.split(num)
            lo_m, lo_q = lo4[num : 2 * num], lo4[3 * num :]
            hi_m, hi_q = hi4[num : 2 * num], hi4[3 * num :]
            in_r, in_m, in_f, in_q = inside4.split(num)
            # candidate 1: the scene's motion; the reference must keep its colour along it (if there is one) ...
            err_m = (ref_m[:, :3] - ref_colour).abs().mean(1)
            err_m = torch.where(ref_ok & in_r, err_m, torch.where(ref_ok, inf, 0.0))
            # ... and move as the scene does: a reference the flow carries elsewhere is on an object moving by itself
            # (a smooth texture keeps its colour under a wrong motion; the flow tells them apart)
            moved = ((xf - xr) ** 2 + (yf - yr) ** 2).sqrt()
            err_m = torch.where(ref_ok & (moved > static_px * math.sqrt(k)), inf, err_m)
            ok_m = in_m & same_surface(lo_m, hi_m, zm) & (err_m <= config.colour_tolerance)
            # candidate 2: the flow followed from the reference
            ratio = ref_f[:, 3] / ref_depth
            err_f = (ref_f[:, :3] - ref_colour).abs().mean(1)
            ok_f = ref_ok & in_f & in_q & same_surface(lo_q, hi_q, z_bg * ratio)
            ok_f &= (err_f <= config.colour_tolerance) & (ratio > keep) & (ratio * keep < 1)
            use_f = ok_f & (~ok_m | (err_f < err_m))
            ok = (ok_m | ok_f) & within
            colour = torch.where(use_f[:, None], col_f[:, :3], col_m[:, :3])  # (N, 3)
            wt_ok = ok.to(dtype) * config.decay ** (k - 1)
            total = total + colour * wt_ok[:, None]  # (a point that saw nothing adds an exact 0)
            weight = weight + wt_ok
    got = weight > 0
    return flat[got], total[got] / weight[got, None], z_bg[got]


# --------------------------------------------------------------------------------------------------
# step 3: space


END_PIXELS = 1  # a hole's end colour: the mean of this many known pixels of its row there (1: the end pixel)
SATURATED = 0.96  # every channel at or above this: blown out, its depth is not trusted
ROW_SHARE = 0.7  # step 3: the row fill's share in disocclusions (the soft fill's: the rest)
BAND_ROW_SHARE = 0.3  # and in the out-of-view band, where the 2-D neighbourhood knows more than one row's end
# Telea's share (cv2.inpaint, ``telea.py``: fast marching that continues each edge it meets) of the stretched band. On
# real captures the soft fill smears whatever lies around into the band (a black chair's back into the wall beside it)
# and blurs a floor's edge across rows, where Telea continues the rows; Telea streaks the edge's noise where we average
# it. Their errors lie apart: the blend beats either (bench/results/fill_real_sweeps.txt). Not in disocclusions: Telea
# is depth-blind and pulls the occluder in (tests/test_fill.py), and where the depth is not trusted it lost there too.
BAND_TELEA_SHARE = 0.6
SOFT_LEVELS = 6  # soft_fill's box radii 1, 2, 4, ... 32 px
SOFT_COVER = 0.25  # a level whose window is this much known is used as it is (finer levels blend over it)


def soft_fill(image: torch.Tensor, weights: torch.Tensor, todo: torch.Tensor) -> torch.Tensor:
    """Fill ``todo`` pixels of ``image (3, H, W)`` by normalised convolution over growing windows (step 3).

    Any leading dims: image ``(..., 3, H, W)``, weights and todo ``(..., H, W)``.
    weights ``(H, W)`` in [0, 1]: how much each pixel may give (0 in holes and on occluders). Each level
    k averages the weighted pixels of a (2r+1)^2 box (r = 2^k, twice: a tent) at full resolution; from the
    coarsest level down, a level replaces what is below it in proportion to its cover (``SOFT_COVER`` or
    more: entirely), as pull-push does but without its blocks: a hole pixel takes the nearest
    well-covered neighbourhood, small holes from a few pixels around, large ones a soft average.
    Returns ``(3, H, W)``.
    """
    h, w = image.shape[-2:]
    wt = weights.to(image.dtype).unsqueeze(-3)
    both = torch.cat([image * wt, wt], -3)  # the weighted colour and the weight through the same boxes (one op each)
    sums = []
    for k in range(SOFT_LEVELS):
        r = 2**k
        nd = both
        for _ in range(2):  # a tent: two boxes
            nd = box_sum(nd, r, r)
        sums.append(nd.flatten(-2))  # (..., 4, H*W)
    if image.device.type != "cpu":  # every pixel at once: no list of pixels read back to the host
        return torch.where(todo.unsqueeze(-3), _soft_blend(sums).unflatten(-1, (h, w)), image)
    # on the CPU the blend only where it is used, at the todo pixels (a few % of the image): the same arithmetic per pixel
    cell, pix = todo.reshape(-1, h * w).nonzero(as_tuple=True)
    colour = _soft_blend([nd.reshape(-1, 4, h * w)[cell, :, pix].T for nd in sums])  # (4, M) each -> (3, M)
    out = image.clone()
    out.view(-1, 3, h * w)[cell, :, pix] = colour.T
    return out


def _soft_blend(sums: list[torch.Tensor]) -> torch.Tensor:
    """``soft_fill``'s levels from their tent sums of the weighted colour and the weight ``(..., 4, P)`` at P pixels,
    finest first: the colour ``(..., 3, P)``."""
    levels = []
    for k, nd in enumerate(sums):
        r = 2**k
        n, d = nd[..., :3, :], nd[..., 3:, :]
        area = float((2 * r + 1) ** 4)
        d = torch.where(d > 0.5, d, 0)  # cumsums (off the CPU) leave ~1e-3 where nothing is: no pixel weighs less than 1 here
        levels.append((n / d.clamp_min(0.5), (d / area / SOFT_COVER).clamp(0, 1)))
    colour, _ = levels[-1]
    for value, alpha in reversed(levels[:-1]):
        colour = alpha * value + (1 - alpha) * colour
    return colour


SPREAD = 1.0  # smoothing radius per px of distance to the hole's edge
SMOOTH_LEVELS = 6  # row fills are smoothed over rows with radii 1, 2, 4, 8, 16, 32 px, chosen by the distance to the hole's edge


def row_fill(
    image: torch.Tensor, known: torch.Tensor, depth: torch.Tensor, todo: torch.Tensor, config: FillConfig,
    ends_z: tuple[torch.Tensor, torch.Tensor] | None = None, behind: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Fill ``todo`` pixels of ``image (3, H, W)`` along their rows, from the hole's two ends (step 3).

    A hole pixel sees the nearest known pixel of its row on each side (``known`` bool ``(H, W)``, with
    depth Z ``(H, W)``; an end without a depth takes the nearest one on its side). Where the two ends lie
    at clearly different depths (a disocclusion: ratio above ``1 + depth_tolerance``), the farther one, the
    background the nearer one hid, is carried across; where they are one surface (a crack, a speck of
    noisy depth) or the depth cannot be read, the two are interpolated linearly: a blend that paints no layer it did not see on both sides. At the frame edge
    (one end only) that end's colour continues the picture. The row values are then smoothed over the
    rows of the hole, the more the farther from its edge (radius ~ half the distance), so a fill follows
    the horizontal structure at the edge and fades into a soft average inside, never into streaks.
    ends_z: the depth at each pixel's nearest known pixel with a depth left and right ``(..., H, W)`` (0: none),
    where the caller has them (computed otherwise).
    behind: for crossed holes (``_behind``: the end on the background's side is a second, nearer occluder),
    the background's colour ``(..., 3, H, W)`` and Z ``(..., H, W)`` as the source saw it (Z 0 elsewhere), and
    whether it lies right of the hole ``(..., H, W)``: carried across instead of the farther end (the first
    occluder), trusted as far as it is farther than the occluder.
    Any leading dims: image ``(..., 3, H, W)``, the others ``(..., H, W)``. Returns ``(..., 3, H, W)`` and
    the trust in the background end ``(..., H, W)``.
    """
    c, h, w = image.shape[-3:]
    left, right = _row_neighbours(known)
    cols = torch.arange(w, device=image.device).expand(h, w)
    has_l, has_r = left >= 0, right >= 0
    # each end's colour: the mean of its END_PIXELS known pixels along the row (an edge pixel alone carries
    # the warp's halo and the sensor's noise)
    k = known.to(image.dtype).unsqueeze(-3)
    ends = box_sum(image * k, 0, END_PIXELS - 1) / box_sum(k, 0, END_PIXELS - 1).clamp_min(1e-12)
    col_l = ends.gather(-1, (left - (END_PIXELS - 1)).clamp_min(0).unsqueeze(-3).expand(image.shape))
    col_r = ends.gather(-1, (right + (END_PIXELS - 1)).clamp(0, w - 1).unsqueeze(-3).expand(image.shape))
    # each end's depth: the nearest pixel with one on that side (a splat of colour may come without a depth)
    if ends_z is None:
        zl_at, zr_at = _row_neighbours(known & (depth > 0))
        ends_z = (torch.where(zl_at >= 0, depth.gather(-1, zl_at.clamp_min(0)), 0), torch.where(zr_at >= 0, depth.gather(-1, zr_at.clamp_min(0)), 0))
    z_l, z_r = (torch.where(has, z, 0) for has, z in zip((has_l, has_r), ends_z, strict=True))
    d_l = (cols - left).to(image.dtype)
    d_r = (right - cols).to(image.dtype)
    both = has_l & has_r
    d_l3, d_r3 = d_l.unsqueeze(-3), d_r.unsqueeze(-3)
    interp = torch.where(both.unsqueeze(-3), (col_l * d_r3 + col_r * d_l3) / (d_l3 + d_r3).clamp_min(1), torch.where(has_l.unsqueeze(-3), col_l, col_r))
    far_r = z_r >= z_l
    ratio = torch.maximum(z_l, z_r) / torch.minimum(z_l, z_r).clamp_min(1e-12)
    tol = config.depth_tolerance
    trust = torch.where(both & (z_l > 0) & (z_r > 0), ((ratio - 1 - tol) / tol).clamp(0, 1), 0.0)
    bg = torch.where(far_r.unsqueeze(-3), col_r, col_l)
    if behind is not None:
        colour_b, z_b, right_b = behind
        crossed = both & (z_b > 0)
        z_edge = torch.where(right_b, z_l, z_r)  # the occluder's end
        trust = torch.where(crossed, ((z_b / z_edge.clamp_min(1e-12) - 1 - tol) / tol).clamp(0, 1), trust)
        far_r = torch.where(crossed, right_b, far_r)
        bg = torch.where(crossed.unsqueeze(-3), colour_b, bg)
    # a saturated end has no depth to trust (a blown-out window, a lamp: estimators and matchers guess there)
    saturated = (col_l.amin(-3) >= SATURATED) | (col_r.amin(-3) >= SATURATED)
    trust = torch.where(saturated, 0.0, trust)
    value = trust.unsqueeze(-3) * bg + (1 - trust.unsqueeze(-3)) * interp
    near = torch.where(both, torch.minimum(d_l, d_r), torch.where(has_l, d_l, d_r))
    dist = trust * torch.where(far_r, d_r, d_l) + (1 - trust) * near
    dist = torch.where(both | has_l | has_r, dist, 0)
    out = column_mean_growing(value, todo, dist * SPREAD, SMOOTH_LEVELS)  # over the hole's rows, wider farther in
    return torch.where((todo & (both | has_l | has_r)).unsqueeze(-3), out, image), trust


# --------------------------------------------------------------------------------------------------
# step 4: the border band


def border_band(known: torch.Tensor, side: int) -> torch.Tensor:
    """The out-of-view band: holes with no known pixel between them and the frame edge on ``side``.

    known: bool ``(..., H, W)``; side: +1 for the right edge (a view right of the input, baseline > 0),
    -1 for the left edge. Returns bool ``(..., H, W)``.
    """
    if side not in (1, -1):
        raise ValueError(f"side must be +1 (right edge) or -1 (left edge), got {side}")
    left, right = _row_neighbours(known)
    return ~known & ((right < 0) if side > 0 else (left < 0))


def band_width(known: torch.Tensor, side: int) -> torch.Tensor:
    """Width in columns of the widest row of the out-of-view band per image: bool ``(..., H, W)`` -> long ``(...)``."""
    return border_band(known, side).sum(-1).amax(-1)


def crop_width(known: torch.Tensor, side: int) -> int:
    """Columns to crop at the ``side`` edge of every frame of a clip so that no band is left: ``(T, H, W)`` -> int.

    For a caller that can change the frame size (crop both eyes alike so their pixels stay aligned).
    """
    check_shape(known, "T H W", "known")
    return int(band_width(known, side).max().item()) if known.numel() else 0


def fill_border(image: torch.Tensor, band: torch.Tensor, side: int, mode: str, *, width: int | None = None) -> torch.Tensor:
    """Fill the out-of-view ``band (H, W)`` of ``image (3, H, W)`` (all other pixels known or filled).

    ``mirror``: each band pixel takes the row's pixel reflected about the band's inner edge (the first
    band pixel copies the last known one), so texture continues into the band. ``float``: a floating window,
    black over the ``width`` columns at the edge (default: the widest row of the band); pixels beside
    the band in those columns are blacked too, so the window's edge is a straight line. Rows without
    any known pixel are left as they are. Returns ``(3, H, W)``. Any leading dims (``(..., 3, H, W)`` and
    ``(..., H, W)``): ``float``'s default width is then the widest row of them all.
    """
    h, w = image.shape[-2:]
    if not band.any() and not (mode == "float" and width):
        return image
    cols = torch.arange(w, device=image.device).expand(h, w)
    left, right = _row_neighbours(~band)
    inner = left if side > 0 else right  # the band's inner edge: the nearest non-band pixel of the row
    has_edge = inner >= 0
    if mode == "float":
        width = int(band.sum(-1).max().item()) if width is None else width
        bar = (cols >= w - width) if side > 0 else (cols < width)
        return torch.where(bar, 0.0, image)  # pixels beside the band in those columns too (the docstring)
    if mode != "mirror":
        raise ValueError(f"border mode must be mirror or float here (stretch is step 3's row fill), got {mode!r}")
    src = ((2 * inner + 1 - cols) if side > 0 else (2 * inner - 1 - cols)).clamp(0, w - 1)
    values = image.gather(-1, src.unsqueeze(-3).expand(image.shape))
    return torch.where((band & has_edge).unsqueeze(-3), values, image)


# --------------------------------------------------------------------------------------------------
# the entry point


def _check_views(images, known, depth, source, source_depth, baselines) -> dict[str, int]:
    s = check_shape(images, "V n 3 H W", "images")
    sizes = [s, check_shape(known, "V n H W", "known"), check_shape(depth, "V n H W", "depth")]
    sizes += [check_shape(source, "n 3 H W", "source"), check_shape(source_depth, "n H W", "source_depth")]
    check_same(sizes, "n H W", ["images", "known", "depth", "source", "source_depth"])
    check_same([s, check_shape(baselines, "V", "baselines")], "V", ["images", "baselines"])
    if known.dtype != torch.bool:
        raise ValueError(f"known: expected a bool mask, got {known.dtype}")
    return s


BATCH_PIXELS = {"cuda": 2**24}  # pixels of the cells filled together (one op over them all); other devices: DEFAULT_BATCH_PIXELS
DEFAULT_BATCH_PIXELS = 1  # on the CPU ops are large enough per cell already; batches bound the memory (~0.5 kB a pixel)


def _batches(items: list, h: int, w: int, device: torch.device) -> list[list]:
    """``items`` (cells) in batches of up to ``BATCH_PIXELS`` pixels (at least one cell each)."""
    size = max(1, BATCH_PIXELS.get(device.type, DEFAULT_BATCH_PIXELS) // (h * w))
    return [items[i : i + size] for i in range(0, len(items), size)]


def fill_views(
    images: torch.Tensor,
    known: torch.Tensor,
    depth: torch.Tensor,
    *,
    source: torch.Tensor,
    source_depth: torch.Tensor,
    baselines: torch.Tensor,
    focal: float,
    screen: float = 0.0,
    core: slice = slice(None),
    config: FillConfig | None = None,
    flow: FlowBackend | None = None,
    progress: Callable[[int], None] | None = None,
    with_origin: bool = False,
    carry: Carry | None = None,
    first: int = 0,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Fill the holes of V views of a chunk of frames (module docstring: background side, time, space, border).

    images: float ``(V, n, 3, H, W)`` in [0, 1], the warped frame-matrix cells of the views to fill,
    n = the core frames plus up to ``config.context`` frames of context on each side (fewer at the
    clip's ends); known: bool ``(V, n, H, W)``; depth: Z ``(V, n, H, W)`` of every cell, 0 in holes
    (``warp_depth``); source ``(n, 3, H, W)`` in [0, 1] and source_depth Z ``(n, H, W)``: the input
    view's frames; baselines ``(V,)`` metres of the views; focal in pixels; screen: inverse depth (1/m) of
    the screen plane the views were warped with (``camera``); core: the frames to return.
    flow: a ``flow.FlowBackend`` for the source's flow at ``config.flow_width`` (default OpenCV DIS,
    CPU). ``progress(1)`` after each frame of each view. carry: what the previous chunk of the same run
    left (``Carry``: flows and first passes by absolute frame, taken where they fit and updated for the next
    chunk), with ``first`` the absolute index of the cells' frame 0; the result is the same without.

    Returns float ``(V, len(core), 3, H, W)`` in [0, 1] with known pixels unchanged, and with
    ``with_origin`` also uint8 ``(V, len(core), H, W)`` (``KNOWN``, ``FROM_TIME``, ``FROM_SPACE``,
    ``FROM_BORDER``). Frame t's output depends only on frames within ``config.context`` of it.
    """
    config = FillConfig() if config is None else config
    s = _check_views(images, known, depth, source, source_depth, baselines)
    v_count, n, h, w = s["V"], s["n"], s["H"], s["W"]
    frames = range(n)[core]
    dtype = images.dtype if images.is_floating_point() else torch.float32
    device = images.device
    known, depth = known.to(device), depth.to(device)
    out = torch.empty(v_count, len(frames), 3, h, w, dtype=dtype, device=device)
    origin = torch.zeros(v_count, len(frames), h, w, dtype=torch.uint8, device=device)
    src = source.to(device, dtype)
    src_z = source_depth.to(device, dtype)
    shifts = float(focal) * baselines.double()  # px m per view, as warp.warp_views
    offsets = shifts * screen  # px per view: the screen plane's shift
    shift_of, offset_of = to_device(shifts.to(dtype), device), to_device(offsets.to(dtype), device)  # (rounded as a Python float is in an op)
    moves = (shifts != 0).tolist()
    full = known[:, frames.start : frames.stop : frames.step].flatten(2).all(-1).tolist()  # (V, len(frames)): nothing to fill
    todo = [(v, j, t) for v in range(v_count) for j, t in enumerate(frames) if moves[v] and not full[v][j]]
    for v in range(v_count):
        for j, t in enumerate(frames):
            if not moves[v] or full[v][j]:
                out[v, j] = images[v, t].to(dtype)
    flows = _Flows(src, src_z, config, flow, carry, first)
    # steps 1-4 on every cell within `smooth` frames of one to fill, batched (no op mixes cells), kept for step 5
    # channels last: colour and the depth each pixel was filled for (n*H*W, 4), and the origin
    cells = sorted({(v, i) for v, _, t in todo for i in range(max(0, t - config.smooth), min(n, t + config.smooth + 1))})
    row = {cell: r for r, cell in enumerate(cells)}
    passes = torch.empty(len(cells) * h * w, 4, dtype=dtype, device=device)
    passes_origin = torch.empty(len(cells) * h * w, dtype=torch.uint8, device=device)
    # a cell's first pass reads the frames within `window` of its own: the previous chunk's is this one's where it read the same
    seen = {(v, i): (first + max(0, i - config.window), first + min(n, i + config.window + 1)) for v, i in cells}
    key = {(v, i): (float(shifts[v]), float(offsets[v]), first + i) for v, i in cells}
    carried = {c: carry.passes[key[c]] for c in cells if carry is not None and carry.passes.get(key[c], (None, None))[:2] == seen[c]}
    for c, (_, _, colour_z, o) in carried.items():
        passes.view(-1, h * w, 4)[row[c]], passes_origin.view(-1, h * w)[row[c]] = colour_z, o
    fresh = [c for c in cells if c not in carried]
    # every flow their step 2 follows, both ways, and its scene motion, in as few calls as FLOW_BATCH allows
    needed = {t for _, t in fresh}
    flows.fit([(i, i + step) for step in (1, -1) for i in sorted(_chain_starts(needed, step, config.window, n))])
    def keep(finish, ri: torch.Tensor) -> None:
        img, o, z = finish()
        passes.view(-1, h * w, 4)[ri] = torch.cat([img, z.unsqueeze(1)], 1).permute(0, 2, 3, 1).reshape(len(ri), h * w, 4)
        passes_origin.view(-1, h * w)[ri] = o.reshape(len(ri), h * w)

    # on CUDA a batch is finished after the next one is launched: its Telea round trip meanwhile on a thread of the CPU
    # (on a CPU at once: the cores are busy anyway, and a batch's memory is freed before the next)
    with ThreadPoolExecutor(1, thread_name_prefix="telea-job") if device.type == "cuda" else nullcontext() as background:
        pending = None
        for batch in _batches(fresh, h, w, device):
            ts = [t for _, t in batch]
            # the cells' indices as tensors on the device (indexing with a list copies it there and waits for the GPU);
            # the rows are not always contiguous: carried cells may lie between
            vi, ti, ri = (to_device(x, device) for x in ([v for v, _ in batch], ts, [row[c] for c in batch]))
            finish = _fill_frame(images[vi, ti].to(dtype), known[vi, ti], depth[vi, ti].to(dtype), ts, shift_of[vi], offset_of[vi], flows, config, background)  # fmt: skip
            if background is None:
                keep(finish, ri)
                continue
            if pending is not None:
                keep(*pending)
            pending = finish, ri
        if pending is not None:
            keep(*pending)
    # step 5, known pixels exactly as given, the floating window
    for batch in _batches(todo, h, w, device):
        vs, js, ts = ([c[i] for c in batch] for i in range(3))
        rows = [row[(v, t)] for v, _, t in batch]
        vi, ji, ti, ri = (to_device(x, device) for x in (vs, js, ts, rows))
        if config.smooth:
            img = _consolidate(vs, ts, rows, row, passes, passes_origin, shift_of, offset_of, flows, config)
        else:
            img = passes.view(-1, h, w, 4)[ri, :, :, :3].permute(0, 3, 1, 2)
        k = known[vi, ti]
        img = torch.where(k.unsqueeze(1), images[vi, ti].to(dtype), img.clamp(0, 1))
        if config.border == "float":  # a floating window covers known pixels too: its edge is one straight line
            for b, (v, _, t) in enumerate(batch):
                around = range(max(0, t - config.window), min(n, t + config.window + 1))
                for side in (1, -1):  # each edge with a band (both with a screen plane)
                    width = max(int(band_width(known[v, i], side)) for i in around)
                    if width:
                        img[b] = fill_border(img[b], border_band(k[b], side), side, "float", width=width)
        out[vi, ji] = img
        origin[vi, ji] = passes_origin.view(-1, h, w)[ri]
        if progress is not None:
            for _ in batch:
                progress(1)
    if progress is not None:
        for _ in range(v_count * len(frames) - len(todo)):
            progress(1)
    if carry is not None:  # for the next chunk, which starts at `end` and reads from `context` frames before it
        end = first + frames.stop
        for c in cells:
            if first + c[1] >= end - config.smooth and c not in carried:
                carry.passes[key[c]] = (*seen[c], passes.view(-1, h * w, 4)[row[c]].clone(), passes_origin.view(-1, h * w)[row[c]].clone())
        carry.keep_from(end - config.context, end - config.smooth)
    return (out, origin) if with_origin else out


def _fill_frame(
    image: torch.Tensor,
    known: torch.Tensor,
    depth: torch.Tensor,
    frames: Sequence[int],
    shift: torch.Tensor,
    offset: torch.Tensor,
    flows: _Flows,
    config: FillConfig,
    background: Executor | None = None,
) -> Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Steps 1-4 on N cells: image ``(N, 3, H, W)``, known ``(N, H, W)``, depth ``(N, H, W)`` at ``frames`` of views
    with ``shift`` and ``offset`` ``(N,)`` (``temporal_fill``). No op mixes cells: each comes out as it would alone.

    Returns ``finish``, which returns the filled images ``(N, 3, H, W)``, the origin ``(N, H, W)`` uint8 and the depth
    ``(N, H, W)`` of every pixel (known, or the background depth it was filled for). Everything is launched before it
    returns but the band's Telea share, whose round trip to the CPU runs on ``background`` meanwhile (``TeleaJob``), and
    what follows it: ``finish`` waits for it, so that the caller may launch the next batch's kernels first.
    """
    c, h, w = image.shape[-3:]
    z = torch.where(known, depth, 0)
    idx, colours, z_filled = temporal_fill(frames, ~known, z, shift, offset, flows, config)
    img = image.clone()
    img.view(-1, c, h * w)[idx // (h * w), :, idx % (h * w)] = colours
    z = z.clone()
    z.view(-1)[idx] = z_filled
    now = known.clone()
    now.view(-1)[idx] = True
    origin = torch.zeros_like(known, dtype=torch.uint8)
    origin.view(-1)[idx] = FROM_TIME
    # the row neighbours of what is known now (with a depth: a matrix built elsewhere may disagree with the
    # warped depth on a few splats), once for the band, step 3's background depth and the result's depth
    valid = now & (z > 0)
    left, right = _row_neighbours(torch.stack([valid, now]))
    z_left = torch.where(left[0] >= 0, z.gather(-1, left[0].clamp_min(0)), 0)
    z_right = torch.where(right[0] >= 0, z.gather(-1, right[0].clamp_min(0)), 0)
    z_behind, behind_col, behind_right = _behind(left[0], right[0], z_left, z_right, frames, shift, offset, flows, config.depth_tolerance)
    rgb_behind = flows.source[to_device(frames, flows.source.device)].gather(-1, behind_col.clamp(0, w - 1).unsqueeze(1).expand(-1, c, -1, -1))
    z_bg = torch.where(valid, 0, torch.where(z_behind > 0, z_behind, torch.maximum(z_left, z_right)))  # background_depth's but crossed holes
    left, right = left[1], right[1]
    # The out-of-view bands (as border_band(now, side)): at the edge content moves away from, and with a
    # screen plane also at the other edge (far content shifted the other way).
    bands = {side: ~now & ((right < 0) if side > 0 else (left < 0)) for side in (1, -1)}
    if config.border not in ("mirror", "stretch"):
        bands = {}
    band = bands[1] | bands[-1] if bands else torch.zeros_like(now)
    interior = ~now & ~band
    # Step 3 (and the band with border "stretch"): where the depth is trusted, the row fill's background end;
    # elsewhere the row fill (structure along the row) blended with the soft 2-D fill (every known pixel
    # around, depth-blind): on real captures each wins where the other errs (bench/bench_fill_real.py).
    todo = interior | (band if config.border == "stretch" else torch.zeros_like(band))
    rows, trust = row_fill(img, now, z, todo, config, ends_z=(z_left, z_right), behind=(rgb_behind, z_behind, behind_right))
    soft = soft_fill(img, now.to(img.dtype), todo)
    share = torch.where(band, BAND_ROW_SHARE, ROW_SHARE).to(img.dtype)
    share = (trust + (1 - trust) * share).unsqueeze(1)  # a trusted background end is never mixed with the occluder around
    img = torch.where(todo.unsqueeze(1), share * rows + (1 - share) * soft, img)
    origin = torch.where(interior, FROM_SPACE, origin)
    for side, b in bands.items():
        if config.border == "mirror":
            img = fill_border(img, b, side, config.border)
        origin = torch.where(b, FROM_BORDER, origin)
    z = torch.where(now, z, z_bg)  # filled pixels: the depth they were filled for
    if config.border != "stretch":
        done = img.clamp(0, 1), origin, z
        return lambda: done
    # Telea's share of the band (BAND_TELEA_SHARE): the band alone is its hole (the rest is filled by now: Telea reads
    # it as known), so it inpaints the box at the frame's edge only, on the CPU, as cv2.inpaint needs: with
    # `background` there, while the caller launches its next batch (the band's widths come back the same way)
    telea = TeleaJob(img, ~band, background=background)
    widths = HostCopy(torch.stack([b.sum(-1).amax() for b in bands.values()])) if img.device.type == "cuda" else None

    def finish() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = torch.where(band.unsqueeze(1), BAND_TELEA_SHARE * telea.result() + (1 - BAND_TELEA_SHARE) * img, img)
        known_widths = [None] * len(bands) if widths is None else widths.arrays()[0].tolist()
        for (side, b), width in zip(bands.items(), known_widths, strict=True):  # then faded into the band's vertical
            out = fade_band(out, b, side, width=width)  # average, the more the farther out
        return out.clamp(0, 1), origin, z

    return finish


def _consolidate(
    views: Sequence[int],
    frames: Sequence[int],
    rows: Sequence[int],
    row: dict[tuple[int, int], int],
    passes: torch.Tensor,
    passes_origin: torch.Tensor,
    shift: torch.Tensor,
    offset: torch.Tensor,
    flows: _Flows,
    config: FillConfig,
) -> torch.Tensor:
    """Step 5: hold filled pixels still. Each filled pixel of frame t averages the first passes of the frames
    within ``smooth`` of it, at the place the scene's motion carries its point (at the depth it was
    filled for), where that place is filled for (or shows) the same depth: a filled pixel stays put
    while its background does not move. Pixels filled from time (or seen there) weigh 1, guesses of
    steps 3-4 ``guess_weight``, a frame k away ``smooth_decay^k`` of that.

    For N cells, the views and frames of, whose first passes (steps 1-4) are ``passes (R*H*W, 4)`` (colour
    and depth, channels last) and ``passes_origin (R*H*W,)`` at rows ``rows`` (``row``: the row of each
    (view, frame) there: every frame within ``smooth`` of theirs). shift, offset ``(V,)`` per view.
    Returns the images ``(N, 3, H, W)`` (known pixels to be restored by the caller).
    """
    n, h, w = flows.n, flows.h, flows.w
    dtype = passes.dtype
    mine = to_device(rows, passes.device)
    img = passes.view(-1, h * w, 4)[mine]  # (N, H*W, 4)
    own_origin = passes_origin.view(-1, h * w)[mine]
    out = img[..., :3].permute(0, 2, 1).reshape(-1, 3, h, w)
    cell, pix = ((own_origin > 0) & (img[..., 3] > 0)).nonzero(as_tuple=True)  # a pixel filled for no depth (a row with none) stays as it is
    if pix.numel() == 0:
        return out
    ys, xs = pix // w, pix % w
    flat = mine[cell] * (h * w) + pix
    keep = 1 - config.depth_tolerance
    zf = passes[flat, 3]
    own = passes_origin[flat]
    t = to_device(frames, passes.device)[cell]
    view = to_device(views, passes.device)[cell]
    # the row of each point's (view, frame s) for every s: -1 where none (never read: s is within smooth)
    table = torch.full((max(views) + 1, n), -1, dtype=torch.long)
    for (v, i), r in row.items():
        if v <= max(views):
            table[v, i] = r
    table = to_device(table, passes.device)
    shift_p, offset_p = shift[view], offset[view]
    wt = torch.where(own == FROM_TIME, 1.0, config.guess_weight).to(dtype)
    total = passes[flat, :3] * wt[:, None]
    weight = wt.clone()
    y = ys.to(dtype)
    for step in (1, -1):
        motion, _ = flows.table(step, _chain_starts(frames, step, config.smooth, n))
        xm, ym, zm = xs.to(dtype) + zf.reciprocal() * shift_p - offset_p, y, zf  # the point in the source at frame t (f b / Z as torch computes a number over a tensor)
        for k in range(1, config.smooth + 1):
            if not any(0 <= f + step * k < n for f in frames):
                break
            i, s = t + step * (k - 1), t + step * k
            within = (s >= 0) & (s < n)  # every frame of the chunk within smooth has its first pass
            s = s.clamp(0, n - 1)
            xm, ym, wm = predict_motion(take_rows(motion, i.clamp(0, n - 1)), xm, ym, 1.0 / zm, (h, w))
            zm = zm * wm
            xv = xm - zm.reciprocal() * shift_p + offset_p  # where the view shows it at frame s
            at_s = table[view, s].clamp_min(0) * (h * w)
            got, lo, hi = _sample_with_depth(passes, h, w, xv, ym, at_s)
            nearest = (ym.round().clamp(0, h - 1) * w + xv.round().clamp(0, w - 1)).long()
            o_s = passes_origin[at_s + nearest]
            # a band pixel's depth is a guess (one side only): any pixel filled there counts, never a known one
            ok = within & _inside(xv, ym, h, w) & (((lo >= keep * zm) & (hi * keep <= zm)) | ((own == FROM_BORDER) & (o_s != KNOWN)))
            ws = torch.where((o_s == FROM_TIME) | (o_s == KNOWN), 1.0, config.guess_weight).to(dtype) * ok * config.smooth_decay**k
            total = total + got[:, :3] * ws[:, None]  # (a point that found nothing adds an exact 0)
            weight = weight + ws
    out.view(-1, 3, h * w)[cell, :, pix] = total / weight[:, None]
    return out


# --------------------------------------------------------------------------------------------------
# the whole frame matrix


def fill_frame_matrix(
    images: torch.Tensor,
    masks: torch.Tensor,
    depth: torch.Tensor,
    config: FillConfig | None = None,
    *,
    baselines: Sequence[float] | torch.Tensor,
    focal: float,
    screen: float = 0.0,
    views: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
    flow: FlowBackend | None = None,
) -> FillResult:
    """Fill the holes of whole frame-matrix views: ``fill_views`` over all frames, the input view as the source.

    images: float ``(V, T, 3, H, W)`` in [0, 1]; masks: bool ``(V, T, 1, H, W)``, True = known;
    depth: Z ``(V, T, H, W)`` of every cell, 0 in holes (``matrix.warp_depth``); baselines ``(V,)`` metres,
    focal (px) and screen (1/m) of the matrix: the view at baseline 0 is the source. ``views``: which views
    to fill (default all). ``progress(1)`` after each frame of each view.
    """
    s = check_shape(images, "V T 3 H W", "images")
    check_same([s, check_shape(masks, "V T 1 H W", "masks"), check_shape(depth, "V T H W", "depth")], "V T H W", ["images", "masks", "depth"])
    views = tuple(range(s["V"])) if views is None else tuple(views)
    b = torch.as_tensor(baselines, dtype=torch.float64)
    zero = (b == 0).nonzero()[:, 0].tolist()
    if len(b) != s["V"] or not zero:
        raise ValueError(f"baselines: expected {s['V']} values, one of them 0 (the source view), got {b.tolist()}")
    ref = zero[0]
    out, origin = fill_views(
        images[list(views)], masks[list(views), :, 0], depth[list(views)], source=images[ref], source_depth=depth[ref],
        baselines=b[list(views)], focal=focal, screen=screen, config=config, flow=flow, progress=progress, with_origin=True,
    )  # fmt: skip
    return FillResult(views, out, origin)


class ClassicalFiller(SinglePass):
    """``fill_views`` behind the ``Filler`` protocol (``fillers.REGISTRY["classical"]``)."""

    name = "classical"

    def __init__(self, config: FillConfig | None = None) -> None:
        self.config = FillConfig() if config is None else config
        self.context = self.config.context
        self._run = threading.local()  # the ``Carry`` of the run in this thread (``bind``): a run's chunks share one

    def params(self) -> dict:
        return {"config": asdict(self.config)}

    def bind(self, inputs: dict) -> None:
        """A run over one clip starts (``stage.FillStage``): its chunks hand their flows and first passes on (``Carry``).
        Per thread: a stage computing several runs of chunks at once (``work.Runner``'s workers) gives each its own."""
        self._run.carry = Carry()

    def fill(self, cells: Cells, core: tuple[int, int], progress: Callable[[int], None] | None = None) -> torch.Tensor:
        return fill_views(
            cells.images, cells.known, cells.depth, source=cells.source, source_depth=cells.source_depth,
            baselines=torch.tensor(cells.baselines, dtype=torch.float64), focal=cells.focal, screen=cells.screen,
            core=slice(core[0] - cells.first, core[1] - cells.first), config=self.config,
            progress=scaled(progress, len(cells.views) * (core[1] - core[0]), core[1] - core[0]), carry=getattr(self._run, "carry", None), first=cells.first,
        )  # fmt: skip
