"""Profile: where the time of the exact denoiser's UNet calls goes, kernel by kernel (issue 22).

    python bench/profile_denoise.py --device cuda                                # diffusers, ours, ours compiled
    python bench/profile_denoise.py --device cuda --variants diffusers,ours --no-vae   # the eager calls only
    python bench/profile_denoise.py --device cpu --tiny --shapes 4x4,6x3 --variants ours   # a CPU smoke run

One UNet call of each pass shape of the default stereo schedule (``bench_unet_call.SHAPES``: the temporal pass
over the 7 views with holes, the pass along the views, the target view's temporal pass once t <= E; CFG's pair
doubled) at the full zeroscope size with random weights (``svg3d.tiny_models``), per variant:

- ``diffusers``: diffusers' UNet3D, eager;
- ``ours-torch-norm``: ``svg3d.unet3d.UNet3D``, eager (channels-last), with torch's GroupNorm;
- ``ours-sdpa``: the same with the grouped GroupNorm (``unet3d.group_norm(impl="grouped")``, no layout copies);
- ``ours``: + the temporal attention by ``svg3d.attention``'s kernel (the variants above: SDPA);
- ``ours-compiled``: ``unet3d.compile_unet`` (regional compile; on CUDA each call replayed as a CUDA graph). Its
  first calls compile (Inductor's cache: a new empty folder, so the time is cold); the wall time is the graph's,
  the kernels are those of the same compiled blocks run without the graph (the profiler does not see inside one);

and, with ``--vae``, eager VAE round trips (encode + decode of 16 frames at 576x320, as the re-injection does):
diffusers' forward ("vae eager") and ours (``svg3d.vae``, "vae ours").

Per call: wall time (median of ``--repeats`` after two warm-ups, CUDA events), the profiled call's kernel time and
its share of the wall time (the rest is launch gaps and host work), the time by kind of kernel (``CATEGORIES``:
matrix products and convolutions, attention, normalisation, elementwise, copies and layout changes, Inductor's
fused kernels, reductions, other) and the top kernels with their share. Writes
``bench/results/profile_denoise-<device>-<UTC time>.json`` and ``.txt`` (or into ``--out DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_unet_call import SHAPES, median_ms  # noqa: E402
from timing import unet_inputs  # noqa: E402

from svg3d import unet3d, vae  # noqa: E402
from svg3d.tiny_models import build_random_zeroscope  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("diffusers", "ours-torch-norm", "ours-sdpa", "ours", "ours-compiled")
GROUP_NORM = {"ours-torch-norm": "torch", "ours-sdpa": "grouped", "ours": "grouped", "ours-compiled": "grouped"}
ATTENTION = {"ours-torch-norm": "sdpa", "ours-sdpa": "sdpa"}  # our variants' temporal attention (others: the default)
# Kernel (or CPU op) name -> kind, first match wins. Inductor's kernels (triton_*) fuse several ops: those that
# normalise count as normalisation, the rest as "inductor fused"; cuBLAS on Hopper names its kernels nvjet_*.
CATEGORIES = (
    ("attention", r"flash|fmha|attention|sdpa|scaled_dot"),
    ("normalisation", r"^triton_.*norm|group_norm|groupnorm|layer_norm|layernorm|welford"),
    ("inductor fused", r"^triton_"),
    ("copy / layout", r"copy|nchwtonhwc|nhwctonchw|transpose|catarray|\bcat\b|memcpy|memset|clone|contiguous"),
    ("matmul / conv", r"gemm|xmma|cutlass|conv|cudnn|nvjet|wgmma|cublas|sm90_|sm80_|\bmm\b|addmm|linear|bmm|matmul"),
    ("elementwise", r"elementwise|vectorized|unrolled|silu|gelu|\badd|\bmul"),
    ("reduction", r"reduce|softmax|sum|mean|var"),
)


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def category(name: str) -> str:
    low = name.lower()
    return next((kind for kind, pattern in CATEGORIES if re.search(pattern, low)), "other")


def kernel_table(prof, device: torch.device) -> tuple[list[tuple[str, float]], float]:
    """(name, microseconds) of every GPU kernel of the profiled region (CPU: every op's self time) and the time
    the device was busy (union of kernel intervals; CPU: the sum)."""
    if device.type != "cuda":
        ops = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
        rows = [(e.key, e.self_cpu_time_total / e.count) for e in ops for _ in range(e.count)]  # count kept
        return rows, sum(t for _, t in rows)
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    spans = sorted((e.time_range.start, e.time_range.end) for e in kernels)
    busy, end = 0.0, float("-inf")
    for a, b in spans:  # union of intervals: overlapping kernels (streams) count once
        if b > end:
            busy += b - max(a, end)
            end = b
    return [(e.name, e.time_range.elapsed_us()) for e in kernels], busy


def summarise(rows: list[tuple[str, float]], busy_us: float, wall_ms: float, top: int) -> dict:
    """Time by category and the top kernels (by total time over their launches), each with its share."""
    total = sum(t for _, t in rows) or 1.0
    by_name: dict[str, list[float]] = defaultdict(list)
    by_kind: dict[str, float] = defaultdict(float)
    for name, t in rows:
        by_name[name].append(t)
        by_kind[category(name)] += t
    ranked = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:top]
    return dict(
        wall_ms=wall_ms,
        kernel_ms=total / 1000,
        busy_ms=busy_us / 1000,
        busy_share_of_wall=busy_us / 1000 / wall_ms if wall_ms else None,
        kernels=len(rows),
        categories={k: dict(ms=v / 1000, share=v / total) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        top=[
            dict(name=n[:160], category=category(n), calls=len(ts), ms=sum(ts) / 1000, share=sum(ts) / total)
            for n, ts in ranked
        ],
    )


def profiled(fn, device: torch.device):
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    with profile(activities=activities) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return prof


def without_graphs(ours: unet3d.UNet3D):
    """``ours`` called with its compiled blocks but without the CUDA graph around the whole call."""

    def fn(sample, t, encoder_hidden_states):
        graphed, ours._compiled = ours._compiled, ours.run
        try:
            return ours(sample, t, encoder_hidden_states)
        finally:
            ours._compiled = graphed

    return fn


def text_report(report: dict) -> str:
    lines = [
        f"{report['device_name']}, torch {report['torch']}, {report['dtype']}, {report['size']}; "
        f"{report['tflop_per_frame_eval']:.3f} TFLOP per frame-evaluation"
    ]
    for variant, shapes in report["calls"].items():
        for shape, s in shapes.items():
            extra = "" if s.get("tflops") is None else f", {s['tflops']:.0f} TFLOP/s"
            lines.append(
                f"\n== {variant} | {shape}: wall {s['wall_ms']:.1f} ms{extra}; kernels {s['kernel_ms']:.1f} ms "
                f"({s['kernels']} launches), busy {100 * (s['busy_share_of_wall'] or 0):.0f} % of wall"
            )
            lines.append("   " + ", ".join(f"{k} {100 * v['share']:.1f} %" for k, v in s["categories"].items()))
            for k in s["top"]:
                lines.append(
                    f"   {100 * k['share']:5.1f} % {k['ms']:8.2f} ms {k['calls']:4d}x  [{k['category']}] {k['name'][:110]}"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="the tests' tiny models (CPU smoke runs)")
    p.add_argument("--height", type=int, default=320)
    p.add_argument("--width", type=int, default=576)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--shapes", default=None, help="UNet batch x frames instead of the schedule's, e.g. 2x16,4x8")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--top", type=int, default=15, help="kernels listed per call")
    p.add_argument("--no-vae", dest="vae", action="store_false", help="skip the VAE round trip")
    p.add_argument("--out", default=None, help="folder for the JSON and text reports (default bench/results)")
    args = p.parse_args()
    names = [n for n in VARIANTS if n in args.variants.split(",")]
    shapes = {s: tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")} if args.shapes else dict(SHAPES)
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="svg3d-compile-"))  # cold compile
    t0 = time.perf_counter()
    model = build_random_zeroscope(device, dtype, tiny=args.tiny)
    h, w = args.height // 8, args.width // 8
    inputs = unet_inputs(model, shapes, args.height, args.width, device, dtype)
    t = torch.tensor(500, device=device)
    flops = {n: unet3d.unet_flops(model.unet.config, b, f, h, w) for n, (b, f) in shapes.items()}
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report: dict = dict(
        command=shlex.join([sys.executable, *sys.argv]),
        utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        device_name=device_name,
        torch=torch.__version__,
        dtype=str(dtype),
        size=f"{'tiny' if args.tiny else 'full-size'} zeroscope, latents {h}x{w}",
        shapes={n: dict(batch=b, frames=f) for n, (b, f) in shapes.items()},
        tflop_per_frame_eval=sum(flops.values()) / sum(b * f for b, f in shapes.values()) / 1e12,
        calls={},
    )
    log(f"{device_name}: model built in {time.perf_counter() - t0:.1f} s")

    def call(unet, name):
        x, hidden = inputs[name]
        return torch.no_grad()(lambda: unet(x, t, encoder_hidden_states=hidden).sample)

    out = Path(args.out) if args.out else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    when = (
        report["utc"].replace(":", "").split("+")[0]
    )  # letters, digits, '-', '_' and '.' only: names that travel anywhere
    stem = f"profile_denoise-{device_name.replace(' ', '_')}-{when}"

    def save() -> str:  # after every variant: a run cut short keeps what it measured
        (out / f"{stem}.json").write_text(json.dumps(report, indent=1))
        text = text_report(report)
        (out / f"{stem}.txt").write_text(text)
        return text

    if args.vae:
        gen = torch.Generator(device).manual_seed(1)
        frames = torch.rand(16, 3, args.height, args.width, device=device, dtype=dtype, generator=gen) * 2 - 1

        @torch.no_grad()
        def round_trip():
            return model.vae.decode(model.vae.encode(frames).latent_dist.mean).sample

        ours = vae.vae_for(model.vae, "ours")  # built after diffusers' own ran: its weights are channels-last since

        @torch.no_grad()
        def ours_round_trip():
            return ours.decode(ours.encode(frames)[0])

        for label, fn in (("vae eager", round_trip), ("vae ours", ours_round_trip)):
            wall = median_ms(fn, args.repeats, device)
            rows, busy = kernel_table(profiled(fn, device), device)
            report["calls"][label] = {"encode + decode, 16 frames": summarise(rows, busy, wall, args.top)}
            log(f"{label}: VAE round trip of 16 frames: {wall:.1f} ms")
            save()
    reference: dict[str, dict[str, torch.Tensor]] = {}  # variant -> shape -> output
    for variant in names:
        if variant == "diffusers":
            unet = model.unet
        else:
            unet = unet3d.unet_for(model.unet, "ours").set_group_norm(GROUP_NORM[variant])
            unet.set_temporal_attention(ATTENTION.get(variant))
        run_unet = unet
        entry = report["calls"][variant] = {}
        if variant == "ours-compiled":
            compiled_model = build_random_zeroscope(device, dtype, tiny=args.tiny)  # same seed: the same weights
            start = time.perf_counter()
            unet = unet3d.compile_unet(compiled_model.unet, scope="blocks")  # without_graphs needs the regions
            unet.set_group_norm(GROUP_NORM[variant]).set_temporal_attention(ATTENTION.get(variant))
            try:
                for name in shapes:
                    call(unet, name)()
            except Exception as e:  # keep the eager variants' report
                report["compile"] = dict(error=f"{type(e).__name__}: {e}"[:2000])
                log(f"ours-compiled failed: {report['compile']['error']}")
                save()
                raise
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            from torch._dynamo.utils import counters

            report["compile"] = dict(
                seconds_cold=time.perf_counter() - start,
                graphs=counters["stats"]["unique_graphs"],
                cache_bytes=unet3d.folder_bytes(os.environ["TORCHINDUCTOR_CACHE_DIR"]),
            )
            log(f"ours-compiled: compile + first calls of every shape {report['compile']['seconds_cold']:.0f} s")
            run_unet = without_graphs(unet)  # the profiler does not see the kernels inside a CUDA graph
        for name in shapes:
            wall = median_ms(call(unet, name), args.repeats, device)
            rows, busy = kernel_table(profiled(call(run_unet, name), device), device)
            s = entry[name] = summarise(rows, busy, wall, args.top)
            s["tflops"] = flops[name] / wall / 1e9
            out_now = call(unet, name)().float()
            base = {"ours": "ours-sdpa", "ours-compiled": "ours"}.get(variant)  # fp16 rounding apart only
            if base in reference and name in reference[base]:
                ref = reference[base][name]
                s[f"rel_diff_vs_{base}"] = ((out_now - ref).abs().max() / ref.abs().max()).item()
            reference.setdefault(variant, {})[name] = out_now
            diff = s.get(f"rel_diff_vs_{base}")
            log(
                f"{variant} | {name}: {wall:.1f} ms, {s['tflops']:.0f} TFLOP/s, kernels {s['kernel_ms']:.1f} ms"
                + ("" if diff is None else f", rel. diff vs {base} {diff:.1e}")
            )
        if variant == "ours-compiled":
            del compiled_model, unet, run_unet
        save()
    print(save())
    log(f"wrote {out / stem}.json and .txt")


if __name__ == "__main__":
    main()
