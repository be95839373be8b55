"""Benchmark: the layers ``svg3d.unet3d`` can run more than one way, at zeroscope's shapes, against diffusers' layout.

    python bench/bench_unet_layers.py --device cuda                  # fp16, batch*frames 14*16 at 40x72 (level 0)
    python bench/bench_unet_layers.py --device cpu --batch 2 --repeats 3

For each UNet level's channel count and latent size (576x320 latents are 40x72, then 20x36, 10x18, 5x9):

- the temporal convolution (Conv3d 3x1x1 over frames) of a channels-last ``(B*F, H, W, C)`` activation, every
  ``unet3d.TEMPORAL_CONV`` variant, against diffusers' way: permute to ``(B, C, F, H, W)``, ``contiguous``, Conv3d,
  permute back, ``contiguous``, starting from NCHW ``(B*F, C, H, W)``;
- GroupNorm + SiLU over the clip (the temporal layers' norm): ``unet3d.group_norm`` on NHWC, each
  ``unet3d.GROUP_NORM`` implementation, against torch's GroupNorm on the 5-D NCDHW tensor (diffusers).

Times are medians of ``--repeats`` calls after two warm-up calls (synchronised on CUDA); every variant's output is
checked against the reference (largest difference relative to its largest magnitude). Prints one JSON report;
``--json PATH`` also writes it there (with the command line).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from svg3d import unet3d  # noqa: E402

LEVELS = ((320, 40, 72), (640, 20, 36), (1280, 10, 18), (1280, 5, 9))  # zeroscope at 576x320: channels, h, w


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after two warm-up calls."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def level_report(c: int, h: int, w: int, b: int, f: int, device: torch.device, dtype, repeats: int) -> dict:
    """Timings of every variant at one level: ``c`` channels, ``h`` x ``w`` latents, ``b`` clips of ``f`` frames."""
    conv = torch.nn.Conv3d(c, c, (3, 1, 1), padding=(1, 0, 0)).to(device, dtype)
    norm = torch.nn.GroupNorm(32, c).to(device, dtype)
    x_nhwc = torch.randn(b * f, h, w, c, device=device, dtype=dtype)
    x_nchw = x_nhwc.permute(0, 3, 1, 2).contiguous()
    weight = conv.weight.detach().contiguous(memory_format=torch.channels_last_3d)
    entry: dict = dict(channels=c, h=h, w=w, temporal_conv={}, group_norm_silu={})

    def diffusers_conv():  # diffusers' TemporalConvLayer: permute to B C F H W, conv, permute back
        y = conv(x_nchw.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4))
        return y.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)

    ref = diffusers_conv().permute(0, 2, 3, 1)
    entry["temporal_conv"]["diffusers NCHW"] = dict(ms=1000 * timed(diffusers_conv, repeats, device))
    for variant in unet3d.TEMPORAL_CONV:

        def ours(variant=variant):
            return unet3d.temporal_conv(x_nhwc, weight, conv.bias, f, variant)

        entry["temporal_conv"][variant] = dict(ms=1000 * timed(ours, repeats, device), rel_diff=rel(ours(), ref))

    def diffusers_norm():
        return F.silu(norm(x_nchw.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)))

    ref = diffusers_norm().permute(0, 2, 3, 4, 1).reshape(b * f, h, w, c)
    entry["group_norm_silu"]["diffusers NCDHW"] = dict(ms=1000 * timed(diffusers_norm, repeats, device))
    for impl in unet3d.GROUP_NORM:

        def ours_norm(impl=impl):
            return unet3d.group_norm(x_nhwc, 32, norm.weight, norm.bias, norm.eps, frames=f, silu=True, impl=impl)

        entry["group_norm_silu"][f"ours NHWC, {impl}"] = dict(
            ms=1000 * timed(ours_norm, repeats, device), rel_diff=rel(ours_norm(), ref)
        )
    return entry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=14, help="clips per call (14: 7 views, CFG doubled)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--levels", type=int, default=len(LEVELS), help="time the first N levels only")
    p.add_argument("--json", default=None, help="also write the report here")
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    report: dict = dict(
        command=" ".join(sys.argv),
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        threads=torch.get_num_threads(),
        dtype=str(dtype),
        torch=torch.__version__,
        batch=args.batch,
        frames=args.frames,
        levels=[],
    )
    with torch.no_grad():
        for c, h, w in LEVELS[: args.levels]:
            entry = level_report(c, h, w, args.batch, args.frames, device, dtype, args.repeats)
            report["levels"].append(entry)
            print(json.dumps(entry), file=sys.stderr)
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
