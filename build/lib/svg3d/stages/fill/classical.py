"""Classical, weight-free hole filling of the frame matrix (DESIGN.md §7: a real result with no weights).

A hole in a warped view is a disocclusion: background the input camera did not see at this frame
because a nearer object covered it, or the out-of-view band at the frame edge. The filling takes its
colours from the background only, never from the occluder (``fill_views``, per view and frame):

1. Background side. Along its row, a hole pixel has a nearest known pixel on each side; the farther of
   the two is the background (the nearer one is the occluder's edge); at the frame edge, the one
   side there is. Its depth ``z_bg`` places the hidden point in the input view at
   ``x = u + f b / z_bg`` (``camera``: a view at baseline b sees column u of a point the input sees at
   u + f b / Z). ``background_depth``.
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
3. Space, from the background only. What no frame saw is filled by a pull-push pyramid (normalised
   convolution, as the Lumigraph's hole filling) from known pixels of the hole's own background
   layer: depth at least ``(1 - depth_tolerance) z_bg`` (so the occluder has zero weight at every
   scale and never bleeds in) and at most ``far_ratio z_bg`` (so a saturated sky or a zero-disparity
   region far behind does not flood every hole). ``background_fill``.
4. Border. The out-of-view band (holes with no known pixel between them and the frame edge) is
   filled by the ``border`` choice (``BORDER_CHOICES``, ``fill_border``): ``mirror`` (default: the
   row's content reflected about the band's inner edge, so texture continues instead of flat
   blocks), ``stretch`` (the edge pixel repeated along the row, smoothed over a few rows), ``float``
   (a floating window: black, straight columns at the edge, as wide as the band within the context
   frames), or ``inpaint`` (step 3). ``crop_width`` gives the columns to crop instead, for a caller
   that can change the frame size. Mirror is the default from looking at rendered real footage with a
   near object at the edge (a band of ~50 px at 576 wide): stretch streaks on texture, inpaint leaves
   the flat blocks users complained of, mirror continues the texture; inpaint's flat average scores
   1-2 dB more PSNR there (PSNR rewards blur), and where the camera moves, step 2 fills most of it.

5. Stillness. Each filled pixel averages the first passes (steps 1-4) of the ``smooth`` frames around,
   at the place the scene's motion carries its point, where that place was filled for (or shows)
   the same depth; what other frames saw outweighs spatial guesses (``guess_weight``), so a filled
   pixel stays put while its background does not move (``_consolidate``).

Chunks: the output for frame t depends only on the inputs of frames within ``FillConfig.context``
(``window + smooth``) of it, and every frame is computed on its own (never batched with other frames, so no float reduction
order changes with the chunk), so filling a clip in chunks with their context equals filling it whole.

Conventions from ``camera``: frame matrix ``images (V, T, 3, H, W)`` in [0, 1], ``known (V, T, H, W)``
bool with True = known; ``depth`` is metric Z in metres (larger = farther), 0 where unknown. CPU-only
parts: the default flow (OpenCV DIS; pass a ``flow.FlowBackend`` such as RAFT to stay on the GPU) and
``telea_fill``; everything else is torch and runs on CUDA. The previous filler (before issue 12: time
only for a static camera, then pull-push) stays as ``previous_fill`` to compare with.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ...checks import check_same, check_shape
from ...config import FillConfig
from ...flow import FlowBackend, weight_free_flow
from ..matrix import Cells
from .base import SinglePass

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


def _taps(h: int, w: int, x: torch.Tensor, y: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Flat indices and weights of the 4 bilinear taps of points ``x, y (N,)`` (pixel centres, clamped inside)."""
    x = x.nan_to_num(0.0).clamp(0, w - 1)  # a point that left to infinity samples a border pixel (and counts as outside)
    y = y.nan_to_num(0.0).clamp(0, h - 1)
    x0 = x.floor().clamp(max=max(w - 2, 0))
    y0 = y.floor().clamp(max=max(h - 2, 0))
    fx, fy = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    index = [y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1]
    weight = [(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]
    return index, weight


def _bilinear(img: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear samples ``(C, N)`` of ``img (C, H, W)`` at ``x, y (N,)`` (``camera``'s pixel centres; clamped inside)."""
    c, h, w = img.shape
    index, weight = _taps(h, w, x, y)
    flat = img.reshape(c, h * w)
    out = flat.index_select(1, index[0]) * weight[0]
    for i, wt in zip(index[1:], weight[1:], strict=True):
        out = out + flat.index_select(1, i) * wt
    return out


def _tap_range(z: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and max ``(N,)`` of ``z (H, W)`` over the 4 bilinear taps of each point: are they all one surface?"""
    _, lo, hi = _sample_with_depth(z.reshape(-1, 1), z.shape[0], z.shape[1], x, y)
    return lo, hi


def _sample_with_depth(
    flat: torch.Tensor, h: int, w: int, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear samples ``(N, C)`` of pixels ``flat (H*W, C)`` (channels last: one row per tap) whose last
    channel is depth, and the min and max ``(N,)`` of that depth over the 4 taps."""
    index, weight = _taps(h, w, x, y)
    taps = flat.index_select(0, torch.cat(index)).view(4, x.numel(), -1)  # one gather: (4 taps, N, C)
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


MOTION_SAMPLE_STRIDE = 4  # the scene's motion is fitted to the flow at every 4th pixel (of the flow's grid) each way
MOTION_TRIMS = 3  # least-squares fits on the best-fitting half of the matches (trimmed least squares) ...
MOTION_ROUNDS = 2  # ... then on the inliers of the previous fit
MOTION_EDGE = 0.05  # samples whose 4 depth taps differ by more than 5 % (depth edges) do not enter the fit


def _motion_rows(u, v, rho, us, vs, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear equations ``A p = b`` (float64, ``(2N, 11)`` and ``(2N,)``) of the plane-plus-parallax model."""
    h, w = size
    x, y = (u - 0.5 * w) / w, (v - 0.5 * h) / w  # centred, one scale for both axes
    xs, ys = (us - 0.5 * w) / w, (vs - 0.5 * h) / w
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    row_x = torch.stack([x, y, one, zero, zero, zero, -xs * x, -xs * y, rho, zero, -xs * rho], 1)
    row_y = torch.stack([zero, zero, zero, x, y, one, -ys * x, -ys * y, zero, rho, -ys * rho], 1)
    return torch.cat([row_x, row_y]), torch.cat([xs, ys])


def predict_motion(params: torch.Tensor, u: torch.Tensor, v: torch.Tensor, rho: torch.Tensor, size: tuple[int, int]):
    """Where points of frame t land in frame s under the fitted scene motion (``fit_scene_motion``).

    params: float64 ``(12,)``; u, v ``(N,)`` pixel coordinates; rho ``(N,)`` inverse depth 1/Z of each
    point at frame t. Returns u_s, v_s ``(N,)`` and w ``(N,)``, the model's Z_s / Z_t, in the dtype of
    ``u`` (float32 keeps 1e-4 px at any frame size the project handles; the fit itself is float64).
    """
    h, w = size
    p = params.tolist()  # Python floats: the coefficients enter every element's arithmetic alike
    x, y, q = (u - 0.5 * w) * (1.0 / w), (v - 0.5 * h) * (1.0 / w), rho * p[11]
    den = x * p[6] + y * p[7] + q * p[10] + 1.0
    xs = (x * p[0] + y * p[1] + q * p[8] + p[2]) / den
    ys = (x * p[3] + y * p[4] + q * p[9] + p[5]) / den
    return xs * w + 0.5 * w, ys * w + 0.5 * h, den


def fit_scene_motion(
    u: torch.Tensor, v: torch.Tensor, rho: torch.Tensor, us: torch.Tensor, vs: torch.Tensor, size: tuple[int, int], *, inlier_px: float
) -> torch.Tensor:
    """Fit the motion of the static scene between two frames to point matches, robust to moving objects.

    A pinhole camera moving rigidly maps a static point x (homogeneous pixel) at inverse depth rho to
    ``x_s ~ H x + e rho`` (plane plus parallax: H = K R^T K^-1, e = -K R^T c for a camera that turns by R
    and moves by c), exactly for any rotation and translation; H's last entry is fixed to 1 (motion
    between neighbouring frames is close to the identity). The 11 unknowns come from linear least
    squares on the multiplied-out equations: first on all matches, then ``MOTION_TRIMS`` times on the
    half that fits best (trimmed least squares: moving objects, up to half the matches, drop out even
    when they move only a few pixels), then ``MOTION_ROUNDS`` times on the matches within
    ``max(inlier_px, 3 x median)`` px. An affine inverse depth (a monocular network's) fits as well:
    its offset folds into H. u, v, us, vs, rho ``(N,)``: matches at frame t -> s (pixels) and 1/Z at t.
    Returns float64 ``(12,)``: the 11 parameters and the scale applied to rho (for ``predict_motion``).
    """
    u, v, us, vs, rho = (a.double() for a in (u, v, us, vs, rho))
    identity = torch.tensor([1.0, 0, 0, 0, 1.0, 0, 0, 0, 0, 0, 0], dtype=torch.float64, device=u.device)
    n = u.numel()
    if n < 12:  # too few matches to say anything: no motion
        return torch.cat([identity, torch.ones(1, dtype=torch.float64, device=u.device)])
    scale = 1.0 / rho.median().clamp_min(1e-12)
    a, b = _motion_rows(u, v, rho * scale, us, vs, size)
    # A small ridge pulls e (depth-dependent motion) towards 0: where depth is nearly constant, e rho and H's
    # last column explain the same motion and Z_s / Z_t (the denominator) would be anything; with the ridge
    # it stays near 1 (no dolly), and where depth varies the data outweighs it by ~1e6.
    ridge = torch.diag(torch.tensor([1e-12] * 8 + [1e-6] * 3, dtype=torch.float64, device=u.device))
    ridge_scale = 1.0

    def solve(use: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wt = torch.cat([use, use])[:, None]
        ata = (a * wt).T @ a
        atb = (a * wt).T @ b
        params = torch.cat([torch.linalg.solve(ata + ridge_scale * float(ata.diagonal().mean()) * ridge, atb), scale.reshape(1)])
        pu, pv, _ = predict_motion(params, u, v, rho, size)
        return params, ((pu - us) ** 2 + (pv - vs) ** 2).sqrt()

    params, err = solve(torch.ones(n, dtype=torch.float64, device=u.device))
    for _ in range(MOTION_TRIMS):
        half = err.kthvalue(max(12, n // 2)).values
        params, err = solve((err <= half).double())
    for _ in range(MOTION_ROUNDS):
        threshold = max(inlier_px, 3.0 * float(err.median()))
        use = (err <= threshold).double()
        if use.sum() < 12:
            break
        params, err = solve(use)
    return params


class _Flows:
    """Optical flow between neighbouring source frames at ``flow_width`` and the scene's motion fitted to it.

    Only neighbours: motion to a frame k away is chained over k steps of one frame, whose flows are
    accurate (small motion) and shared by every frame of the chunk (2 flows per frame, not 2k). Each
    pair is computed on its own (one backend call), so its result does not depend on the chunk.
    ``sample(i, j, x, y)``: flow ``(2, N)`` in full-resolution pixels from frame i to j = i +- 1 at
    full-resolution points of frame i. ``motion(i, j)``: ``fit_scene_motion``'s parameters.
    """

    def __init__(self, source: torch.Tensor, source_depth: torch.Tensor, config: FillConfig, backend: FlowBackend | None) -> None:
        n, _, h, w = source.shape
        self.h, self.w = h, w
        lw = min(w, config.flow_width)
        lh = max(8, round(h * lw / w))
        self.sx, self.sy = lw / w, lh / h  # low-resolution pixels per full-resolution pixel
        self.backend = weight_free_flow(source.device) if backend is None else backend  # on CUDA the torch flow: no copies to the CPU
        self.depth = source_depth
        self.inlier_px = max(0.5, 0.002 * w)  # DIS's typical error, ~0.25 px of its grid
        # each frame on its own, so a frame's reduced copy does not depend on the chunk
        self.small = [
            source[i : i + 1] if (lh, lw) == (h, w) else F.interpolate(source[i : i + 1], size=(lh, lw), mode="area") for i in range(n)
        ]
        self.source = source
        self._frames: dict[int, torch.Tensor] = {}
        self.flows: dict[tuple[int, int], torch.Tensor] = {}
        self.motions: dict[tuple[int, int], torch.Tensor] = {}
        # the fit's sample points: a grid on the flow's pixels, in full-resolution coordinates
        gy, gx = torch.meshgrid(
            torch.arange(0, lh, MOTION_SAMPLE_STRIDE, device=source.device, dtype=source.dtype),
            torch.arange(0, lw, MOTION_SAMPLE_STRIDE, device=source.device, dtype=source.dtype),
            indexing="ij",
        )
        self.grid = (gx.reshape(-1), gy.reshape(-1))

    def frame(self, i: int) -> torch.Tensor:
        """Frame i as ``(H*W, 4)``: colour and Z of each pixel together, channels last, for gathers at points."""
        if i not in self._frames:
            self._frames[i] = torch.cat([self.source[i], self.depth[i][None]]).reshape(4, -1).T.contiguous()
        return self._frames[i]

    def flow(self, i: int, j: int) -> torch.Tensor:
        if (i, j) not in self.flows:
            self.flows[(i, j)] = self.backend(self.small[i], self.small[j]).to(self.small[i].device, torch.float32)[0]  # (2, lh, lw)
        return self.flows[(i, j)]

    def sample(self, i: int, j: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        f = _bilinear(self.flow(i, j), (x + 0.5) * self.sx - 0.5, (y + 0.5) * self.sy - 0.5)  # (2, N) low-res pixels
        return torch.stack([f[0] / self.sx, f[1] / self.sy])

    def motion(self, i: int, j: int) -> torch.Tensor:
        if (i, j) not in self.motions:
            gx, gy = self.grid
            f = self.flow(i, j)[:, gy.long(), gx.long()]  # (2, N) low-res pixels
            u, v = (gx + 0.5) / self.sx - 0.5, (gy + 0.5) / self.sy - 0.5  # full-resolution coordinates
            us, vs = u + f[0] / self.sx, v + f[1] / self.sy
            lo, hi = _tap_range(self.depth[i], u, v)
            ok = (lo > 0) & (hi <= lo * (1 + MOTION_EDGE)) & _inside(us, vs, self.h, self.w)
            z = _bilinear(self.depth[i][None], u, v)[0]
            self.motions[(i, j)] = fit_scene_motion(u[ok], v[ok], 1.0 / z[ok], us[ok], vs[ok], (self.h, self.w), inlier_px=self.inlier_px)
        return self.motions[(i, j)]

    def forget_before(self, t: int) -> None:
        """Drop what frames before t computed (bounded memory over a long chunk)."""
        for key in [k for k in self.flows if k[0] < t]:
            del self.flows[key]
            self.motions.pop(key, None)
        for i in [i for i in self._frames if i < t]:
            del self._frames[i]


# --------------------------------------------------------------------------------------------------
# step 2: time, along flow


def temporal_fill(
    t: int,
    hole: torch.Tensor,
    depth: torch.Tensor,
    shift: float,
    offset: float,
    source: torch.Tensor,
    source_depth: torch.Tensor,
    flows: _Flows,
    config: FillConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step 2 for one view at frame ``t`` of a chunk: hole pixels seen by the source in other frames.

    hole: bool ``(H, W)``; depth: Z ``(H, W)`` of the view at t (0 in holes); shift: focal x baseline
    (px m); offset: the view's screen-plane offset, shift x screen (px: ``camera``); source ``(n, 3, H, W)``, source_depth ``(n, H, W)``: the input view's frames of the chunk.
    Returns the flat pixel indices of the filled pixels ``(M,)``, their colours ``(3, M)`` and their
    depth ``(M,)`` (the hole's background depth at frame t).

    Two motions of the hidden point are followed frame by frame, ``window`` frames each way: the
    scene's (``fit_scene_motion`` per pair of neighbours, chained with the point's depth; exact for a
    static background whatever the camera does, and needing no flow near the hole) and the flow read
    at the reference point (for a background that moves by itself). With a usable reference
    (background at the hole's depth, ``flow_margin`` away from the occluder), a motion counts at a
    frame only if the reference keeps its colour along it, and the one that keeps it better wins.
    """
    n, _, h, w = source.shape
    device = depth.device
    valid = ~hole & (depth > 0)
    left, right = _row_neighbours(valid)  # (H, W)
    z_left = torch.where(left >= 0, depth.gather(-1, left.clamp_min(0)), 0)
    z_right = torch.where(right >= 0, depth.gather(-1, right.clamp_min(0)), 0)
    z_bg_map = torch.where(valid, 0, torch.maximum(z_left, z_right))
    ys, xs = (hole & (z_bg_map > 0)).nonzero(as_tuple=True)
    empty = torch.zeros(0, dtype=torch.long, device=device)
    if ys.numel() == 0 or config.window == 0 or n == 1:
        return empty, source.new_zeros(3, 0), depth.new_zeros(0)
    flat = ys * w + xs
    z_bg = z_bg_map.reshape(-1)[flat]
    on_right = z_right.reshape(-1)[flat] >= z_left.reshape(-1)[flat]  # background side (ties: right)
    edge = torch.where(on_right, right.reshape(-1)[flat], left.reshape(-1)[flat]).to(source.dtype)  # its nearest known column
    side = torch.where(on_right, 1.0, -1.0).to(source.dtype)
    disparity = shift / z_bg - offset  # px: the hidden point sits at u + f b (1 / Z - screen) in the source
    x_hidden = xs.to(source.dtype) + disparity
    y = ys.to(source.dtype)
    keep = 1 - config.depth_tolerance

    def same_surface(lo: torch.Tensor, hi: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        return (lo >= keep * expected) & (hi * keep <= expected)

    # The reference point: on the background, flow_margin into it from the occluder's edge (or half of
    # that) where the source shows the hole's background surface there.
    x_ref = edge + disparity
    ref_ok = torch.zeros_like(hole.reshape(-1)[flat])
    for m in (config.flow_margin * w, 0.5 * config.flow_margin * w):
        x_try = edge + disparity + side * m
        lo, hi = _tap_range(source_depth[t], x_try, y)
        good = ~ref_ok & _inside(x_try, y, h, w) & same_surface(lo, hi, z_bg)
        x_ref = torch.where(good, x_try, x_ref)
        ref_ok |= good
    ref, _, _ = _sample_with_depth(flows.frame(t), h, w, x_ref, y)
    ref_colour, ref_depth = ref[:, :3], ref[:, 3].clamp_min(1e-12)  # (N, 3), (N,)

    total = torch.zeros(ys.numel(), 3, dtype=source.dtype, device=device)
    weight = torch.zeros(ys.numel(), dtype=source.dtype, device=device)
    inf = torch.full_like(z_bg, math.inf)
    static_px = 2 * flows.inlier_px  # per sqrt(frame): how far the flow and the scene's motion may drift apart
    num = ys.numel()
    for step in (1, -1):  # forward in time, then backward: a fixed order
        # scene-motion chain of the hidden points and the references together: (2N,) positions and depths
        xc, yc, zc = torch.cat([x_hidden, x_ref]), torch.cat([y, y]), torch.cat([z_bg, ref_depth])
        # flow chain: the reference followed along the flow
        xf, yf = x_ref, y
        for k in range(1, config.window + 1):
            i, s = t + step * (k - 1), t + step * k
            if not 0 <= s < n:
                break
            xc, yc, wc = predict_motion(flows.motion(i, s), xc, yc, 1.0 / zc, (h, w))
            zc = zc * wc
            f = flows.sample(i, s, xf, yf)
            xf, yf = xf + f[0], yf + f[1]
            xm, xr, ym, yr, zm = xc[:num], xc[num:], yc[:num], yc[num:], zc[:num]
            xq, yq = x_hidden + (xf - x_ref), yf  # the hidden point keeps its offset to the flow-carried reference
            # one gather for the four places: reference and hidden point under the scene's motion, then under the flow
            px, py = torch.cat([xr, xm, xf, xq]), torch.cat([yr, ym, yf, yq])
            got_s, lo4, hi4 = _sample_with_depth(flows.frame(s), h, w, px, py)
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
            ok = ok_m | ok_f
            if not ok.any():
                continue
            colour = torch.where(use_f[:, None], col_f[:, :3], col_m[:, :3])  # (N, 3)
            wt_ok = ok.to(source.dtype) * config.decay ** (k - 1)
            total = total + colour * wt_ok[:, None]
            weight = weight + wt_ok
    got = weight > 0
    return flat[got], (total[got] / weight[got, None]).T, z_bg[got]


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


def pull_push_holes(values: torch.Tensor, weights: torch.Tensor, todo: torch.Tensor) -> torch.Tensor:
    """``pull_push`` evaluated only at the pixels of ``todo``, which must have weight 0: their colours ``(C, M)``.

    values ``(C, H, W)``; weights ``(H, W)`` in [0, 1]; todo bool ``(H, W)``. A pixel of weight 0 takes
    the bilinear upsampling of the next coarser level, so the full-resolution level is never built:
    the pyramid starts at half resolution (a third of the work), and M samples finish it.
    """
    c, h, w = values.shape
    level = F.avg_pool2d(torch.cat([values * weights, weights[None]])[None], 2, ceil_mode=True)  # (1, C + 1, H/2, W/2)
    levels = [level]
    while min(levels[-1].shape[-2:]) > 1:
        levels.append(F.avg_pool2d(levels[-1], 2, ceil_mode=True))
    top = levels[-1]
    colour = top[:, :c] / top[:, c:].clamp_min(1e-12)
    for lv in reversed(levels[:-1]):
        up = F.interpolate(colour, size=lv.shape[-2:], mode="bilinear", align_corners=False)
        alpha = lv[:, c:].clamp(0, 1)
        colour = lv[:, :c] / lv[:, c:].clamp_min(1e-12) * alpha + up * (1 - alpha)
    ys, xs = todo.nonzero(as_tuple=True)
    lh, lw = colour.shape[-2:]
    # interpolate(align_corners=False)'s source coordinates, clamped as it clamps them
    sx = ((xs.to(values.dtype) + 0.5) * (lw / w) - 0.5).clamp_min(0)
    sy = ((ys.to(values.dtype) + 0.5) * (lh / h) - 0.5).clamp_min(0)
    return _bilinear(colour[0], sx, sy)


def background_fill(
    image: torch.Tensor, known: torch.Tensor, depth: torch.Tensor, todo: torch.Tensor, config: FillConfig, *, z_bg: torch.Tensor | None = None
) -> torch.Tensor:
    """Step 3 on one image: fill the ``todo`` pixels of ``image (3, H, W)`` from their background layer.

    known: bool ``(H, W)``; depth: Z ``(H, W)`` of the known pixels; todo: bool ``(H, W)`` among the
    holes. Each todo pixel's background depth is the farther of its row neighbours
    (``background_depth``); todo pixels are grouped in ``depth_layers`` bins of it, even in inverse
    depth; a bin is filled by pull-push (``pull_push_holes``) from the known pixels with depth in
    ``[(1 - depth_tolerance) z_near, far_ratio z_far]`` (the bin's nearest and farthest background):
    the occluder has zero weight at every scale, and so does what lies far behind the background.
    Todo pixels whose row has nothing known are filled from every known pixel. ``z_bg``:
    ``background_depth(depth, known)`` when already computed. Returns ``(3, H, W)``.
    """
    if not todo.any() or not known.any():
        return image
    z_bg = background_depth(depth[None], known[None])[0] if z_bg is None else z_bg
    inv = torch.where(todo & (z_bg > 0), 1.0 / z_bg.clamp_min(1e-12), 0.0)  # inverse background depth, 0 = none
    has_bg = inv > 0
    out = image
    if has_bg.any():
        lo, hi = inv[has_bg].min(), inv[has_bg].max()
        pos = (inv - lo) / (hi - lo).clamp_min(1e-12) * config.depth_layers
        layer = torch.where(has_bg, pos.floor().clamp(0, config.depth_layers - 1), -1).long()
    else:
        layer = torch.full_like(z_bg, -1, dtype=torch.long)
    for k in layer[todo].unique().tolist():
        in_layer = todo & (layer == k)
        if k >= 0:
            z_near = 1.0 / inv[in_layer].max()
            z_far = 1.0 / inv[in_layer].min()
            use = known & (depth >= (1.0 - config.depth_tolerance) * z_near) & (depth <= config.far_ratio * z_far)
            if not use.any():  # nothing of that layer is known: at least never the occluder
                use = known & (depth >= (1.0 - config.depth_tolerance) * z_near)
        else:
            use = known
        if out is image:
            out = image.clone()
        out[:, in_layer] = pull_push_holes(image, use.to(image.dtype), in_layer)
    return out


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
    band pixel copies the last known one), so texture continues into the band. ``stretch``: the row's
    last known pixel repeated, averaged over 5 rows so rows do not streak. ``float``: a floating window,
    black over the ``width`` columns at the edge (default: the widest row of the band); pixels beside
    the band in those columns are blacked too, so the window's edge is a straight line. Rows without
    any known pixel are left as they are. Returns ``(3, H, W)``.
    """
    _, h, w = image.shape
    if not band.any() and not (mode == "float" and width):
        return image
    cols = torch.arange(w, device=image.device).expand(h, w)
    left, right = _row_neighbours(~band)
    inner = left if side > 0 else right  # the band's inner edge: the nearest non-band pixel of the row
    has_edge = inner >= 0
    if mode == "float":
        width = int(band.sum(-1).max().item()) if width is None else width
        bar = (cols >= w - width) if side > 0 else (cols < width)
        return torch.where(bar[None], 0.0, image)  # pixels beside the band in those columns too (the docstring)
    if mode == "mirror":
        src = (2 * inner + 1 - cols) if side > 0 else (2 * inner - 1 - cols)
    elif mode == "stretch":
        src = inner
    else:
        raise ValueError(f"border mode must be mirror, stretch or float here, got {mode!r}")
    src = src.clamp(0, w - 1)
    values = image.gather(2, src[None].expand(3, h, w))
    if mode == "stretch":  # average the edge colour over 5 rows (box filter over the rows that have one)
        weight = has_edge.to(image.dtype)[None, :, :1]  # (1, H, 1)
        kernel = torch.ones(1, 1, 5, 1, dtype=image.dtype, device=image.device)
        num = F.conv2d((values * weight)[:, None], kernel, padding=(2, 0))[:, 0]
        den = F.conv2d(weight[None].expand(3, 1, h, 1).contiguous(), kernel, padding=(2, 0))[:, 0]
        values = num / den.clamp_min(1e-12)
    return torch.where((band & has_edge)[None], values, image)


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
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Fill the holes of V views of a chunk of frames (module docstring: background side, time, space, border).

    images: float ``(V, n, 3, H, W)`` in [0, 1], the warped frame-matrix cells of the views to fill,
    n = the core frames plus up to ``config.context`` frames of context on each side (fewer at the
    clip's ends); known: bool ``(V, n, H, W)``; depth: Z ``(V, n, H, W)`` of every cell, 0 in holes
    (``warp_depth``); source ``(n, 3, H, W)`` in [0, 1] and source_depth Z ``(n, H, W)``: the input
    view's frames; baselines ``(V,)`` metres of the views; focal in pixels; screen: inverse depth (1/m) of
    the screen plane the views were warped with (``camera``); core: the frames to return.
    flow: a ``flow.FlowBackend`` for the source's flow at ``config.flow_width`` (default OpenCV DIS,
    CPU). ``progress(1)`` after each frame of each view.

    Returns float ``(V, len(core), 3, H, W)`` in [0, 1] with known pixels unchanged, and with
    ``with_origin`` also uint8 ``(V, len(core), H, W)`` (``KNOWN``, ``FROM_TIME``, ``FROM_SPACE``,
    ``FROM_BORDER``). Frame t's output depends only on frames within ``config.context`` of it.
    """
    config = FillConfig() if config is None else config
    s = _check_views(images, known, depth, source, source_depth, baselines)
    v_count, n, h, w = s["V"], s["n"], s["H"], s["W"]
    frames = range(n)[core]
    dtype = images.dtype if images.is_floating_point() else torch.float32
    out = torch.empty(v_count, len(frames), 3, h, w, dtype=dtype, device=images.device)
    origin = torch.zeros(v_count, len(frames), h, w, dtype=torch.uint8, device=images.device)
    src = source.to(images.device, dtype)
    src_z = source_depth.to(images.device, dtype)
    shifts = (float(focal) * baselines.double()).tolist()  # px m per view, as warp.warp_views
    offsets = (float(focal) * baselines.double() * screen).tolist()  # px per view: the screen plane's shift
    flows = _Flows(src, src_z, config, flow)
    first: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # (view, frame) -> steps 1-4

    def first_pass(v: int, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if (v, t) not in first:
            first[(v, t)] = _fill_frame(images[v, t].to(dtype), known[v, t], depth[v, t].to(dtype), t, shifts[v], offsets[v], src, src_z, flows, config)
        return first[(v, t)]

    for j, t in enumerate(frames):
        flows.forget_before(t - config.context)
        for key in [key for key in first if key[1] < t - config.smooth]:
            del first[key]
        for v in range(v_count):
            k = known[v, t]
            if shifts[v] == 0 or k.all():
                out[v, j] = images[v, t].to(dtype)
            else:
                near = range(max(0, t - config.smooth), min(n, t + config.smooth + 1))
                img, o, _ = first_pass(v, t)
                img = _consolidate(v, t, {i: first_pass(v, i) for i in near}, shifts[v], offsets[v], flows, config) if config.smooth else img
                img = torch.where(k[None], images[v, t].to(dtype), img.clamp(0, 1))  # known pixels exactly as given
                if config.border == "float":  # a floating window covers known pixels too: its edge is one straight line
                    around = range(max(0, t - config.window), min(n, t + config.window + 1))
                    for side in (1, -1):  # each edge with a band (both with a screen plane)
                        width = max(int(band_width(known[v, i], side)) for i in around)
                        if width:
                            img = fill_border(img, border_band(k, side), side, "float", width=width)
                out[v, j], origin[v, j] = img, o
            if progress is not None:
                progress(1)
    return (out, origin) if with_origin else out


def _fill_frame(
    image: torch.Tensor,
    known: torch.Tensor,
    depth: torch.Tensor,
    t: int,
    shift: float,
    offset: float,
    source: torch.Tensor,
    source_depth: torch.Tensor,
    flows: _Flows,
    config: FillConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Steps 1-4 on one cell: image ``(3, H, W)``, known ``(H, W)``, depth ``(H, W)`` at frame t of a view.

    Returns the filled image ``(3, H, W)``, the origin ``(H, W)`` uint8 and the depth ``(H, W)`` of
    every pixel (known, or the background depth it was filled for).
    """
    z = torch.where(known, depth, 0)
    idx, colours, z_filled = temporal_fill(t, ~known, z, shift, offset, source, source_depth, flows, config)
    img = image.clone()
    img.view(3, -1)[:, idx] = colours
    z = z.clone()
    z.view(-1)[idx] = z_filled
    now = known.clone()
    now.view(-1)[idx] = True
    origin = torch.zeros_like(known, dtype=torch.uint8)
    origin.view(-1)[idx] = FROM_TIME
    # the row neighbours of what is known now (with a depth: a matrix built elsewhere may disagree with the
    # warped depth on a few splats), once for the band, step 3's background depth and the result's depth
    valid = now & (z > 0)
    left, right = _row_neighbours(valid)
    z_left = torch.where(left >= 0, z.gather(-1, left.clamp_min(0)), 0)
    z_right = torch.where(right >= 0, z.gather(-1, right.clamp_min(0)), 0)
    z_bg = torch.where(valid, 0, torch.maximum(z_left, z_right))  # as background_depth(z, now)
    if not torch.equal(valid, now):
        left, right = _row_neighbours(now)
    # The out-of-view bands (as border_band(now, side)): at the edge content moves away from, and with a
    # screen plane also at the other edge (far content shifted the other way).
    bands = {side: ~now & ((right < 0) if side > 0 else (left < 0)) for side in (1, -1)}
    if config.border not in ("mirror", "stretch"):
        bands = {}
    band = bands[1] | bands[-1] if bands else torch.zeros_like(now)
    interior = ~now & ~band
    img = background_fill(img, now, z, interior, config, z_bg=z_bg)
    origin[interior] = FROM_SPACE
    for side, b in bands.items():
        if b.any():
            img = fill_border(img, b, side, config.border)
            origin[b] = FROM_BORDER
    return img.clamp(0, 1), origin, torch.where(now, z, z_bg)  # filled pixels: the depth they were filled for


def _consolidate(
    v: int,
    t: int,
    cells: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    shift: float,
    offset: float,
    flows: _Flows,
    config: FillConfig,
) -> torch.Tensor:
    """Step 5: hold filled pixels still. Each filled pixel of frame t averages the first passes of the frames
    within ``smooth`` of it, at the place the scene's motion carries its point (at the depth it was
    filled for), where that place is filled for (or shows) the same depth: a filled pixel stays put
    while its background does not move. Pixels filled from time (or seen there) weigh 1, guesses of
    steps 3-4 ``guess_weight``, a frame k away ``smooth_decay^k`` of that.
    Returns the image ``(3, H, W)`` of frame t (known pixels to be restored by the caller).
    """
    img, origin, z = cells[t]
    _, h, w = img.shape
    ys, xs = ((origin > 0) & (z > 0)).nonzero(as_tuple=True)  # a pixel filled for no depth (a row with none) stays as it is
    if ys.numel() == 0:
        return img
    flat = ys * w + xs
    keep = 1 - config.depth_tolerance
    zf = z.reshape(-1)[flat]
    own = origin.reshape(-1)[flat]
    wt = torch.where(own == FROM_TIME, 1.0, config.guess_weight).to(img.dtype)
    total = img.reshape(3, -1)[:, flat] * wt
    weight = wt.clone()
    y = ys.to(img.dtype)
    for step in (1, -1):
        xm, ym, zm = xs.to(img.dtype) + shift / zf - offset, y, zf  # the point in the source at frame t
        for k in range(1, config.smooth + 1):
            i, s = t + step * (k - 1), t + step * k
            if s not in cells:
                break
            xm, ym, wm = predict_motion(flows.motion(i, s), xm, ym, 1.0 / zm, (h, w))
            zm = zm * wm
            xv = xm - shift / zm + offset  # where the view shows it at frame s
            img_s, origin_s, z_s = cells[s]
            lo, hi = _tap_range(z_s, xv, ym)
            nearest = (ym.round().clamp(0, h - 1) * w + xv.round().clamp(0, w - 1)).long()
            o_s = origin_s.reshape(-1)[nearest]
            # a band pixel's depth is a guess (one side only): any pixel filled there counts, never a known one
            ok = _inside(xv, ym, h, w) & (((lo >= keep * zm) & (hi * keep <= zm)) | ((own == FROM_BORDER) & (o_s != KNOWN)))
            if not ok.any():
                continue
            ws = torch.where((o_s == FROM_TIME) | (o_s == KNOWN), 1.0, config.guess_weight).to(img.dtype) * ok * config.smooth_decay**k
            total = total + _bilinear(img_s, xv, ym) * ws
            weight = weight + ws
    out = img.clone()
    out.view(3, -1)[:, flat] = total / weight
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

    def params(self) -> dict:
        return {"config": asdict(self.config)}

    def fill(self, cells: Cells, core: tuple[int, int]) -> torch.Tensor:
        return fill_views(
            cells.images, cells.known, cells.depth, source=cells.source, source_depth=cells.source_depth,
            baselines=torch.tensor(cells.baselines, dtype=torch.float64), focal=cells.focal, screen=cells.screen,
            core=slice(core[0] - cells.first, core[1] - cells.first), config=self.config,
        )  # fmt: skip
