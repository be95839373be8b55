"""Dense optical flow behind one interface: RAFT (torchvision), OpenCV DIS and our own DIS in torch (no weights).

Convention: ``flow = backend(src, dst)`` with ``src, dst`` float ``(N, 3, H, W)`` RGB in [0, 1] returns
float32 ``(N, 2, H, W)`` in pixels on ``src``'s device, channel 0 = x (columns), 1 = y (rows), such that
the ``src`` pixel centre ``(u, v)`` (``camera`` conventions) shows the same point as ``dst`` at
``(u + flow[0], v + flow[1])``. That is what stage 2 needs to *backward*-warp ``dst`` onto ``src``.
RAFT (``model(image1, image2)``) and ``cv2.DISOpticalFlow.calc(prev, next)`` both already follow it.

``TorchFlow`` is OpenCV DIS's method (inverse search, densification, variational refinement) written densely in
torch, so that it runs where the frames are: on a GPU without RAFT's weights ``auto`` picks it, on a CPU OpenCV's
DIS (``weight_free_flow``).
"""

from __future__ import annotations

import logging
import math
from typing import Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .checks import InputError, check_same, check_shape
from .config import FLOW_CHOICES, RAFT_ITERATIONS, TorchFlowConfig
from .graphs import CudaGraphs
from .models import load_raft, raft_missing_reason

log = logging.getLogger(__name__)

RAFT_MULTIPLE = 8  # RAFT works at 1/8 resolution: both sides must be multiples of 8
RAFT_MIN_SIDE = 128  # torchvision's 4-level correlation pyramid needs feature maps of >= 16 = 128 / 8
# RAFT samples its correlation pyramid with grid_sample over a batch of pairs x (H/8) x (W/8) volumes; cuDNN's
# grid sampler refuses batches past 65535 (CUDNN_STATUS_NOT_SUPPORTED, seen at 1080p with 8 pairs per call on an
# H200), so a call takes at most this many feature positions: 2 pairs of 1080p, 22 of 576x320.
RAFT_MAX_POSITIONS = 65535


class FlowBackend(Protocol):
    """Anything that maps ``(src, dst)`` ``(N, 3, H, W)`` in [0, 1] to flow ``(N, 2, H, W)`` (module docstring)."""

    name: str

    def __call__(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor: ...


def _check_pair(src: torch.Tensor, dst: torch.Tensor) -> tuple[int, int, int]:
    sizes = [check_shape(src, "N 3 H W", "src"), check_shape(dst, "N 3 H W", "dst")]
    check_same(sizes, "N H W", ["src", "dst"])
    return sizes[0]["N"], sizes[0]["H"], sizes[0]["W"]


class DISFlow:
    """OpenCV's Dense Inverse Search on grey images (CPU, no weights): the offline fallback (DESIGN.md §7)."""

    name = "dis"
    pairs_apart = True  # each pair computed on its own: a batch's flows are each pair's alone, padded or not

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> None:
        # MEDIUM: the most accurate of OpenCV's three presets, still about real time at 576x320.
        self._dis = cv2.DISOpticalFlow_create(preset)

    def __call__(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        _check_pair(src, dst)
        flows = [self._dis.calc(_grey(a), _grey(b), None) for a, b in zip(src, dst, strict=True)]  # each (H, W, 2)
        flow = torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2)  # (N, H, W, 2) -> (N, 2, H, W)
        return flow.to(src.device)


def _grey(img: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` in [0, 1] -> ``uint8 (H, W)`` grey, contiguous, for OpenCV."""
    rgb = (img.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


class RaftFlow:
    """torchvision RAFT (``models.load_raft``): last of ``iterations`` refinements, as the reference.

    Inputs are padded by edge replication to multiples of 8, and to at least 128 px a side (split
    evenly between the two sides, as RAFT's ``InputPadder``), and scaled to [-1, 1] (torchvision's RAFT
    transforms); the flow is cropped back. ``mixed_precision`` runs under fp16 autocast on CUDA (the reference's ``--mixed_precision``).
    Pairs go through the network in groups of at most ``max_positions`` 1/8-resolution positions
    (``RAFT_MAX_POSITIONS``; RAFT treats every pair on its own, so the grouping changes no result).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        *,
        iterations: int = RAFT_ITERATIONS,
        mixed_precision: bool = False,
        name: str = "raft",
        max_positions: int = RAFT_MAX_POSITIONS,
    ) -> None:
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.net, self.iterations, self.mixed_precision, self.name = net, iterations, mixed_precision, name
        self.max_positions = max_positions

    @torch.inference_mode()
    def __call__(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        n, h, w = _check_pair(src, dst)
        device = next(self.net.parameters()).device
        ph = max(RAFT_MIN_SIDE, h + -h % RAFT_MULTIPLE) - h
        pw = max(RAFT_MIN_SIDE, w + -w % RAFT_MULTIPLE) - w
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)  # (left, right, top, bottom)
        x = torch.cat([src, dst]).to(device, torch.float32) * 2.0 - 1.0  # (2N, 3, H, W) in [-1, 1]
        x = F.pad(x, pad, mode="replicate")
        group = max(1, self.max_positions // ((h + ph) // RAFT_MULTIPLE * ((w + pw) // RAFT_MULTIPLE)))
        flows = []
        with torch.autocast(device.type, dtype=torch.float16, enabled=self.mixed_precision and device.type == "cuda"):
            for i in range(0, n, group):
                j = min(n, i + group)
                flows.append(self.net(x[i:j], x[n + i : n + j], num_flow_updates=self.iterations)[-1])
        flow = torch.cat(flows)  # (N, 2, H + ph, W + pw)
        flow = flow[:, :, pad[2] : pad[2] + h, pad[0] : pad[0] + w]
        return flow.float().to(src.device)


# ----------------------------------------------------------------------------------------------------------------------
# our own flow: coarse-to-fine dense inverse search + variational refinement, in torch (any device, no weights)


def _grey255(rgb: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` RGB in [0, 1] -> ``(N, 1, H, W)`` float32 grey in [0, 255] (OpenCV's RGB2GRAY weights)."""
    x = rgb.float().clamp(0, 1)  # the weights as scalars: no copy from the host (CUDA graphs record none)
    return (x[:, 0:1] * 0.299 + x[:, 1:2] * 0.587 + x[:, 2:3] * 0.114) * 255.0


def _gradient(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of ``(N, C, H, W)`` (one-sided at the borders: replicate padding), per pixel."""
    p = F.pad(img, (1, 1, 1, 1), mode="replicate")
    return 0.5 * (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]), 0.5 * (p[..., 2:, 1:-1] - p[..., :-2, 1:-1])


def _box(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over the ``size x size`` window centred on each pixel (``size`` odd), over the pixels inside the image.

    Separable: a row mean then a column mean, each over the pixels inside, is the 2-D mean over those inside."""
    r = size // 2
    x = F.avg_pool2d(x, (1, size), stride=1, padding=(0, r), count_include_pad=False)
    return F.avg_pool2d(x, (size, 1), stride=1, padding=(r, 0), count_include_pad=False)


def _warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``img (N, C, H, W)`` sampled at each pixel centre + ``flow (N, 2, H, W)`` (bilinear, edges replicated)."""
    n, _, h, w = flow.shape
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    # pixel centres -> grid_sample's [-1, 1] with align_corners=True: -1 is the centre of pixel 0
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], -1)  # (N, H, W, 2)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _pyramid(img: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``[img, img / 2, ...]``: ``levels + 1`` images ``(N, 1, h, w)``, each the one before blurred by the binomial
    ``[1, 4, 6, 4, 1] / 16`` (as ``cv2.pyrDown``: fine textures must not alias into false structure at coarse levels)
    and decimated, odd sides rounded up."""
    out = [img]
    for _ in range(levels):
        # rows, then columns (separable), as sums of shifted slices: a convolution may run in TF32 on CUDA (cuDNN's
        # default), a quarter of a grey level off, and the GPU's flow would drift from the CPU's
        p = F.pad(out[-1], (2, 2, 2, 2), mode="reflect")
        p = _binomial(_binomial(p, -1), -2)
        out.append(p[..., ::2, ::2])
    return out


def _binomial(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``[1, 4, 6, 4, 1] / 16`` along ``dim`` of ``x``, valid part only (4 shorter)."""
    n = x.shape[dim] - 4
    t = [x.narrow(dim, i, n) for i in range(5)]
    return (t[0] + 4 * t[1] + 6 * t[2] + 4 * t[3] + t[4]) / 16


def _resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, 2, h, w)`` flow bilinearly to ``size``, its vectors scaled by the size ratio."""
    h, w = flow.shape[-2:]
    out = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    return torch.cat([out[:, :1] * (size[1] / w), out[:, 1:] * (size[0] / h)], 1)


INVERT_ITERATIONS = 3  # fixed-point steps of ``invert_flow``: on bench_stabilise's scenes 0 (plain negation) left
# the truck clip's flicker 0.7 % above that of computed backward flows, 3 left it 0.1 % above, 8 no closer


def invert_flow(flow: torch.Tensor, iterations: int = INVERT_ITERATIONS) -> torch.Tensor:
    """The flow the other way: from ``flow (N, 2, H, W)`` a -> b (module convention), the flow b -> a.

    A pixel p of b comes from the point q of a with ``q + flow(q) = p``, so ``back(p) = q - p = -flow(p + back(p))``:
    solved by fixed-point steps from ``-flow(p)``, sampling ``flow`` bilinearly (edges replicated). Where b shows what
    a hides (a disocclusion) no q exists and the result is the flow of the nearest side: the callers must check
    what they sample with it (stabilisation's consistency mask does). Returns float32 ``(N, 2, H, W)``.
    """
    check_shape(flow, "N 2 H W", "flow")
    flow = flow.float()
    back = -flow
    for _ in range(iterations):
        back = -_warp(flow, back)
    return back


class TorchFlow:
    """Our own weight-free flow in torch: OpenCV DIS's method made dense, on any device (``TorchFlowConfig``).

    Coarse to fine over a binomial pyramid of grey images in [0, 255]; at each level, from the coarser level's flow:

    1. Dense inverse search (Kroeger et al. 2016, DIS §2.1): every pixel's ``patch x patch`` window gets its own
       vector by inverse-compositional Lucas-Kanade: the Hessian from the *source's* gradients, fixed over the
       iterations and damped (``hessian_eps``); ``descent_iterations`` Gauss-Newton steps on the patch's
       mean-normalised residual (DIS's ``UseMeanNormalization``: robust to brightness changes), each after a
       spatial propagation (``_propagate``: a neighbour's vector where it fits better). DIS does this on patches
       at a stride and warps each patch by its own vector; we do it at every pixel, warping each pixel by the
       mean vector of the patches that cover it (one ``grid_sample`` and box filters a step: what a GPU does well).
    2. Densification (DIS §2.2): a pixel's flow is the mean of the vectors of the patches that cover it, each
       weighted by ``1 / max(1, mean |residual|)`` of its patch (DIS weighs per pixel), so misfits count less.
    3. Variational refinement (DIS §2.3, OpenCV's ``VariationalRefinement`` less its gradient term: ``_refine``).

    The flow of ``finest_level`` (0: full size) is upsampled bilinearly. Every pair of a batch is independent;
    deterministic on a device (no atomics). The coarsest level follows OpenCV's rule.
    """

    name = "torch"

    def __init__(self, config: TorchFlowConfig | None = None) -> None:
        self.config = TorchFlowConfig() if config is None else config
        # on CUDA, the ~4,000 kernels of a call replayed from one graph per shape (``graphs``): the same results
        self._run = CudaGraphs(self._flow) if self.config.cuda_graphs else self._flow

    @torch.inference_mode()
    def __call__(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        _check_pair(src, dst)
        return self._run(src, dst)

    def _flow(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        n, h, w = src.shape[0], src.shape[-2], src.shape[-1]
        cfg = self.config
        i0, i1 = _grey255(src), _grey255(dst)  # (N, 1, H, W)
        # coarsest level as OpenCV's DIS: about 4 patches across the long side, at least one patch on the short one
        coarsest = min(
            int(math.log2(max(h, w) / (4.0 * cfg.patch_size)) + 0.5), int(math.log2(min(h, w) / cfg.patch_size))
        )
        coarsest = max(coarsest, cfg.finest_level)
        p0, p1 = _pyramid(i0, coarsest), _pyramid(i1, coarsest)
        flow = torch.zeros(n, 2, *p0[coarsest].shape[-2:], device=src.device, dtype=torch.float32)
        for level in range(coarsest, cfg.finest_level - 1, -1):
            a, b = p0[level], p1[level]
            if flow.shape[-2:] != a.shape[-2:]:
                flow = _resize_flow(flow, a.shape[-2:])
            flow = self._inverse_search(a, b, flow)
            flow = _refine(a, b, flow, cfg)
        return _resize_flow(flow, (h, w)) if flow.shape[-2:] != (h, w) else flow

    def _inverse_search(self, i0: torch.Tensor, i1: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """Steps 1 and 2 at one level: ``i0, i1 (N, 1, h, w)``, ``flow (N, 2, h, w)`` -> the densified flow."""
        k = self.config.patch_size
        gx, gy = _gradient(i0)
        gx, gy = gx - _box(gx, k), gy - _box(gy, k)  # mean-normalised template gradients
        sxx, sxy, syy = _box(gx * gx, k), _box(gx * gy, k), _box(gy * gy, k)
        sxx = sxx + self.config.hessian_eps  # a little of the identity: flat patches keep their flow
        syy = syy + self.config.hessian_eps
        det = sxx * syy - sxy * sxy
        t0 = i0 - _box(i0, k)  # mean-normalised template
        patches = flow  # (N, 2, h, w): the flow of the patch centred on each pixel
        for _ in range(self.config.descent_iterations):
            patches = _propagate(i1, t0, patches, k)
            # each pixel warped by the mean of the patches covering it: warped by its own patch's vector alone,
            # neighbouring patches drift apart in a checkerboard that the box sums below cannot see
            r = _warp(i1, _box(patches, k))
            r = r - _box(r, k) - t0  # (N, 1, h, w) mean-normalised residual
            bx, by = _box(gx * r, k), _box(gy * r, k)
            # Gauss-Newton on sum (r + g . d)^2, the source's gradient g standing in for the warped one's: d = -H^-1 b
            dx = (syy * bx - sxy * by) / det  # H^-1 b, H = [[sxx, sxy], [sxy, syy]]
            dy = (sxx * by - sxy * bx) / det
            patches = patches - torch.cat([dx, dy], 1)
        r = _warp(i1, _box(patches, k))
        err = _box((r - _box(r, k) - t0).abs(), k)  # each patch's mean residual
        weight = 1.0 / err.clamp_min(1.0)
        return _box(patches * weight, k) / _box(weight, k)


def _propagate(i1: torch.Tensor, t0: torch.Tensor, patches: torch.Tensor, k: int) -> torch.Tensor:
    """DIS's spatial propagation, made dense: each patch takes the vector of the patch ``k // 2`` px left, right,
    above or below it where that fits its template ``t0`` better (mean absolute mean-normalised residual); a
    good vector spreads ``k // 2`` px per call. i1, t0 ``(N, 1, h, w)``, patches ``(N, 2, h, w)``."""
    s = k // 2
    n, _, h, w = patches.shape
    padded = F.pad(patches, (s, s, s, s), mode="replicate")
    shifted = [padded[..., s + dy : s + dy + h, s + dx : s + dx + w] for dy, dx in ((0, s), (0, -s), (s, 0), (-s, 0))]
    candidates = torch.cat([patches, *shifted])  # (5N, 2, h, w): the patch's own vector first, then its neighbours'
    r = _warp(i1.repeat(5, 1, 1, 1), candidates)  # all five in one call: 1/5 of the kernel launches
    cost = _box((r - _box(r, k) - t0.repeat(5, 1, 1, 1)).abs(), k).view(5, n, 1, h, w)
    best = cost.argmin(0, keepdim=True)  # (1, N, 1, h, w): the first of equal costs, so ties keep the patch's own
    return candidates.view(5, n, 2, h, w).gather(0, best.expand(1, n, 2, h, w))[0]


def _neighbour_sum(x: torch.Tensor, wx: torch.Tensor, wy: torch.Tensor) -> torch.Tensor:
    """``sum_n w_n x_n`` over the 4 neighbours of each pixel: ``wx (N, 1, h, w - 1)`` weights the edge between a
    pixel and the one to its right, ``wy (N, 1, h - 1, w)`` the one below; no edge past the border."""
    out = torch.zeros_like(x)
    out[..., :, :-1] += wx * x[..., :, 1:]
    out[..., :, 1:] += wx * x[..., :, :-1]
    out[..., :-1, :] += wy * x[..., 1:, :]
    out[..., 1:, :] += wy * x[..., :-1, :]
    return out


def _refine(i0: torch.Tensor, i1: torch.Tensor, flow: torch.Tensor, cfg: TorchFlowConfig) -> torch.Tensor:
    """Step 3 at one level (``TorchFlow``): variational refinement of ``flow (N, 2, h, w)`` between ``i0, i1 (N, 1, h, w)``.

    OpenCV's ``VariationalRefinement`` without its gradient constancy term (``gamma``: on the rendered scenes it
    pulled the flow off at the checkers' edges: mean EPE 0.25 px with it, 0.21 without on bench/bench_flow.py's
    scenes at 320x180): ``delta psi((I_z + I_x du + I_y dv)^2) + alpha psi(|grad(u + du)|^2)``,
    ``psi(s^2) = sqrt(s^2 + eps^2)`` (Charbonnier), linearised around ``flow``, the derivatives averaged between
    ``i0`` and ``i1`` warped by ``flow``.
    """
    if cfg.refine_iterations == 0:
        return flow
    eps2 = 1e-3**2  # OpenCV's epsilon, squared
    w1 = _warp(i1, flow)
    ix, iy = _gradient(0.5 * (i0 + w1))
    iz = w1 - i0
    n, _, h, w = flow.shape
    du = torch.zeros_like(flow)  # (N, 2, h, w): the increment, solved for
    rows = torch.arange(h, device=flow.device).view(h, 1)
    cols = torch.arange(w, device=flow.device).view(1, w)
    red = ((rows + cols) % 2 == 0).view(1, 1, h, w)
    for _ in range(cfg.refine_iterations):
        # robust weights (fixed point: from the current increment)
        data = iz + ix * du[:, :1] + iy * du[:, 1:]
        psi_d = cfg.delta / torch.sqrt(data * data + eps2)
        ux, uy = _gradient(flow + du)  # (N, 2, h, w) each
        psi_s = cfg.alpha / torch.sqrt((ux * ux + uy * uy).sum(1, keepdim=True) + eps2)
        wx = 0.5 * (psi_s[..., :, 1:] + psi_s[..., :, :-1])  # edge weights: the mean of the two pixels'
        wy = 0.5 * (psi_s[..., 1:, :] + psi_s[..., :-1, :])
        wsum = _neighbour_sum(torch.ones_like(psi_s), wx, wy)
        a11, a12, a22 = psi_d * ix * ix, psi_d * ix * iy, psi_d * iy * iy
        # the smoothness pulls u + du towards its neighbours: sum_n w_n (u_n + du_n - u - du)
        b1 = -psi_d * ix * iz + _neighbour_sum(flow[:, :1], wx, wy) - wsum * flow[:, :1]
        b2 = -psi_d * iy * iz + _neighbour_sum(flow[:, 1:], wx, wy) - wsum * flow[:, 1:]
        for _ in range(cfg.sor_iterations):
            for colour in (red, ~red):
                nu = _neighbour_sum(du, wx, wy)  # (N, 2, h, w)
                new_u = (b1 + nu[:, :1] - a12 * du[:, 1:]) / (a11 + wsum)
                new_u = torch.where(colour, du[:, :1] + cfg.omega * (new_u - du[:, :1]), du[:, :1])
                new_v = (b2 + nu[:, 1:] - a12 * new_u) / (a22 + wsum)
                new_v = torch.where(colour, du[:, 1:] + cfg.omega * (new_v - du[:, 1:]), du[:, 1:])
                du = torch.cat([new_u, new_v], 1)
    return flow + du


def make_flow(
    name: str = "auto",
    *,
    device: torch.device,
    model: str | None = None,
    small: bool = False,
    iterations: int = RAFT_ITERATIONS,
    mixed_precision: bool = False,
) -> FlowBackend:
    """A flow backend by name (``FLOW_CHOICES``).

    ``raft``: torchvision RAFT from ``model`` (a state-dict file) when given, else torchvision's
    weights for ``raft_large`` (``raft_small`` with ``small``; ``raft_small`` = ``raft`` + ``small``).
    ``dis``: OpenCV DIS (CPU). ``torch``: ours (``TorchFlow``, on the frames' device). ``auto``: RAFT when its
    weights are available (the file, the torch hub cache, or a download when not offline), else the weight-free
    flow for ``device`` (``weight_free_flow``) — saying so in one log line.
    """
    if name not in FLOW_CHOICES:
        raise InputError(f"--flow {name}: expected one of {', '.join(FLOW_CHOICES)}")
    if name in ("dis", "torch"):
        if model is not None or small or mixed_precision:
            raise InputError(f"--flow {name} uses no network: drop --model / --small / --mixed_precision")
        return DISFlow() if name == "dis" else TorchFlow()
    small = small or name == "raft_small"
    arch = "raft_small" if small else "raft_large"
    if model is not None:
        net = load_raft(model, device=device, small=small or None)  # a file: its keys say the size
    elif name != "auto":
        net = load_raft(arch, device=device)
    else:  # an optional model: when it is missing, one short line (where to put it is --flow raft's error to say)
        why = raft_missing_reason(arch)
        if why is None:
            try:
                net = load_raft(arch, device=device)
            except InputError:
                why = "its download failed"
        if why is not None:
            fallback = weight_free_flow(device)
            log.info("flow: using %s (auto: no RAFT weights here, %s)", _describe(fallback), why)
            return fallback
    return RaftFlow(net, iterations=iterations, mixed_precision=mixed_precision, name=model or arch)


def weight_free_flow(device: torch.device) -> FlowBackend:
    """The flow without weights for ``device``: ours on CUDA (the frames stay on the GPU, no copies to the CPU and
    back), OpenCV DIS elsewhere (on a CPU ours costs ~50x DIS's time for about its accuracy: bench/results/flow.json)."""
    return TorchFlow() if torch.device(device).type == "cuda" else DISFlow()


def _describe(flow: FlowBackend) -> str:
    return "OpenCV DIS" if isinstance(flow, DISFlow) else "our torch flow (--flow torch)"
