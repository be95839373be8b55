"""Benchmark: cost per frame against clip length (issue 6: the cost grows linearly with length).

    python bench/bench_length.py --path classical                            # CPU: 16, 48, 96 frames
    python bench/bench_length.py --path diffusion --device cuda --steps 2    # GPU: 16, 48 frames, random weights

``classical``: the weight-free path of ``convert`` as library calls on a rendered scene: the frame
matrix (warp to the eyes) and ``fill.fill_frame_matrix`` of the right eye, timed together.
``diffusion``: ``denoise_long`` (windows of 16 frames, overlap 4) with zeroscope's architecture and
random weights (``svg3d.tiny_models.build_random_zeroscope``) on a matrix warped from the same renderer. Only
``--steps`` DDPM steps run (default 2: one t > 500 step with resampling, then the last step), so seconds
per frame are NOT those of the 50-step schedule; what they show is how the cost scales with length
(in whole windows: 48 frames are 4 windows of 16, 64 denoised frames).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.bench_denoise import synthetic_matrix  # noqa: E402
from svg3d import camera, scene  # noqa: E402
from svg3d.denoise import DenoiseConfig, denoise_long, window_starts  # noqa: E402
from svg3d.stages.fill import classical as fill  # noqa: E402
from svg3d.stages.matrix import MatrixInfo, build_frame_matrix, warp_depth  # noqa: E402
from svg3d.tiny_models import build_random_zeroscope  # noqa: E402


def classical_seconds(frames: int, height: int, width: int) -> float:
    """Frame matrix (2 views) + classical filling of the right eye for a rendered ``frames``-frame clip."""
    s = scene.make_scene(0, num_frames=frames, height=height, width=width)
    rgb, z = scene.render(s)
    baselines = camera.view_baselines(2, camera.DEFAULT_BASELINE, "left2right")
    info = MatrixInfo(2, frames, height, width, tuple(baselines), camera.DEFAULT_BASELINE, "left2right", s.focal)
    start = time.perf_counter()
    fm = build_frame_matrix(rgb, z, info)
    depth_views = warp_depth(z, torch.tensor(info.baselines), info.focal)
    fill.fill_frame_matrix(fm.images, fm.masks, depth_views, views=(1,), baselines=info.baselines, focal=info.focal)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--path", choices=("classical", "diffusion"), required=True)
    p.add_argument("--lengths", default=None, help="comma-separated frame counts (default: 16,48,96 / 16,48)")
    p.add_argument("--width", type=int, default=576)
    p.add_argument("--height", type=int, default=320)
    p.add_argument("--device", default="cuda", help="diffusion only (classical runs on the CPU)")
    p.add_argument("--views", type=int, default=8, help="diffusion: views of the frame matrix")
    p.add_argument("--steps", type=int, default=2, help="diffusion: DDPM steps per window (not the 50 of a real run)")
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--overlap", type=int, default=4)
    p.add_argument("--tiny", action="store_true", help="diffusion: the tests' tiny models (a smoke test)")
    args = p.parse_args()
    lengths = [int(n) for n in (args.lengths or ("16,48,96" if args.path == "classical" else "16,48")).split(",")]

    if args.path == "classical":
        print(f"classical path on the CPU ({torch.get_num_threads()} threads), {args.width}x{args.height}, right eye")
        classical_seconds(4, args.height, args.width)  # warm-up: imports, OpenCV, allocator
        for n in lengths:
            seconds = classical_seconds(n, args.height, args.width)
            print(f"{n:4d} frames: {seconds:7.2f} s, {seconds / n:.3f} s/frame")
        return

    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # as svg.py: subnormal floats are ~100x slower on x86
    model = build_random_zeroscope(device, dtype, tiny=args.tiny)
    config = DenoiseConfig(num_inference_steps=args.steps)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"diffusion path on {device} ({name}), {'tiny' if args.tiny else 'full-size'} random zeroscope, {dtype}, "
        f"{args.views} views at {args.width}x{args.height}, windows of {args.window} (overlap {args.overlap}), "
        f"{args.steps} steps per window (NOT the 50-step schedule: compare the lengths, not the absolute times)"
    )

    def sync() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    warm = synthetic_matrix(args.views, args.window, args.height, args.width)
    denoise_long(model, warm.images, warm.masks, "x", config, window=args.window, overlap=args.overlap)  # warm-up
    for n in lengths:
        fm = synthetic_matrix(args.views, n, args.height, args.width)
        start = sync()
        denoise_long(model, fm.images, fm.masks, "a synthetic scene", config, window=args.window, overlap=args.overlap)
        seconds = sync() - start
        windows = len(window_starts(n, args.window, args.overlap))
        print(f"{n:4d} frames: {windows} windows, {seconds:7.2f} s, {seconds / n:.3f} s/frame")


if __name__ == "__main__":
    main()
