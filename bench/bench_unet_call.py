"""Benchmark: full-size zeroscope UNet calls and VAE round trips, eager against compiled.

    python bench/bench_unet_call.py --device cuda                    # eager vs regional compile
    python bench/bench_unet_call.py --device cuda --profile          # + the kernels of one eager call
    python bench/bench_unet_call.py --device cuda --whole dynamic    # + torch.compile of the whole UNet

Where the time of a denoising step goes (UNet vs VAE re-injection) and what execution options buy.
The UNet shapes are those of the default stereo schedule at 8 views x 16 frames, 576x320, CFG's pair
doubled: a temporal pass over the 7 views that have holes (14, 4, 16, 40, 72), a pass along the views
(32, 4, 8, 40, 72) and a temporal pass on the target view once t <= frame_matrix_end (2, 4, 16, 40, 72).
``--regional`` (on by default) is ``svg3d.models.compile_blocks`` with dynamic shapes: its compile time
covers all three shapes. Run it twice with the same ``TORCHINDUCTOR_CACHE_DIR`` to see the compile
time a machine pays once its cache is warm. Times are medians of CUDA-event timed repeats after
warm-up; ratios are against eager measured in the same run. Outputs of each variant are compared
with eager (largest absolute difference, relative to eager's largest magnitude).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from svg3d.models import compile_blocks  # noqa: E402
from svg3d.tiny_models import build_random_zeroscope  # noqa: E402

SHAPES = {"temporal, 7 views": (14, 16), "views, 16 rows": (32, 8), "temporal, target": (2, 16)}


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
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-regional", dest="regional", action="store_false", help="skip the regional compile")
    p.add_argument(
        "--whole", choices=("static", "dynamic"), default=None, help="also torch.compile the whole UNet (slow to compile)"
    )
    p.add_argument("--cudnn_attention", action="store_true", help="also time eager with cuDNN's SDPA backend")
    p.add_argument("--profile", action="store_true", help="print the CUDA kernels that take the most time")
    args = p.parse_args()
    device = torch.device(args.device)
    model = build_random_zeroscope(device, torch.float16, tiny=False)
    gen = torch.Generator(device).manual_seed(0)
    inputs = {}
    for name, (batch, frames) in SHAPES.items():
        x = torch.randn(batch, 4, frames, 40, 72, device=device, dtype=torch.float16, generator=gen)
        hidden = torch.randn(batch, 77, 1024, device=device, dtype=torch.float16, generator=gen)
        inputs[name] = (x, hidden)
    t = torch.tensor(500, device=device)
    frames = torch.rand(16, 3, 320, 576, device=device, dtype=torch.float16, generator=gen) * 2 - 1
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}: UNet fp16, 576x320, latents 40x72")

    def unet_fn(unet, name):
        x, hidden = inputs[name]
        return torch.no_grad()(lambda: unet(x, t, encoder_hidden_states=hidden).sample)

    def vae_fn(vae):
        @torch.no_grad()
        def run():
            return vae.decode(vae.encode(frames).latent_dist.mean).sample

        return run

    eager = {name: median_ms(unet_fn(model.unet, name), args.repeats) for name in SHAPES}
    reference = {name: unet_fn(model.unet, name)() for name in SHAPES}
    vae_eager = median_ms(vae_fn(model.vae), args.repeats)
    vae_reference = vae_fn(model.vae)()

    def report(variant: str, unet, setup_s: float | None) -> None:
        print(f"{variant}" + ("" if setup_s is None else f" (compile/first calls of all shapes: {setup_s:.0f} s)"))
        for name, (batch, frames_) in SHAPES.items():
            ms = median_ms(unet_fn(unet, name), args.repeats)
            evals = batch * frames_
            out = unet_fn(unet, name)()
            ref = reference[name]
            diff = ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()
            print(
                f"  {name:18s} {str((batch, 4, frames_, 40, 72)):22s} {ms:8.1f} ms  {evals / ms * 1000:6.0f} "
                f"frame-evals/s  {evals / ms * 1000 * 0.89:4.0f} TFLOP/s  x{eager[name] / ms:.2f} vs eager  "
                f"rel. diff {diff:.1e}"
            )

    report("eager", model.unet, None)
    if args.cudnn_attention:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
            report("eager, cuDNN attention first", model.unet, None)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        call = unet_fn(model.unet, "temporal, 7 views")
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            call()
            torch.cuda.synchronize()
        averages = prof.key_averages()
        print(averages.table(sort_by="self_device_time_total", row_limit=30, max_name_column_width=90))
    if args.regional:
        unet = copy.deepcopy(model.unet)
        vae = copy.deepcopy(model.vae)
        start = time.perf_counter()
        n_unet, n_vae = compile_blocks(unet), compile_blocks(vae)
        for name in SHAPES:
            unet_fn(unet, name)()
        torch.cuda.synchronize()
        report(f"regional compile, {n_unet} blocks", unet, time.perf_counter() - start)
        start = time.perf_counter()
        vae_fn(vae)()
        torch.cuda.synchronize()
        vae_compile_s = time.perf_counter() - start
        vae_ms = median_ms(vae_fn(vae), args.repeats)
        out = vae_fn(vae)()
        diff = ((out.float() - vae_reference.float()).abs().max() / 2).item()
        print(
            f"VAE encode + decode of 16 frames at 576x320: eager {vae_eager:.1f} ms, regional compile of "
            f"{n_vae} blocks {vae_ms:.1f} ms (x{vae_eager / vae_ms:.2f}, {vae_compile_s:.0f} s to compile), "
            f"largest pixel difference {diff * 255:.2f}/255"
        )
        del unet, vae
    else:
        print(f"VAE encode + decode of 16 frames at 576x320: eager {vae_eager:.1f} ms")
    if args.whole:
        unet = torch.compile(copy.deepcopy(model.unet), dynamic=args.whole == "dynamic")
        start = time.perf_counter()
        for name in SHAPES:
            unet_fn(unet, name)()
        torch.cuda.synchronize()
        report(f"torch.compile(unet), {args.whole} shapes", unet, time.perf_counter() - start)


if __name__ == "__main__":
    main()
