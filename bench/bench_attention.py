"""Benchmark: the UNet's temporal attention, SDPA against ``svg3d.attention``'s kernel at each tile size (issue 22).

    python bench/bench_attention.py --device cuda --json bench/results/attention_cuda.json
    TRITON_INTERPRET=1 python bench/bench_attention.py --device cpu --small   # a smoke run of the kernel on a CPU

The shapes are zeroscope's temporal attentions at 576x320 in the default schedule's passes (``SHAPES``: a temporal
pass over 7 views with its CFG pair, 14 clips of 16 frames; a pass along the views, 32 rows of 8; per level: 2,880,
720 and 180 pixels with 5, 10 and 20 heads of 64), fp16 on CUDA. Per shape: SDPA on the strided views (what ran
before the kernel, the transposed copy back included) and the kernel at each ``--tiles`` x ``--warps``, CUDA-event
medians of ``--repeats``; the bytes of q, k, v and the output over the time (GB/s) and the largest difference from
SDPA. The fastest setting over all shapes (the sum of their times) is reported as ``best``; the report is JSON
(``--json``), with the command.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from svg3d import attention  # noqa: E402

# name -> (clips, frames, sequences = pixels x heads, head size)
SHAPES = {
    "temporal L1": (14, 16, 2880 * 5, 64),
    "temporal L2": (14, 16, 720 * 10, 64),
    "temporal L3": (14, 16, 180 * 20, 64),
    "views L1": (32, 8, 2880 * 5, 64),
    "views L2": (32, 8, 720 * 10, 64),
}
SMALL = {"small": (2, 16, 40, 64), "small views": (3, 8, 24, 64)}


def timed_ms(fn, repeats: int, device: torch.device) -> float:
    fn()
    if device.type != "cuda":
        import time

        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start) * 1000 / repeats
    torch.cuda.synchronize(device)
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize(device)
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--small", action="store_true", help="tiny shapes (a CPU smoke run under TRITON_INTERPRET=1)")
    p.add_argument("--tiles", default="2048,4096,8192,16384", help="attention.TILE values to try")
    p.add_argument("--warps", default="2,4,8", help="attention.NUM_WARPS values to try")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    shapes = SMALL if args.small else SHAPES
    settings = [(int(t), int(w)) for t in args.tiles.split(",") for w in args.warps.split(",")]
    report: dict = dict(
        command=shlex.join([sys.executable, *sys.argv]),
        utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        torch=torch.__version__,
        dtype=str(dtype),
        defaults=dict(tile=attention.TILE, warps=attention.NUM_WARPS),
        shapes={},
    )
    totals = dict.fromkeys(settings, 0.0)
    for name, (b, f, s, d) in shapes.items():
        g = torch.Generator(device).manual_seed(0)
        qkv = torch.randn(b, f, s, 3, d, generator=g, device=device, dtype=dtype)  # as one projection's output
        q, k, v = qkv[..., 0, :], qkv[..., 1, :], qkv[..., 2, :]
        gbytes = 4 * b * f * s * d * qkv.element_size() / 1e9

        def call(impl, q=q, k=k, v=v):
            return attention.short_attention(q, k, v, impl=impl)

        ref = call("sdpa")
        row = dict(clips=b, frames=f, sequences=s, head=d, sdpa_ms=timed_ms(lambda: call("sdpa"), args.repeats, device))
        row["sdpa_gb_per_s"] = gbytes / row["sdpa_ms"] * 1000
        for tile, warps in settings:
            attention.TILE, attention.NUM_WARPS = tile, warps
            ms = timed_ms(lambda: call("triton"), args.repeats, device)
            diff = (call("triton").float() - ref.float()).abs().max().item()
            row[f"tile {tile} warps {warps}"] = dict(ms=ms, gb_per_s=gbytes / ms * 1000, max_diff_vs_sdpa=diff)
            totals[(tile, warps)] += ms
        report["shapes"][name] = row
        best = min(settings, key=lambda tw: row[f"tile {tw[0]} warps {tw[1]}"]["ms"])
        print(f"{name}: SDPA {row['sdpa_ms']:.3f} ms; kernel best tile {best[0]} warps {best[1]} "
              f"{row[f'tile {best[0]} warps {best[1]}']['ms']:.3f} ms", file=sys.stderr, flush=True)  # fmt: skip
    tile, warps = min(settings, key=totals.get)
    sdpa_total = sum(r["sdpa_ms"] for r in report["shapes"].values())
    report["best"] = dict(tile=tile, warps=warps, total_ms=totals[(tile, warps)], sdpa_total_ms=sdpa_total,
                          speedup=sdpa_total / totals[(tile, warps)])  # fmt: skip
    text = json.dumps(report, indent=1)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
