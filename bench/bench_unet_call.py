"""Benchmark: zeroscope UNet calls and VAE round trips at the schedule's shapes, every way the code can run them.

    python bench/bench_unet_call.py --device cuda                          # diffusers vs ours, eager and compiled
    python bench/bench_unet_call.py --device cuda --temporal_conv conv2d,conv3d,gemm --group_norm torch,grouped
    python bench/bench_unet_call.py --device cuda --profile                # + the kernels of one eager call each
    python bench/bench_unet_call.py --device cuda --regional --whole static   # + issue 8's compiled diffusers
    python bench/bench_unet_call.py --device cpu --tiny --repeats 3

Where the time of a denoising step goes and what each execution option buys. The UNet shapes are those of the
default stereo schedule at 8 views x 16 frames, 576x320, CFG's pair doubled: a temporal pass over the 7 views
that have holes (14, 4, 16, 40, 72), a pass along the views (32, 4, 8, 40, 72) and a temporal pass on the target
view once t <= frame_matrix_end (2, 4, 16, 40, 72). UNet variants:

- ``diffusers``: diffusers' UNet3D, eager (the baseline every ratio is against);
- ``ours[conv2d, torch]`` ...: ``svg3d.unet3d.UNet3D`` eagerly, for each ``--temporal_conv`` x ``--group_norm``;
- ``ours compiled``: ``unet3d.compile_unet`` (regional compile, whole calls replayed as CUDA graphs on a
  GPU) with the default layers; its compile time covers the three shapes;
- ``--regional``: diffusers' blocks compiled with dynamic shapes (``compile_blocks``, issue 8); ``--whole``:
  ``torch.compile`` of diffusers' whole UNet.

VAE round trip (encode + decode at 576x320, timed per 16 frames): diffusers' eager, eager channels-last, and its encoder
and decoder compiled whole (``models.compile_vae``, channels-last on or off; ``--no-vae-whole`` skips them); ours
(``svg3d.vae``) eager with ``--vae-frames`` frames per call, and compiled by regions; on a GPU each with its peak memory
above the weights (what a batch of that many frames needs). Times are medians of ``--repeats`` calls after
two warm-up calls (CUDA events on a GPU); each variant's output is compared with the baseline (largest
difference relative to the baseline's largest magnitude). Inductor's cache goes to a new empty folder unless
``--compile-cache DIR``, so compile times are cold. Prints one JSON report (progress on stderr) and writes it to
``--json PATH``, by default ``bench/results/bench_unet_call-<device>-<UTC time>.json``, with the command line.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from timing import unet_inputs  # noqa: E402 (bench/ is the script's folder on sys.path)

from svg3d import unet3d, vae  # noqa: E402
from svg3d.models import compile_blocks, compile_vae  # noqa: E402
from svg3d.tiny_models import build_random_zeroscope  # noqa: E402

SHAPES = {"temporal, 7 views": (14, 16), "views, 16 rows": (32, 8), "temporal, target": (2, 16)}
RESULTS = Path(__file__).resolve().parent / "results"


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def median_ms(fn, repeats: int, device: torch.device) -> float:
    """Median milliseconds of ``fn()`` after two warm-up calls (CUDA events on a GPU, perf_counter on a CPU)."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="the tests' tiny models (CPU smoke runs)")
    p.add_argument("--height", type=int, default=320)
    p.add_argument("--width", type=int, default=576)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--shapes", default=None, help="UNet batch x frames to time instead, e.g. 2x16,4x8 (CPU runs)")
    p.add_argument("--temporal_conv", default=unet3d.DEFAULT_TEMPORAL_CONV, help="comma-separated TEMPORAL_CONV")
    p.add_argument("--group_norm", default=unet3d.DEFAULT_GROUP_NORM["cuda"], help="comma-separated GROUP_NORM")
    p.add_argument("--no-ours-compiled", dest="ours_compiled", action="store_false", help="skip compile_unet")
    p.add_argument("--compile-scope", choices=unet3d.COMPILE_SCOPES, default=unet3d.DEFAULT_COMPILE_SCOPE,
                   help="how ours compiled compiles, with the first --group_norm (default: %(default)s)")
    p.add_argument("--regional", action="store_true", help="also diffusers' blocks compiled (issue 8)")
    p.add_argument("--whole", choices=("static", "dynamic"), default=None, help="also torch.compile(diffusers' UNet)")
    p.add_argument("--no-vae", dest="vae", action="store_false", help="skip the VAE round trips")
    p.add_argument("--no-vae-whole", dest="vae_whole", action="store_false", help="skip diffusers' VAE compiled whole")
    p.add_argument("--vae-frames", type=lambda v: [int(n) for n in v.split(",")], default=[16, 32],
                   help="frames per call of our VAE's round trips (comma-separated; default 16,32)")
    p.add_argument("--profile", action="store_true", help="print the kernels of one eager call (diffusers, ours)")
    p.add_argument("--compile-cache", default=None, help="Inductor cache folder (default: a new, empty one)")
    p.add_argument("--json", default=None, help="where to write the report (default: bench/results/...)")
    args = p.parse_args()
    if args.shapes:
        SHAPES.clear()
        SHAPES.update({s: tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")})
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    cache = Path(args.compile_cache) if args.compile_cache else Path(tempfile.mkdtemp(prefix="svg3d-compile-"))
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
    model = build_random_zeroscope(device, dtype, tiny=args.tiny)
    h, w = args.height // 8, args.width // 8
    inputs = unet_inputs(model, SHAPES, args.height, args.width, device, dtype)
    t = torch.tensor(500, device=device)
    name_ = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report: dict = dict(
        command=shlex.join([sys.executable, *sys.argv]),
        utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        device_name=name_,
        torch=torch.__version__,
        dtype=str(dtype),
        tiny=args.tiny,
        latents=[h, w],
        compile_cache=str(cache),
        unet={},
        vae={},
    )
    flops = {n: unet3d.unet_flops(model.unet.config, b, f, h, w) for n, (b, f) in SHAPES.items()}
    report["tflop_per_call"] = {n: v / 1e12 for n, v in flops.items()}
    log(f"{name_}, torch {torch.__version__}, {dtype}: latents {h}x{w}; compile cache {cache}")

    def call(unet, name):
        x, hidden = inputs[name]
        return torch.no_grad()(lambda: unet(x, t, encoder_hidden_states=hidden).sample)

    reference = {name: call(model.unet, name)().clone() for name in SHAPES}

    def record(variant: str, unet, setup_s: float | None = None) -> None:
        entry: dict = {} if setup_s is None else dict(compile_seconds=setup_s)
        for name, (batch, frames) in SHAPES.items():
            ms = median_ms(call(unet, name), args.repeats, device)
            base = report["unet"].get("diffusers", {}).get(name, {}).get("ms", ms)
            entry[name] = dict(
                ms=ms,
                frame_evals_per_s=batch * frames / ms * 1000,
                tflops=flops[name] / ms / 1e9,
                speedup_vs_diffusers=base / ms,
                rel_diff=rel(call(unet, name)(), reference[name]),
            )
        report["unet"][variant] = entry
        log(f"{variant}" + ("" if setup_s is None else f" (compile + first calls of all shapes: {setup_s:.0f} s)"))
        for name, e in entry.items():
            if isinstance(e, dict):
                log(
                    f"  {name:18s} {e['ms']:8.1f} ms {e['frame_evals_per_s']:7.0f} frame-evals/s {e['tflops']:6.1f} "
                    f"TFLOP/s  x{e['speedup_vs_diffusers']:.2f} vs diffusers  rel. diff {e['rel_diff']:.1e}"
                )

    record("diffusers", model.unet)
    ours_models = {}
    for conv in args.temporal_conv.split(","):
        for norm in args.group_norm.split(","):
            ours = unet3d.UNet3D.from_diffusers(model.unet, temporal_conv=conv, group_norm=norm)
            ours_models[(conv, norm)] = ours
            record(f"ours[{conv}, {norm}]", ours)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CUDA] if device.type == "cuda" else [ProfilerActivity.CPU]
        for label, unet in (("diffusers", model.unet), ("ours", next(iter(ours_models.values())))):
            fn = call(unet, "temporal, 7 views")
            with profile(activities=activities) as prof:
                fn()
                sync(device)
            key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
            log(f"profile of one eager call, {label}:")
            log(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=90))
    if args.ours_compiled:
        compiled_model = build_random_zeroscope(device, dtype, tiny=args.tiny)  # same seed: the same weights
        start = time.perf_counter()
        compiled = unet3d.compile_unet(compiled_model.unet, scope=args.compile_scope)
        compiled.set_group_norm(args.group_norm.split(",")[0])
        for name in SHAPES:
            call(compiled, name)()
        sync(device)
        record(f"ours compiled ({args.compile_scope})", compiled, time.perf_counter() - start)
        report["compile_cache_bytes_after_ours"] = unet3d.folder_bytes(cache)
        del compiled_model, compiled
    if args.regional:
        unet = copy.deepcopy(model.unet)
        start = time.perf_counter()
        n = compile_blocks(unet)
        for name in SHAPES:
            call(unet, name)()
        sync(device)
        record(f"diffusers, regional compile of {n} blocks", unet, time.perf_counter() - start)
        del unet
    if args.whole:
        unet = torch.compile(copy.deepcopy(model.unet), dynamic=args.whole == "dynamic")
        start = time.perf_counter()
        for name in SHAPES:
            call(unet, name)()
        sync(device)
        record(f"diffusers, torch.compile(unet) {args.whole}", unet, time.perf_counter() - start)
        del unet

    if args.vae:
        gen = torch.Generator(device).manual_seed(1)
        most = max([16, *args.vae_frames])
        frames = torch.rand(most, 3, args.height, args.width, device=device, dtype=dtype, generator=gen) * 2 - 1

        def round_trip(vae, x):  # diffusers' AutoencoderKL
            @torch.no_grad()
            def fn():
                return vae.decode(vae.encode(x).latent_dist.mean).sample

            return fn

        def ours_round_trip(ours, x):  # svg3d.vae.VAE
            @torch.no_grad()
            def fn():
                return ours.decode(ours.encode(x)[0])

            return fn

        vae_ref = round_trip(model.vae, frames[:16])().clone()
        variants = {"eager": (model.vae, False, False), "eager channels-last": (None, True, False)}
        if args.vae_whole:
            variants.update({"compiled whole": (None, False, True), "compiled whole, channels-last": (None, True, True)})
        labels = [*variants, *(f"ours, {n} frames per call" for n in args.vae_frames), "ours compiled by regions"]
        for label in labels:
            n = int(label.split()[1]) if "frames per call" in label else 16
            x, setup = frames[:n], None
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            if label.startswith("ours"):
                ours = vae.VAE.from_diffusers(copy.deepcopy(model.vae))  # channels-last weights: on a copy
                if "compiled" in label:
                    start = time.perf_counter()
                    ours.compile()
                    ours_round_trip(ours, x)()
                    sync(device)
                    setup = time.perf_counter() - start
                fn = ours_round_trip(ours, x)
            else:
                vae_, channels_last, compiled = variants[label]
                vae_ = vae_ or copy.deepcopy(model.vae)
                if compiled:
                    start = time.perf_counter()
                    compile_vae(vae_, channels_last=channels_last)
                elif channels_last:
                    vae_ = vae_.to(memory_format=torch.channels_last)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                if compiled:
                    round_trip(vae_, x)()
                    sync(device)
                    setup = time.perf_counter() - start
                fn = round_trip(vae_, x)
            ms = median_ms(fn, args.repeats, device) * 16 / n  # per 16 frames
            e = report["vae"][label] = dict(ms=ms, frames_per_call=n, rel_diff=rel(fn()[:16], vae_ref), compile_seconds=setup)
            if device.type == "cuda":  # the call's own memory: the peak above what was allocated before (weights)
                e["peak_gib_above_weights"] = (torch.cuda.max_memory_allocated(device) - base) / 2**30
            e["speedup_vs_eager"] = report["vae"]["eager"]["ms"] / ms
            log(
                f"VAE encode + decode per 16 frames, {label}: {ms:.1f} ms (x{e['speedup_vs_eager']:.2f}), "
                f"rel. diff {e['rel_diff']:.1e}" + (f", peak {e['peak_gib_above_weights']:.2f} GiB" if "peak_gib_above_weights" in e else "")
            )
            del fn
    path = (
        Path(args.json)
        if args.json
        else RESULTS / f"bench_unet_call-{name_.replace(' ', '_')}-{report['utc'].replace(':', '')}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
