"""Benchmark: one full-size zeroscope UNet call and one VAE round trip, under execution options.

    python bench/bench_unet_call.py --device cuda

Where the time of a denoising step goes (UNet vs VAE re-injection) and what the cheap execution
options buy: cuDNN autotuning and torch.compile (channels-last is not an option: the UNet3D has 5-D
temporal convolution weights). Times are medians of CUDA-event
timed repeats after warm-up; ratios are against the eager default measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.bench_denoise import build_model  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time torch.compile(unet)")
    p.add_argument("--profile", action="store_true", help="print the CUDA kernels that take the most time in one UNet call")
    args = p.parse_args()
    device = torch.device(args.device)
    model = build_model(device, torch.float16, tiny=False)
    gen = torch.Generator(device).manual_seed(0)
    # a temporal pass at t > frame_matrix_end: all views as columns, the CFG pair doubled
    x = torch.randn(2 * args.views, 4, args.frames, 40, 72, device=device, dtype=torch.float16, generator=gen)
    hidden = torch.randn(2 * args.views, 77, 1024, device=device, dtype=torch.float16, generator=gen)
    t = torch.tensor(500, device=device)
    frames = torch.rand(args.frames, 3, 320, 576, device=device, dtype=torch.float16, generator=gen) * 2 - 1
    evals = 2 * args.views * args.frames

    @torch.no_grad()
    def unet() -> None:
        model.unet(x, t, encoder_hidden_states=hidden)

    @torch.no_grad()
    def vae_round_trip() -> None:
        lat = model.vae.encode(frames).latent_dist.sample()
        model.vae.decode(lat)

    print(f"{torch.cuda.get_device_name(device)}: UNet call on {tuple(x.shape)} fp16 = {evals} frame-evaluations")
    base = median_ms(unet, args.repeats)

    def row(name: str, ms: float) -> None:
        rate = evals / (ms / 1000)
        print(f"  {name:58s} {ms:8.1f} ms  {rate:7.0f} frame-evals/s  {rate * 0.89:5.0f} TFLOP/s  x{base / ms:.2f}")

    row("eager (default)", base)
    vae = median_ms(vae_round_trip, args.repeats)
    torch.backends.cudnn.benchmark = True
    row("cudnn.benchmark", median_ms(unet, args.repeats))
    vae_tuned = median_ms(vae_round_trip, args.repeats)
    model.vae.to(memory_format=torch.channels_last)
    frames = frames.contiguous(memory_format=torch.channels_last)
    vae_nhwc = median_ms(vae_round_trip, args.repeats)
    print(
        f"  VAE encode + decode of {args.frames} frames at 576x320: {vae:.1f} ms eager, {vae_tuned:.1f} ms with "
        f"cudnn.benchmark, {vae_nhwc:.1f} ms with channels_last too"
    )
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            unet()
            torch.cuda.synchronize()
        averages = prof.key_averages()
        try:
            print(averages.table(sort_by="self_device_time_total", row_limit=18, max_name_column_width=70))
        except (AttributeError, KeyError, ValueError):  # older torch names it after CUDA
            print(averages.table(sort_by="self_cuda_time_total", row_limit=18, max_name_column_width=70))
    if args.compile:
        compiled = torch.compile(model.unet)
        start = time.perf_counter()
        with torch.no_grad():
            compiled(x, t, encoder_hidden_states=hidden)
        torch.cuda.synchronize()
        compile_s = time.perf_counter() - start

        @torch.no_grad()
        def unet_compiled() -> None:
            compiled(x, t, encoder_hidden_states=hidden)

        row(f"cudnn.benchmark + torch.compile ({compile_s:.0f} s to compile)", median_ms(unet_compiled, args.repeats))


if __name__ == "__main__":
    main()
