"""What the benchmarks share: timing a call on a device, and the zeroscope UNet's inputs at given pass shapes."""

from __future__ import annotations

import statistics
import time

import torch


def median_seconds(fn, device: torch.device, repeats: int, *, warm_up: bool = True) -> tuple[object, float]:
    """``fn()``'s last result and the median seconds of ``repeats`` calls (after one untimed call with ``warm_up``),
    each call waited for on CUDA."""
    out = fn() if warm_up else None
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def unet_inputs(model, shapes: dict[str, tuple[int, int]], height: int, width: int, device: torch.device, dtype: torch.dtype):
    """``{name: (latents (B, 4, F, height/8, width/8), text context (B, 77, dim))}`` for each ``(B, F)`` of ``shapes``,
    random from seed 0 on ``device``."""
    h, w = height // 8, width // 8
    gen = torch.Generator(device).manual_seed(0)
    dim = model.unet.config.cross_attention_dim
    return {
        name: (
            torch.randn(b, 4, f, h, w, device=device, dtype=dtype, generator=gen),
            torch.randn(b, 77, dim, device=device, dtype=dtype, generator=gen),
        )
        for name, (b, f) in shapes.items()
    }
