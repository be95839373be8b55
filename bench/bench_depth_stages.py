"""Benchmark stages 1-2 (depth, stabilisation) with full-size random-weight networks: seconds per frame.

    .venv/bin/python bench/bench_depth_stages.py --device cuda                 # 16 frames at 576x320
    .venv/bin/python bench/bench_depth_stages.py --device cpu --frames 4 --height 64 --width 96

Stage 1: Depth Anything V2-Small built from its config (random weights: the speed is the same),
fp16 on CUDA, fp32 on CPU, network input 518 px on the short side. Stage 2: RAFT-large (random
weights, 32 iterations), OpenCV DIS and our torch flow (``flow.TorchFlow``); with a CUDA device the DIS run is also
timed on the CPU alone.
Frames come from the synthetic scene renderer. Each timing follows one untimed warm-up run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for svg3d


def create_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N")
    p.add_argument("--frames", type=int, default=16, help="clip length (default: %(default)s)")
    p.add_argument("--height", type=int, default=320, help="frame height (default: %(default)s)")
    p.add_argument("--width", type=int, default=576, help="frame width (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=4, help="depth frames per forward pass (default: %(default)s)")
    p.add_argument("--raft-iters", type=int, default=32, help="RAFT iterations (default: %(default)s, the reference's)")
    p.add_argument("--pairs-per-batch", type=int, default=8, help="flow pairs per RAFT call (default: %(default)s)")
    p.add_argument(
        "--stages",
        default="depth,raft,dis,torch",
        help="comma-separated subset of depth,raft,dis,torch (default: %(default)s); without depth, "
        "stage 2 stabilises the renderer's true disparity",
    )
    return p


def timed(fn: Callable[[], object], device) -> float:
    """Seconds for ``fn()`` after one warm-up call, with CUDA synchronised."""
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    args = create_parser().parse_args(argv)

    import torch
    from torchvision.models.optical_flow import raft_large

    from svg3d.cli import resolve_device
    from svg3d.flow import DISFlow, RaftFlow, TorchFlow
    from svg3d.models import default_dtype, load_depth_model
    from svg3d.scene import make_scene, render
    from svg3d.stages.depth import ModelDepth, network_size
    from svg3d.stages.stabilise import StabiliseConfig, stabilise_disparity
    from svg3d.tiny_models import save_random_depth_anything_v2_small

    stages = set(args.stages.split(","))
    if not stages or not stages <= {"depth", "raft", "dis", "torch"}:
        raise SystemExit(f"--stages {args.stages}: expected a comma-separated subset of depth,raft,dis,torch")
    device = resolve_device(args.device)
    torch.manual_seed(0)
    t, h, w = args.frames, args.height, args.width
    rgb, z = render(make_scene(0, num_frames=t, height=h, width=w), device=device)
    frames = (rgb.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()  # (T, H, W, 3)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {device} ({name}); torch {torch.__version__}; {t} frames {w}x{h}")

    disparity = (1.0 / z).cpu().numpy()
    if "depth" in stages:
        dtype = default_dtype(device)
        with tempfile.TemporaryDirectory() as folder:  # through the product's loader: the model convert runs
            model = load_depth_model(str(save_random_depth_anything_v2_small(Path(folder))), device=device, dtype=dtype)

        def depth_stage() -> None:
            nonlocal disparity
            disparity = ModelDepth(model, batch_size=args.batch_size)(frames, 0, (h, w))

        nh, nw = network_size(h, w)
        seconds = timed(depth_stage, device)
        print(
            f"stage 1 depth   Depth Anything V2-S {dtype}, input {nw}x{nh}, batch {args.batch_size}: {seconds / t:.4f} s/frame"
        )
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    d = torch.from_numpy(disparity)
    rgb8 = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W) uint8
    config = StabiliseConfig(pairs_per_batch=args.pairs_per_batch)
    runs = []
    if "raft" in stages:
        raft = RaftFlow(raft_large(weights=None).to(device).eval(), iterations=args.raft_iters, name="raft_large")
        runs.append((f"RAFT-large, {args.raft_iters} iterations", raft, device))
    if "dis" in stages:
        runs.append(("DIS", DISFlow(), device))
        if device.type == "cuda":
            runs.append(("DIS", DISFlow(), torch.device("cpu")))
    if "torch" in stages:
        runs.append(("ours (TorchFlow)", TorchFlow(), device))
    for label, flow, dev in runs:
        seconds = timed(lambda flow=flow, dev=dev: stabilise_disparity(rgb8, d, flow, config, device=dev), dev)
        print(f"stage 2 stabilise  {label} on {dev}: {seconds / t:.4f} s/frame")
    if device.type == "cuda":
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
