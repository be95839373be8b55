"""Benchmark: warping a frame matrix (splat + crack clean-up) against a per-image numpy baseline.

    python bench/bench_warp.py                     # 16 frames x 8 views at 576x320, CPU
    python bench/bench_warp.py --device cuda       # the same on the GPU (also times the CPU baseline)

Prints the median time of ``svg3d.warp.warp_views`` (via ``matrix.build_frame_matrix``, as the stage
runs it) and of the straightforward numpy/OpenCV implementation in ``tests/numpy_warp.py`` on the same
rendered scene, their ratio, and checks that both give the same masks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from timing import median_seconds  # noqa: E402 (bench/ is the script's folder on sys.path)

from svg3d import camera, scene  # noqa: E402
from svg3d.stages.matrix import MatrixInfo, build_frame_matrix  # noqa: E402
from tests.numpy_warp import warp_views_numpy  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--height", type=int, default=320)
    p.add_argument("--width", type=int, default=576)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--baseline-repeats", type=int, default=1)
    args = p.parse_args()
    device = torch.device(args.device)

    s = scene.make_scene(0, num_frames=args.frames, height=args.height, width=args.width)
    rgb, z = scene.render(s)
    baselines = camera.view_baselines(args.views, camera.DEFAULT_BASELINE, "left2right")
    info = MatrixInfo(args.views, args.frames, args.height, args.width, tuple(baselines), camera.DEFAULT_BASELINE, "left2right", s.focal)
    rgb_d, z_d = rgb.to(device), z.to(device)

    build_frame_matrix(rgb_d, z_d, info)  # warm-up (CUDA context, allocator)
    fm, t_ours = median_seconds(lambda: build_frame_matrix(rgb_d, z_d, info), device, args.repeats, warm_up=False)
    frames_np, z_np = rgb.permute(0, 2, 3, 1).numpy(), z.numpy()
    (_, ref_masks), t_base = median_seconds(
        lambda: warp_views_numpy(frames_np, z_np, np.asarray(info.baselines, np.float32), s.focal), torch.device("cpu"), args.baseline_repeats,
        warm_up=False,
    )
    same = np.array_equal(fm.masks[:, :, 0].cpu().numpy(), ref_masks)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"frame matrix {args.views} views x {args.frames} frames at {args.width}x{args.height}, clean-up included")
    print(f"  svg3d.warp on {name}: {t_ours * 1000:8.1f} ms (median of {args.repeats})")
    print(f"  numpy baseline on CPU:  {t_base * 1000:8.1f} ms (median of {args.baseline_repeats})")
    print(f"  speed-up: {t_base / t_ours:.1f}x   masks identical: {same}   holes: {100 * (1 - fm.masks.float().mean().item()):.2f}%")


if __name__ == "__main__":
    main()
