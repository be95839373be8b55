"""Benchmark: the exact frame-matrix denoiser, diffusers' UNet against ours, eager and compiled, on 1 to 8 GPUs.

    python bench/bench_denoise.py --device cuda --steps 4 --variants diffusers,ours-torch-norm,ours,ours-4-views,ours-deep-cache
    python bench/bench_denoise.py --device cuda --steps 4 --variants ours-compiled --compile-scope blocks
    python bench/bench_denoise.py --device cuda --steps 20 --gpus 1,2,4,8 --variants ours-compiled  # scaling
    python bench/bench_denoise.py --device cuda --variants diffusers,per-column,diffusers-regional --steps 10
    python bench/bench_denoise.py --device cpu --tiny --views 3 --frames 4 --width 96 --height 64 --steps 4

The model is zeroscope_v2_576w's architecture with random weights (its UNet3D config, SD 1.x's VAE,
OpenCLIP-H's text tower; ``svg3d.tiny_models``), so no download is needed; ``--tiny`` swaps in the tests' tiny
models. The frame matrix is warped from the synthetic scene renderer (``svg3d.scene``), so the holes are real
disocclusions. The variants (``--variants``, run in ``VARIANTS``' order) run in one process on the same input and
seed; the ``ours*`` rows read as an ablation, each adding one change:

- ``diffusers``: diffusers' UNet3D and VAE, eager, ``max_unet_frames`` columns/rows per call (default 256: a whole pass);
- ``per-column``: the same with one column or row per UNet call (the CFG pair still batched);
- ``ours-torch-norm``: ``DenoiseConfig(unet="ours")``, our channels-last forward (``svg3d.unet3d``), eager, with
  torch's GroupNorm (on CUDA it copies NHWC to NCHW and back around each of the ~166 norms of a call);
- ``ours-diffusers-vae``: + the grouped GroupNorm on the NHWC data in place (``unet3d.group_norm(impl="grouped")``);
- ``ours-sdpa``: + our channels-last VAE forward (``DenoiseConfig(vae_forward="ours")``, ``svg3d.vae``; the variants
  above run diffusers' VAE and run first, before ours makes its weights channels-last in place); these three run
  the temporal attention by SDPA;
- ``ours``: + the temporal attention by ``svg3d.attention``'s Triton kernel (the default on CUDA);
- ``ours-compiled``: + compiled (``--compile-scope``: whole per shape, or its blocks with each call replayed as a
  CUDA graph) and our VAE compiled by regions (``compile_zeroscope(unet="ours")``, unless ``--no-compile-vae``);
  ``ours-compiled-sdpa`` the same with the temporal attention by SDPA (it runs second: its compile reuses the
  cache the first filled, so only the first compiled variant's compile time is cold); ``ours-compiled-cudnn-benchmark``
  the same with ``torch.backends.cudnn.benchmark`` on (cuDNN times its algorithms for each convolution shape);
- options beyond the exact schedule (off in the product; their quality needs the real weights, which this cannot
  measure): ``ours-4-views`` / ``ours-compiled-4-views``, a 4-view matrix of the same scene (``--num-views 4``;
  another matrix, so speed only); ``ours-deep-cache`` / ``ours-compiled-deep-cache``, ``DenoiseConfig(deep_cache=2)``
  (the whole UNet every other step, the outer level only in between), run for ``--option-steps`` (8: every kind
  of step, whole and shallow, measured) and compared with the first variant only in speed; its frame-evaluations
  are nominal (a shallow call counts as a whole one);
- ``diffusers-regional``: diffusers' blocks compiled with dynamic shapes (``compile_zeroscope()``, issue 8).

The compiled variants get a freshly built model (same seed, same weights). Their compile time is the 3-step
warm-up minus the same 3 steps run again once compiled: "cold" with an empty Inductor cache (a new temporary
folder unless ``--compile-cache DIR``), "warm" in a second process that reuses the folder (``--no-warm-probe``
skips it), or in this one when ``--compile-cache`` names a folder that an earlier run filled (the report's
``compile_cache_was_empty``). The cache's size is reported.

Reported per variant: seconds per clip and, of them, the VAE's (every encode and decode, timed between synchronisations,
extrapolated like the clip) and the rest (UNet calls and the loop's elementwise work), UNet frame-evaluations per second (CFG pair counted twice),
utilisation (frame-evaluations/s x FLOP per frame-evaluation, counted from the UNet config by
``unet3d.unet_flops``, against ``--peak-tflops``, default the card's dense fp16 peak from its name: H100 SXM and
H200 989, H100 PCIe 756), peak GPU memory, UNet
calls; then each variant against the first: speed-up and the largest latent and pixel differences.
``--steps N`` < 50 runs an N-step schedule and extrapolates to the default 50 steps from the measured cost of
each kind of step (t > frame_matrix_end, t <= frame_matrix_end, the last step, and setup + final decode); the
report says which numbers are measured and which are extrapolated.

``--gpus 1,2,4,8``: the first variant only, on N GPUs (N processes, ``svg3d.distributed``) for each N, with the
scaling efficiency s(1) / (N s(N)).

The report is printed as JSON on stdout (progress lines go to stderr) and written to ``--json PATH``, by default
``bench/results/bench_denoise-<device>-<UTC time>.json``, with the command line that made it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from svg3d import camera, denoise, scene, unet3d  # noqa: E402
from svg3d.denoise import LOCAL, DenoiseConfig, denoise_frame_matrix  # noqa: E402
from svg3d.models import compile_zeroscope  # noqa: E402
from svg3d.stages.matrix import MatrixInfo, build_frame_matrix  # noqa: E402
from svg3d.tiny_models import build_random_zeroscope  # noqa: E402


@dataclass(frozen=True)
class Variant:
    """How a variant runs the schedule: which UNet forward and how, and which option beyond the exact schedule."""

    unet: str = "ours"  # DenoiseConfig.unet
    vae: str = "ours"  # DenoiseConfig.vae_forward
    group_norm: str = "grouped"  # ours: unet3d.GROUP_NORM
    temporal_attention: str | None = None  # ours: attention.IMPLS (None: the device's default, the kernel on CUDA)
    compiled: bool = False  # compile_zeroscope on a fresh model (same seed, same weights)
    per_column: bool = False  # one column or row per UNet call
    views: int | None = None  # an option: a matrix of this many views instead of --views
    deep_cache: int = 1  # an option: DenoiseConfig.deep_cache
    cudnn_benchmark: bool = False  # torch.backends.cudnn.benchmark: cuDNN times its algorithms per convolution shape


# In the order they run; the names read as an ablation: each ours-* row adds one change to the row above it.
VARIANTS = {
    "diffusers": Variant(unet="diffusers", vae="diffusers"),
    "per-column": Variant(unet="diffusers", vae="diffusers", per_column=True),
    # channels-last UNet forward, torch's GroupNorm (layout copies on CUDA), diffusers' VAE
    "ours-torch-norm": Variant(group_norm="torch", vae="diffusers", temporal_attention="sdpa"),
    "ours-diffusers-vae": Variant(vae="diffusers", temporal_attention="sdpa"),  # + the grouped GroupNorm on NHWC
    "ours-sdpa": Variant(temporal_attention="sdpa"),  # + our channels-last VAE forward (svg3d.vae)
    "ours": Variant(),  # + the temporal attention by attention.short_attention's kernel
    "ours-4-views": Variant(views=4),  # option: 4 views instead of 8
    "ours-deep-cache": Variant(deep_cache=2),  # option: DeepCache, the whole UNet every other step
    "ours-compiled": Variant(compiled=True),  # + compiled (--compile-scope)
    "ours-compiled-sdpa": Variant(compiled=True, temporal_attention="sdpa"),  # compiled, temporal attention by SDPA
    # compiled, cuDNN choosing each convolution's algorithm by timing it (at the CUDA graphs' warm-up) over its heuristics
    "ours-compiled-cudnn-benchmark": Variant(compiled=True, cudnn_benchmark=True),
    "ours-compiled-4-views": Variant(compiled=True, views=4),
    "ours-compiled-deep-cache": Variant(compiled=True, deep_cache=2),
    # last: it wraps diffusers' modules in place
    "diffusers-regional": Variant(unet="diffusers", vae="diffusers", compiled=True),
}
OPTIONS = [name for name, v in VARIANTS.items() if v.views or v.deep_cache > 1]  # not the exact schedule
# Dense fp16 tensor-core peaks (datasheets: half the "with sparsity" figure), matched in the card's name in order.
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0))
RESULTS = Path(__file__).resolve().parent / "results"


def synthetic_matrix(views: int, frames: int, height: int, width: int):
    """A frame matrix warped from the scene renderer (left2right, 7 cm baseline)."""
    s = scene.make_scene(0, num_frames=frames, height=height, width=width)
    rgb, z = scene.render(s)
    baselines = camera.view_baselines(views, camera.DEFAULT_BASELINE, "left2right")
    info = MatrixInfo(views, frames, height, width, tuple(baselines), camera.DEFAULT_BASELINE, "left2right", s.focal)
    return build_frame_matrix(rgb, z, info)


def run(model, fm, config: DenoiseConfig, device: torch.device, workers=LOCAL, tag: str | None = None) -> dict:
    """One clip, timed step by step (synchronised); returns timings, work, memory and outputs. With ``tag``, logs
    each step's end (a compile cut short by a time limit still says how far it got)."""

    def sync() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    marks: list[float] = []
    snapshots: list[torch.Tensor] = []
    vae = [0.0]  # seconds in VAE calls: setup + step 0, then each later step, then the final decode

    def timed(fn):
        def call(*args, **kwargs):
            begin = sync()
            out = fn(*args, **kwargs)
            vae[-1] += sync() - begin
            return out

        return call

    def callback(i: int, t: int, z: torch.Tensor) -> None:
        vae.append(0.0)
        marks.append(sync())
        snapshots.append(z.cpu())
        if tag:
            log(f"{tag}: step {i} (t = {t}) done {marks[-1] - start:.1f} s after the start")

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = sync()
    with (
        mock.patch.object(denoise, "vae_posterior", timed(denoise.vae_posterior)),
        mock.patch.object(denoise, "decode_latents", timed(denoise.decode_latents)),
    ):
        result = denoise_frame_matrix(
            model, fm.images, fm.masks, "a synthetic scene", config, callback=callback, workers=workers
        )
    end = sync()
    return dict(
        seconds=end - start,
        first=marks[0] - start,  # setup (masks, VAE encode, prompt) + step 0
        steps=[b - a for a, b in zip(marks[:-1], marks[1:], strict=True)],  # steps 1 .. N-1
        tail=end - marks[-1],  # decoding the output views
        vae=dict(first=vae[0], steps=vae[1:-1], tail=vae[-1]),  # the VAE's seconds in the same intervals
        stats=result.stats,
        peak_gib=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan"),
        latents=result.latents.cpu(),
        videos={v: x.cpu() for v, x in result.videos.items()},
        snapshots=snapshots,
    )


def step_kinds(config: DenoiseConfig, scheduler) -> list[str]:
    """Each step of ``config``'s schedule as "high" (t > E), "low" (t <= E) or "last" (no resampling); under
    DeepCache (``deep_cache`` N > 1) suffixed "-shallow" on the steps that reuse the inner levels (i % N != 0)."""
    scheduler.set_timesteps(config.num_inference_steps)
    ts = [int(t) for t in scheduler.timesteps]
    kinds = [
        "last" if i == len(ts) - 1 else ("high" if t > config.frame_matrix_end else "low") for i, t in enumerate(ts)
    ]
    return [k + "-shallow" if i % config.deep_cache else k for i, k in enumerate(kinds)]


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
        if not steps:
            raise SystemExit(
                f"{measured.num_inference_steps} steps have no {kind!r} step after the first to extrapolate from"
            )
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


def create_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_matrix_args(p)
    p.add_argument("--steps", type=int, default=50, help="DDPM steps to run; < 50 extrapolates to the 50-step schedule")
    p.add_argument(
        "--variants",
        default="diffusers,ours-torch-norm,ours,ours-compiled",
        help=f"comma-separated, of {', '.join(VARIANTS)}",
    )
    p.add_argument(
        "--option-steps",
        type=int,
        default=8,
        help="steps the DeepCache variants run (at least this many: 8 has every kind of step)",
    )
    p.add_argument(
        "--max_unet_frames", type=int, default=DenoiseConfig.max_unet_frames, help="frames per UNet call (batched)"
    )
    p.add_argument("--gpus", default=None, help="e.g. 1,2,4,8: the first variant on that many GPUs each")
    p.add_argument(
        "--peak-tflops", type=float, default=None, help="the card's dense fp16 peak (default: from its name)"
    )
    p.add_argument("--compile-cache", default=None, help="Inductor cache folder (default: a new, empty one)")
    p.add_argument("--no-warm-probe", dest="warm_probe", action="store_false", help="skip the warm-cache compile")
    p.add_argument(
        "--compile-scope",
        choices=unet3d.COMPILE_SCOPES,
        default=unet3d.DEFAULT_COMPILE_SCOPE,
        help="how the ours-compiled variants compile (default: %(default)s, the product's)",
    )
    p.add_argument("--no-compile-vae", dest="compile_vae", action="store_false", help="compiled variants: VAE eager")
    p.add_argument("--cudnn_benchmark", action="store_true", help="let cuDNN time its kernels per shape first")
    p.add_argument("--json", default=None, help="where to write the report (default: bench/results/...)")
    p.add_argument("--probe", default=None, help=argparse.SUPPRESS)  # internal: the warm-cache compile of a variant
    return p


def setup(args: argparse.Namespace) -> tuple[torch.device, torch.dtype]:
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if device.type == "cpu":
        # As svg.py on a CPU: extreme early x0 decode into subnormal floats, ~100x slower on x86 (seen:
        # 28 s vs 0.25 s per step with the tiny models), which would make CPU timings meaningless.
        torch.set_flush_denormal(True)
    return device, torch.float16 if device.type == "cuda" else torch.float32


def variant_config(name: str, config: DenoiseConfig) -> DenoiseConfig:
    v = VARIANTS[name]
    config = replace(config, unet=v.unet, vae_forward=v.vae, deep_cache=v.deep_cache)
    return replace(config, max_unet_frames=1) if v.per_column else config


def peak_tflops(device_name: str) -> float | None:
    """The dense fp16 peak of a card from its name (``PEAK_TFLOPS``), None if unknown."""
    return next((peak for key, peak in PEAK_TFLOPS if key in device_name), None)


def prepare(name: str, args, device: torch.device, dtype: torch.dtype, shared=None):
    """The model a variant runs: the shared eager one, or a fresh one (same weights) compiled for it; our
    forward over it set to the variant's GroupNorm."""
    v = VARIANTS[name]
    if v.compiled:
        model = build_random_zeroscope(device, dtype, tiny=args.tiny)
        compile_zeroscope(model, unet=v.unet, vae=args.compile_vae, scope=args.compile_scope)
    else:
        model = shared if shared is not None else build_random_zeroscope(device, dtype, tiny=args.tiny)
    if v.unet == "ours":
        ours = unet3d.unet_for(model.unet, "ours")  # set before any compiled graph is built:
        ours.set_group_norm(v.group_norm).set_temporal_attention(v.temporal_attention)
    return model


def measure(name: str, model, fm, args, device: torch.device, workers=LOCAL) -> tuple[dict, dict]:
    """Warm-up (3 steps: t > E, t <= E, last), the measured run (``--steps``), and for compiled variants the warm-up again."""
    full = DenoiseConfig(max_unet_frames=args.max_unet_frames)
    steps = max(args.steps, args.option_steps) if VARIANTS[name].deep_cache > 1 else args.steps
    config = variant_config(name, replace(full, num_inference_steps=steps))
    warm = replace(config, num_inference_steps=3)  # a t > E step, a t <= E step, the last: every call shape
    torch.backends.cudnn.benchmark = VARIANTS[name].cudnn_benchmark  # (process-wide: set per variant)
    start = time.perf_counter()
    tag = f"{name} warm-up" + (", compiling" if VARIANTS[name].compiled else "")
    run(model, fm, warm, device, workers, tag=tag)  # CUDA context, cuDNN/SDPA choices, allocator; compilation
    warm_s = time.perf_counter() - start
    r = run(model, fm, config, device, workers)
    entry = dict(
        finite=bool(r["latents"].isfinite().all()),
        measured_seconds=r["seconds"],
        measured_frame_evals=r["stats"].unet_frames,
        unet_calls=r["stats"].unet_calls,
        peak_gib=r["peak_gib"],
        warm_up_seconds=warm_s,
        steps_run=steps,
    )
    if VARIANTS[name].deep_cache > 1:
        entry["frame_evals_are_nominal"] = True  # counted as whole-UNet evaluations; the shallow ones cost less
    if VARIANTS[name].compiled:
        entry["compile_seconds_cold"] = warm_s - run(model, fm, warm, device, workers)["seconds"]
    if steps == full.num_inference_steps:
        vae_seconds = r["vae"]["first"] + sum(r["vae"]["steps"]) + r["vae"]["tail"]
        entry.update(clip_seconds=r["seconds"], frame_evals=r["stats"].unet_frames, extrapolated=False)
    else:
        fifty = replace(config, num_inference_steps=50)
        seconds, frames = extrapolate(r, config, fifty, model.scheduler)
        vae_seconds = extrapolate({**r, **r["vae"]}, config, fifty, model.scheduler)[0]
        entry.update(clip_seconds=seconds, frame_evals=frames, extrapolated=True)
    entry.update(vae_clip_seconds=vae_seconds, rest_clip_seconds=entry["clip_seconds"] - vae_seconds)
    entry["frame_evals_per_s"] = entry["frame_evals"] / entry["clip_seconds"]
    return entry, r


def utilisation(entry: dict, flop_per_frame: float, peak: float | None) -> float | None:
    return None if peak is None else entry["frame_evals_per_s"] * flop_per_frame / (peak * 1e12)


def warm_compile_seconds(name: str, args, cache: Path) -> float | None:
    """The compile time of ``name`` in a new process whose Inductor cache is ``cache`` (filled by this one)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--probe", name, "--device", args.device]
    argv += ["--views", str(args.views), "--frames", str(args.frames), "--width", str(args.width)]
    argv += ["--height", str(args.height), "--max_unet_frames", str(args.max_unet_frames)]
    argv += (
        ["--compile-scope", args.compile_scope]
        + ["--tiny"] * args.tiny
        + ["--cudnn_benchmark"] * args.cudnn_benchmark
        + ["--no-compile-vae"] * (not args.compile_vae)
    )
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        log(f"warm-cache probe of {name} failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["compile_seconds"]


def probe(args) -> None:
    """``--probe NAME``: compile NAME with the cache the parent filled; print its compile time as JSON."""
    device, dtype = setup(args)
    fm = synthetic_matrix(VARIANTS[args.probe].views or args.views, args.frames, args.height, args.width)
    model = prepare(args.probe, args, device, dtype)
    warm = replace(
        variant_config(args.probe, DenoiseConfig(max_unet_frames=args.max_unet_frames)), num_inference_steps=3
    )
    start = time.perf_counter()
    run(model, fm, warm, device)
    first = time.perf_counter() - start
    print(json.dumps(dict(compile_seconds=first - run(model, fm, warm, device)["seconds"])))


def _bench_rank(ranks, device: torch.device, args, name: str, out: str) -> None:
    """One rank of ``--gpus N``: the variant's warm-up and measured run on this rank's share; rank 0 reports."""
    _, dtype = setup(argparse.Namespace(**{**vars(args), "device": str(device)}))
    fm = synthetic_matrix(args.views, args.frames, args.height, args.width)
    model = prepare(name, args, device, dtype)
    entry, _ = measure(name, model, fm, args, device, ranks)
    if ranks.rank == 0:
        Path(out).write_text(json.dumps(entry))


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main() -> None:
    args = create_parser().parse_args()
    if args.probe:
        return probe(args)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown or not names:
        raise SystemExit(f"--variants: unknown {unknown}; expected some of {', '.join(VARIANTS)}")
    names = [n for n in VARIANTS if n in names]  # eager ones first; regional last (it wraps modules in place)
    full = DenoiseConfig(max_unet_frames=args.max_unet_frames)
    device, dtype = setup(args)
    cache = Path(args.compile_cache) if args.compile_cache else Path(tempfile.mkdtemp(prefix="svg3d-compile-"))
    cache_was_empty = unet3d.folder_bytes(cache) == 0
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)  # compile_zeroscope keeps it (use_compile_cache)

    t0 = time.perf_counter()
    model = build_random_zeroscope(device, dtype, tiny=args.tiny)
    fm = synthetic_matrix(args.views, args.frames, args.height, args.width)
    f = model.vae_scale_factor
    lat_h, lat_w = -(-args.height // f), -(-args.width // f)
    flop_per_frame = unet3d.unet_flops(model.unet.config, 2, args.frames, lat_h, lat_w) / (2 * args.frames)
    missing = set(step_kinds(full, model.scheduler)[1:]) - set(
        step_kinds(replace(full, num_inference_steps=args.steps), model.scheduler)[1:]
    )
    if args.steps != full.num_inference_steps and missing:
        raise SystemExit(f"--steps {args.steps}: no {sorted(missing)} step after the first to extrapolate from")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or peak_tflops(device_name)
    report: dict = dict(
        command=shlex.join([sys.executable, *sys.argv]),
        utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        device=str(device),
        device_name=device_name,
        gpu_count=torch.cuda.device_count() if device.type == "cuda" else 0,
        cpu_threads=torch.get_num_threads(),
        compile_scope=args.compile_scope,
        torch=torch.__version__,
        dtype=str(dtype),
        tiny=args.tiny,
        views=args.views,
        frames=args.frames,
        width=args.width,
        height=args.height,
        steps_run=args.steps,
        max_unet_frames=args.max_unet_frames,
        flop_per_unet_frame_eval=flop_per_frame,
        peak_tflops=peak,
        compile_cache=str(cache),
        compile_cache_was_empty=cache_was_empty,
        variants={},
        complete=False,  # until every variant ran: the report is saved after each one (a run cut short keeps those)
    )
    path = (
        Path(args.json)
        if args.json
        else RESULTS / f"bench_denoise-{report['device_name'].replace(' ', '_')}-{report['utc'].replace(':', '')}.json"
    )

    def save(report: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(path)

    log(
        f"{report['device_name']}, {dtype}, {'tiny' if args.tiny else 'full-size'} random zeroscope built in "
        f"{time.perf_counter() - t0:.1f} s; {args.views} views x {args.frames} frames at {args.width}x{args.height}; "
        f"{flop_per_frame / 1e12:.3f} TFLOP per UNet frame-evaluation"
    )

    if args.gpus:
        from svg3d import distributed

        name, scaling = names[0], {}
        report["multi_gpu"] = dict(variant=name, runs=scaling)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the ranks need the memory of GPU 0
        for n in [int(g) for g in args.gpus.split(",")]:
            out = Path(tempfile.mkdtemp()) / "rank0.json"
            distributed.spawn(_bench_rank, n, (args, name, str(out)), device_type=device.type)
            entry = json.loads(out.read_text())
            entry["utilisation"] = (
                utilisation(entry, flop_per_frame, peak) and utilisation(entry, flop_per_frame, peak) / n
            )
            scaling[str(n)] = entry
            entry["scaling_efficiency"] = (
                scaling["1"]["clip_seconds"] / (n * entry["clip_seconds"]) if "1" in scaling else None
            )
            log(
                f"{name} on {n} {device.type} process(es): {entry['clip_seconds']:.1f} s/clip, efficiency {entry['scaling_efficiency']}"
            )
            save(report)
    else:
        results, compiled_before = {}, False
        for name in names:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            views = VARIANTS[name].views
            matrix = synthetic_matrix(views, args.frames, args.height, args.width) if views else fm
            entry, r = measure(name, prepare(name, args, device, dtype, shared=model), matrix, args, device)
            results[name] = r
            entry["utilisation"] = utilisation(entry, flop_per_frame, peak)
            if "compile_seconds_cold" in entry:
                if not cache_was_empty:  # --compile-cache named a filled folder: this compile was warm
                    entry["compile_seconds_warm"] = entry.pop("compile_seconds_cold")
                elif compiled_before:  # an earlier variant filled most of the cache: neither cold nor warm
                    entry["compile_seconds_after_another"] = entry.pop("compile_seconds_cold")
                elif args.warm_probe:
                    entry["compile_seconds_warm"] = warm_compile_seconds(name, args, cache)
                entry["compile_cache_bytes"] = unet3d.folder_bytes(cache)
                compiled_before = True
            report["variants"][name] = entry
            save(report)
            tag = "extrapolated to 50 steps" if entry["extrapolated"] else "measured"
            use = "?" if entry["utilisation"] is None else f"{100 * entry['utilisation']:.1f}"
            log(
                f"{name:>24}: {entry['clip_seconds']:8.1f} s/clip (VAE {entry['vae_clip_seconds']:.1f}, UNet and the "
                f"rest {entry['rest_clip_seconds']:.1f}; {tag}; {entry['steps_run']} steps ran in "
                f"{r['seconds']:.1f} s), {entry['frame_evals_per_s']:7.1f} frame-evals/s, utilisation "
                f"{use} %, peak {r['peak_gib']:.2f} GiB, {r['stats'].unet_calls} UNet calls"
                + "".join(
                    f", compile {entry[k]:.0f} s {k.split('_')[-1]}"
                    for k in ("compile_seconds_cold", "compile_seconds_warm", "compile_seconds_after_another")
                    if entry.get(k) is not None
                )
            )
        base = names[0]

        def comparable(name: str) -> bool:  # the same matrix and schedule as the first variant
            return not VARIANTS[name].views and len(results[name]["snapshots"]) == len(results[base]["snapshots"])

        for name in [n for n in names[1:] if not comparable(n)]:  # another matrix or step count: speed only
            speedup = report["variants"][base]["clip_seconds"] / report["variants"][name]["clip_seconds"]
            report.setdefault("comparison", {})[f"{name} vs {base}"] = dict(speedup=speedup)
        for name in [n for n in names[1:] if comparable(n)]:
            a, b = results[name], results[base]
            scale = b["latents"].abs().max().item()
            c = report.setdefault("comparison", {})[f"{name} vs {base}"] = dict(
                speedup=report["variants"][base]["clip_seconds"] / report["variants"][name]["clip_seconds"],
                max_abs_latent_diff=(a["latents"] - b["latents"]).abs().max().item(),
                latent_scale=scale,
                max_abs_latent_diff_per_step=[
                    (x - y).abs().max().item() for x, y in zip(a["snapshots"], b["snapshots"], strict=True)
                ],
                max_abs_pixel_diff_255=max((a["videos"][v] - b["videos"][v]).abs().max().item() for v in a["videos"])
                * 255,
            )
            log(
                f"{name} vs {base}: {c['speedup']:.2f}x; max |latent diff| {c['max_abs_latent_diff']:.3g} (latents up "
                f"to {scale:.3g}), max |pixel diff| {c['max_abs_pixel_diff_255']:.2f}/255"
            )
    report["complete"] = True
    save(report)
    print(json.dumps(report, indent=1))
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
