"""Dense optical flow behind one interface: RAFT (torchvision) and OpenCV DIS (no weights).

Convention: ``flow = backend(src, dst)`` with ``src, dst`` float ``(N, 3, H, W)`` RGB in [0, 1] returns
float32 ``(N, 2, H, W)`` in pixels on ``src``'s device, channel 0 = x (columns), 1 = y (rows), such that
the ``src`` pixel centre ``(u, v)`` (``camera`` conventions) shows the same point as ``dst`` at
``(u + flow[0], v + flow[1])``. That is what stage 2 needs to *backward*-warp ``dst`` onto ``src``.
RAFT (``model(image1, image2)``) and ``cv2.DISOpticalFlow.calc(prev, next)`` both already follow it.
"""

from __future__ import annotations

import logging
from typing import Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .checks import InputError, check_same, check_shape
from .config import FLOW_CHOICES, RAFT_ITERATIONS
from .models import load_raft, offline, raft_cache_path

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
    ``dis``: OpenCV DIS. ``auto``: RAFT when its weights are available (the file, the torch hub
    cache, or a download when not offline), else DIS — saying so in one log line.
    """
    if name not in FLOW_CHOICES:
        raise InputError(f"--flow {name}: expected one of {', '.join(FLOW_CHOICES)}")
    if name == "dis":
        if model is not None or small or mixed_precision:
            raise InputError("--flow dis uses no network: drop --model / --small / --mixed_precision")
        return DISFlow()
    small = small or name == "raft_small"
    arch = "raft_small" if small else "raft_large"
    if model is not None:
        net = load_raft(model, device=device, small=small or None)  # a file: its keys say the size
    elif name != "auto":
        net = load_raft(arch, device=device)
    elif offline() and not raft_cache_path(arch).is_file():
        log.info("flow: %s weights are not in the torch hub cache (offline): using OpenCV DIS instead", arch)
        return DISFlow()
    else:
        try:
            net = load_raft(arch, device=device)
        except InputError as e:
            log.info("flow: using OpenCV DIS instead of RAFT (%s)", e)
            return DISFlow()
    return RaftFlow(net, iterations=iterations, mixed_precision=mixed_precision, name=model or arch)
