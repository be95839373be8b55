"""Benchmark: peak GPU memory of frame-matrix denoising with and without the memory options (issue 6).

    python bench/bench_memory.py --device cuda --steps 3       # full-size zeroscope, 8 views x 16 frames, 576x320
    python bench/bench_memory.py --device cpu --tiny --views 3 --frames 4 --width 96 --height 64 --steps 2

The model is zeroscope_v2_576w's architecture with random weights (``svg3d.tiny_models.build_random_zeroscope``); the
frame matrix is warped from the scene renderer (``bench_denoise.synthetic_matrix``). Variants, in one
process on the same input and seed, each after a 2-step warm-up:

- ``default``: ``max_unet_frames`` 256 (a whole 8 x 16 pass per UNet call), 16 frames per VAE call;
- ``unet-budget``: ``max_unet_frames`` 32 (svg.py ``--max_unet_frames 32``);
- ``vae-chunks``: 4 frames per VAE call (``--low_ram_vae 4``);
- ``offload``: the idle text encoder and VAE wait on the CPU (``--offload``);
- ``all``: the three together. Issue 6's target: peak <= 12 GiB.

Reported per variant: peak GPU memory (``torch.cuda.max_memory_allocated``, weights included), seconds per
step (the mean of steps 1 .. N-1, so setup and the final decode are excluded), and the largest latent
difference to ``default`` (the options change memory, not results: expect 0 up to kernel rounding).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.bench_denoise import add_matrix_args, run, synthetic_matrix  # noqa: E402
from svg3d.denoise import DenoiseConfig  # noqa: E402
from svg3d.tiny_models import build_random_zeroscope  # noqa: E402

TARGET_GIB = 12.0  # issue 6: a 16-frame x 8-view matrix at 576x320 with the options on


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_matrix_args(p)
    p.add_argument("--steps", type=int, default=3, help="DDPM steps per variant (>= 2: step 0 includes setup)")
    p.add_argument("--max_unet_frames", type=int, default=32, help="the budget of the unet-budget and all variants")
    p.add_argument("--low_ram_vae", type=int, default=4, help="frames per VAE call of the vae-chunks and all variants")
    p.add_argument("--json", default=None, help="also write the report here")
    args = p.parse_args()
    if args.steps < 2:
        raise SystemExit("--steps must be >= 2: time per step is measured from step 1 on")
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # as svg.py: subnormal floats are ~100x slower on x86

    t0 = time.perf_counter()
    model = build_random_zeroscope(device, dtype, tiny=args.tiny)
    fm = synthetic_matrix(args.views, args.frames, args.height, args.width)
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), {dtype}, "
        f"{'tiny' if args.tiny else 'full-size'} random zeroscope built in {time.perf_counter() - t0:.1f} s; "
        f"matrix {args.views} views x {args.frames} frames at {args.width}x{args.height}, {args.steps} steps per variant"
    )
    base = DenoiseConfig(num_inference_steps=args.steps)
    variants = {
        "default": base,
        "unet-budget": replace(base, max_unet_frames=args.max_unet_frames),
        "vae-chunks": replace(base, max_vae_frames=args.low_ram_vae),
        "offload": replace(base, offload=True),
        "all": replace(base, max_unet_frames=args.max_unet_frames, max_vae_frames=args.low_ram_vae, offload=True),
    }
    report: dict = dict(vars(args), dtype=str(dtype), target_gib=TARGET_GIB, variants={})
    reference = None
    for name, config in variants.items():
        # An offloading run starts as a loader with offload would leave the model: idle parts on the CPU.
        for module in (model.text_encoder, model.vae):
            module.to("cpu" if config.offload else device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        run(model, fm, replace(config, num_inference_steps=2), device)  # warm-up: kernels, allocator
        if device.type == "cuda":
            torch.cuda.empty_cache()
        r = run(model, fm, config, device)
        reference = r["latents"] if reference is None else reference
        entry = dict(
            peak_gib=r["peak_gib"],
            seconds_per_step=statistics.mean(r["steps"]),
            seconds=r["seconds"],
            unet_calls=r["stats"].unet_calls,
            max_abs_latent_diff_to_default=(r["latents"] - reference).abs().max().item(),
            finite=bool(r["latents"].isfinite().all()),
        )
        report["variants"][name] = entry
        print(
            f"{name:>12}: peak {entry['peak_gib']:6.2f} GiB, {entry['seconds_per_step']:7.2f} s/step, "
            f"{entry['unet_calls']:4d} UNet calls, max |latent diff to default| "
            f"{entry['max_abs_latent_diff_to_default']:.3g}, finite {entry['finite']}"
        )
    if device.type == "cuda":
        peak = report["variants"]["all"]["peak_gib"]
        print(
            f"all options: peak {peak:.2f} GiB, target <= {TARGET_GIB:g} GiB: {'met' if peak <= TARGET_GIB else 'NOT met'}"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
