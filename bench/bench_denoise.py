"""Benchmark: frame-matrix denoising, batched columns/rows against one UNet call per column or row.

    python bench/bench_denoise.py --device cuda                 # H100: full-size zeroscope, 8 views x 16 frames
    python bench/bench_denoise.py --device cuda --steps 10      # shorter run, extrapolated to the 50-step schedule
    python bench/bench_denoise.py --device cpu --tiny --views 3 --frames 4 --width 96 --height 64 --steps 4

The model is zeroscope_v2_576w's architecture with random weights (its UNet3D config, SD 1.x's VAE,
OpenCLIP-H's text tower), so no download is needed; ``--tiny`` swaps in the tests' tiny models. The
frame matrix is warped from the synthetic scene renderer (``svg3d.scene``), so the holes are real
disocclusions. The variants run in the same process on the same input, with the same seed:

- ``batched``: ``DenoiseConfig.max_unet_frames`` (default 256: a whole 8 x 16 pass per call);
- ``per-column``: ``max_unet_frames=1``, one column or row per UNet call (the CFG pair still batched);
- ``compiled`` (``--compile``): ``batched`` after ``svg3d.models.compile_zeroscope``; its 2-step warm-up
  includes the compilation (run it twice with one ``TORCHINDUCTOR_CACHE_DIR`` for the cached cost).

Reported per variant: seconds per clip, UNet frame-evaluations per second (CFG pair counted twice),
peak GPU memory, UNet calls; then the ratios and the largest output difference between the two.
``--steps N`` < 50 runs an N-step schedule and extrapolates to the default 50 steps from the measured
cost of each kind of step (t > frame_matrix_end, t <= frame_matrix_end, the last step, and setup +
final decode); the report says which numbers are measured and which are extrapolated.
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

from svg3d import camera, scene  # noqa: E402
from svg3d.denoise import DenoiseConfig, denoise_frame_matrix  # noqa: E402
from svg3d.matrix import MatrixInfo, build_frame_matrix  # noqa: E402
from svg3d.models import compile_zeroscope  # noqa: E402
from svg3d.tiny_models import build_random_zeroscope  # noqa: E402


def synthetic_matrix(views: int, frames: int, height: int, width: int):
    """A frame matrix warped from the scene renderer (left2right, 7 cm baseline)."""
    s = scene.make_scene(0, num_frames=frames, height=height, width=width)
    rgb, z = scene.render(s)
    baselines = camera.view_baselines(views, camera.DEFAULT_BASELINE, "left2right")
    info = MatrixInfo(views, frames, height, width, tuple(baselines), camera.DEFAULT_BASELINE, "left2right", s.focal)
    return build_frame_matrix(rgb, z, info)


def run(model, fm, config: DenoiseConfig, device: torch.device) -> dict:
    """One clip, timed step by step (synchronised); returns timings, work, memory and outputs."""

    def sync() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    marks: list[float] = []
    snapshots: list[torch.Tensor] = []

    def callback(i: int, t: int, z: torch.Tensor) -> None:
        marks.append(sync())
        snapshots.append(z.cpu())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = sync()
    result = denoise_frame_matrix(model, fm.images, fm.masks, "a synthetic scene", config, callback=callback)
    end = sync()
    return dict(
        seconds=end - start,
        first=marks[0] - start,  # setup (masks, VAE encode, prompt) + step 0
        steps=[b - a for a, b in zip(marks[:-1], marks[1:], strict=True)],  # steps 1 .. N-1
        tail=end - marks[-1],  # decoding the output views
        stats=result.stats,
        peak_gib=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan"),
        latents=result.latents.cpu(),
        videos={v: x.cpu() for v, x in result.videos.items()},
        snapshots=snapshots,
    )


def step_kinds(config: DenoiseConfig, scheduler) -> list[str]:
    """Each step of ``config``'s schedule as "high" (t > E), "low" (t <= E) or "last" (no resampling)."""
    scheduler.set_timesteps(config.num_inference_steps)
    ts = [int(t) for t in scheduler.timesteps]
    return [
        "last" if i == len(ts) - 1 else ("high" if t > config.frame_matrix_end else "low") for i, t in enumerate(ts)
    ]


def extrapolate(r: dict, measured: DenoiseConfig, full: DenoiseConfig, scheduler) -> tuple[float, int]:
    """Seconds and UNet frame-evaluations of ``full``'s schedule from a run of ``measured``'s.

    A step's cost depends on its kind only (``step_kinds``). Setup + step 0 and the final decode are
    taken as measured; every other step of the full schedule costs the mean of its kind in the run.
    """
    kinds = step_kinds(measured, scheduler)
    seconds, frames = r["first"] + r["tail"], r["stats"].frames_per_step[0]
    full_kinds = step_kinds(full, scheduler)[1:]
    for kind in set(full_kinds):
        n = full_kinds.count(kind)
        steps = [i for i in range(1, len(kinds)) if kinds[i] == kind]
        seconds += n * statistics.mean(r["steps"][i - 1] for i in steps)
        frames += n * round(statistics.mean(r["stats"].frames_per_step[i] for i in steps))
    return seconds, frames


def add_matrix_args(p: argparse.ArgumentParser) -> None:
    """The flags every stage-4 benchmark shares: device, model size, and the frame matrix's shape."""
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="the tests' tiny models instead of the full-size architecture")
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--width", type=int, default=576)
    p.add_argument("--height", type=int, default=320)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_matrix_args(p)
    p.add_argument("--steps", type=int, default=50, help="DDPM steps to run; < 50 extrapolates to the 50-step schedule")
    p.add_argument(
        "--max_unet_frames", type=int, default=DenoiseConfig.max_unet_frames, help="the batched variant's budget"
    )
    p.add_argument("--skip_per_column", action="store_true", help="time the batched variant only")
    p.add_argument("--cudnn_benchmark", action="store_true", help="let cuDNN time its kernels per shape first")
    p.add_argument(
        "--compile", action="store_true", help="also time the batched variant compiled (compile_zeroscope)"
    )
    p.add_argument("--json", default=None, help="also write the report here")
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if device.type == "cpu":
        # As svg.py on a CPU: extreme early x0 decode into subnormal floats, ~100x slower on x86 (seen:
        # 28 s vs 0.25 s per step with the tiny models), which would make CPU timings meaningless.
        torch.set_flush_denormal(True)

    t0 = time.perf_counter()
    model = build_random_zeroscope(device, dtype, tiny=args.tiny)
    fm = synthetic_matrix(args.views, args.frames, args.height, args.width)
    known = fm.masks.float().mean(dim=(1, 2, 3, 4)).tolist()
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), {dtype}, "
        f"{'tiny' if args.tiny else 'full-size'} random zeroscope built in {time.perf_counter() - t0:.1f} s"
    )
    print(
        f"matrix {args.views} views x {args.frames} frames at {args.width}x{args.height}; known share per view "
        + " ".join(f"{k:.2f}" for k in known)
    )

    full = DenoiseConfig(max_unet_frames=args.max_unet_frames)
    measured = replace(full, num_inference_steps=args.steps)
    missing = set(step_kinds(full, model.scheduler)[1:]) - set(step_kinds(measured, model.scheduler)[1:])
    if args.steps != full.num_inference_steps and missing:
        raise SystemExit(f"--steps {args.steps}: no {sorted(missing)} step after the first to extrapolate from")
    warm = replace(full, num_inference_steps=2)  # one t > E step with every call shape, then the last step
    variants = {"batched": lambda c: c}
    if not args.skip_per_column:
        variants["per-column"] = lambda c: replace(c, max_unet_frames=1)
    if args.compile:  # last: the blocks are compiled in place once the eager variants have run
        variants["compiled"] = lambda c: c
    report: dict = dict(
        device=str(device),
        dtype=str(dtype),
        tiny=args.tiny,
        views=args.views,
        frames=args.frames,
        width=args.width,
        height=args.height,
        steps_run=args.steps,
        variants={},
    )
    results = {}
    for name, variant in variants.items():
        if name == "compiled":
            compile_zeroscope(model)
        start = time.perf_counter()
        run(model, fm, variant(warm), device)  # warm-up: CUDA context, cuDNN/SDPA kernel choice, allocator
        warm_s = time.perf_counter() - start
        r = results[name] = run(model, fm, variant(measured), device)
        entry = dict(
            finite=bool(r["latents"].isfinite().all()),
            measured_seconds=r["seconds"],
            measured_frame_evals=r["stats"].unet_frames,
            unet_calls=r["stats"].unet_calls,
            peak_gib=r["peak_gib"],
            warm_up_seconds=warm_s,
        )
        if args.steps == full.num_inference_steps:
            entry.update(clip_seconds=r["seconds"], frame_evals=r["stats"].unet_frames, extrapolated=False)
        else:
            seconds, frames = extrapolate(r, measured, full, model.scheduler)
            entry.update(clip_seconds=seconds, frame_evals=frames, extrapolated=True)
        entry["frame_evals_per_s"] = entry["frame_evals"] / entry["clip_seconds"]
        report["variants"][name] = entry
        tag = "extrapolated to 50 steps" if entry["extrapolated"] else "measured"
        print(
            f"{name:>10}: {entry['clip_seconds']:8.1f} s/clip ({tag}; {args.steps} steps ran in {r['seconds']:.1f} s), "
            f"{entry['frame_evals']} frame-evals, {entry['frame_evals_per_s']:7.1f} frame-evals/s, "
            f"{r['stats'].unet_calls} UNet calls, peak {r['peak_gib']:.2f} GiB, finite {entry['finite']}; "
            f"2-step warm-up {warm_s:.1f} s"
        )

    pairs = [("batched", "per-column"), ("compiled", "per-column"), ("compiled", "batched")]
    for fast, slow in [(a, b) for a, b in pairs if a in results and b in results]:
        a, b = results[fast], results[slow]
        ra, rb = report["variants"][fast], report["variants"][slow]
        scale = b["latents"].abs().max().item()
        step_diff = [(x - y).abs().max().item() for x, y in zip(a["snapshots"], b["snapshots"], strict=True)]
        c = report.setdefault("comparison", {})[f"{fast} vs {slow}"] = dict(
            speedup=rb["clip_seconds"] / ra["clip_seconds"],
            peak_ratio=ra["peak_gib"] / rb["peak_gib"] if device.type == "cuda" else float("nan"),
            max_abs_latent_diff=(a["latents"] - b["latents"]).abs().max().item(),
            latent_scale=scale,
            max_abs_latent_diff_per_step=step_diff,
            max_abs_pixel_diff_255=max((a["videos"][v] - b["videos"][v]).abs().max().item() for v in a["videos"]) * 255,
            finite=bool(a["latents"].isfinite().all() and b["latents"].isfinite().all()),
        )
        print(
            f"{fast} vs {slow}: {c['speedup']:.2f}x faster, peak memory x{c['peak_ratio']:.2f}; "
            f"max |latent diff| {c['max_abs_latent_diff']:.3g} (latents up to {scale:.3g}; after step 1: "
            f"{step_diff[0]:.3g}), max |pixel diff| {c['max_abs_pixel_diff_255']:.2f}/255, finite {c['finite']}"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
