"""Stage 2, depth stabilisation: the seed's ``svg_enhance_depth.py`` command line over ``svg3d.stages.stabilise``.

    cd third_party/RAFT/
    python svg_enhance_depth.py --path=../../Videos/<clip>/images/ --depth_path=../../Videos/<clip>/depths/ \\
        --out_dir=../../Videos/<clip>/depths_refined/

Optical flow: torchvision RAFT (weights from torchvision, or ``--model FILE``) or OpenCV DIS (no weights);
``--flow auto`` takes RAFT when its weights are available and says so when it falls back to DIS.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for svg3d

from svg3d.cli import add_device_flag, progress_bar, resolve_device, run_cli, setup_logging  # noqa: E402
from svg3d.config import FLOW_CHOICES, RAFT_ITERATIONS, StabiliseConfig, default  # noqa: E402

log = logging.getLogger("svg3d.svg_enhance_depth")
CHUNK_FRAMES = 16  # frames stabilised at a time: memory only (svg3d.stages.stabilise.run_stabilise)


def create_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Stabilise per-frame depth over time with optical flow and a guided filter."
    )
    p.add_argument("--path", required=True, help="folder of frames (or its parent holding images/), or a video file")
    p.add_argument("--depth_path", required=True, help="folder with one depth map per frame (stage 1's output)")
    p.add_argument("--out_dir", required=True, help="output folder for the stabilised <name>_depth.npy")
    p.add_argument("--file_suffix", default=None, help="only frames with this suffix, e.g. .jpg (default: all images)")
    p.add_argument(
        "--depth_suffix",
        choices=[".npy", ".png", ".pfm"],
        default=None,
        help="depth format to read (default: the one format in --depth_path)",
    )
    # optical flow
    p.add_argument(
        "--flow",
        choices=[c for c in FLOW_CHOICES if c != "raft_small"],  # --small picks raft_small
        default="auto",
        help="auto: RAFT if its weights are available, else OpenCV DIS (default: %(default)s)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="RAFT weights: a torchvision RAFT state_dict file (default: torchvision's raft_large / raft_small)",
    )
    p.add_argument("--small", action=argparse.BooleanOptionalAction, default=False, help="RAFT small instead of large")
    p.add_argument(
        "--mixed_precision",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="RAFT under fp16 autocast (CUDA only)",
    )
    p.add_argument(
        "--iters", type=int, default=RAFT_ITERATIONS, help="RAFT refinement iterations (default: %(default)s, as the reference)"
    )
    p.add_argument(
        "--alternate_corr",
        action="store_true",
        help="accepted for compatibility with the seed (RAFT's CUDA correlation kernel); no effect",
    )
    # stabilisation (defaults: the reference's)
    p.add_argument("--window_size", type=int, default=default(StabiliseConfig, "window_size"), help="frames fused per frame, odd (default: %(default)s)")
    p.add_argument(
        "--rgb_threshold",
        type=float,
        default=default(StabiliseConfig, "rgb_threshold"),
        help="max colour difference (0-255) for a warped neighbour to count (default: %(default)s)",
    )
    p.add_argument(
        "--depth_ratio",
        type=float,
        default=default(StabiliseConfig, "depth_ratio"),
        help="max disparity difference, as a fraction of the neighbour's range (default: %(default)s)",
    )
    p.add_argument("--radius", type=int, default=default(StabiliseConfig, "radius"), help="guided filter radius (default: %(default)s)")
    p.add_argument("--eps", type=float, default=default(StabiliseConfig, "eps"), help="guided filter epsilon (default: %(default)s)")
    p.add_argument(
        "--pairs_per_batch", type=int, default=default(StabiliseConfig, "pairs_per_batch"), help="flow pairs per batch; memory only (default: %(default)s)"
    )
    p.add_argument(
        "--invert_flows",
        action="store_true",
        help="compute only the forward flows and invert them for the backward ones: half the flow work, as convert does "
        "(default: off, both computed as the reference does)",
    )
    add_device_flag(p)
    p.add_argument(
        "--preview",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write colour-mapped previews to <out_dir>/preview/ (default: on)",
    )
    p.add_argument("--quiet", action="store_true", help="warnings and errors only")
    return p


def main(argv: list[str] | None = None) -> int:
    args = create_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)

    def body() -> None:

        from svg3d import work
        from svg3d.checks import InputError
        from svg3d.flow import make_flow
        from svg3d.stages.clip import Clip
        from svg3d.stages.depth import DepthFolder, FolderDepth
        from svg3d.stages.stabilise import StabiliseStage, load_inputs

        config = StabiliseConfig(
            window_size=args.window_size,
            rgb_threshold=args.rgb_threshold,
            depth_ratio=args.depth_ratio,
            radius=args.radius,
            eps=args.eps,
            pairs_per_batch=args.pairs_per_batch,
            invert_flows=args.invert_flows,
        )
        if args.iters < 1:
            raise InputError(f"--iters {args.iters}: must be >= 1")
        device = resolve_device(args.device)
        if args.mixed_precision and device.type != "cuda":
            raise InputError(f"--mixed_precision needs a CUDA device (--device resolved to {device})")
        if args.alternate_corr:
            log.info("--alternate_corr has no effect (torchvision's RAFT has no such kernel)")
        source, depth_files = load_inputs(args.path, args.depth_path, file_suffix=args.file_suffix, depth_suffix=args.depth_suffix)
        if Path(args.out_dir).resolve() == Path(args.depth_path).resolve():
            raise InputError(f"--out_dir {args.out_dir}: is the depth folder; it would overwrite its input")
        work.check_writable("out_dir", Path(args.out_dir))
        flow = make_flow(
            args.flow,
            device=device,
            model=args.model,
            small=args.small,
            iterations=args.iters,
            mixed_precision=args.mixed_precision,
        )
        n = source.info.num_frames
        maps = FolderDepth(Path(args.depth_path), num_frames=n, frame_sizes=(source.info.size,), files=depth_files)
        out = DepthFolder(Path(args.out_dir), tuple(f.stem for f in depth_files), preview=args.preview, suffix="")
        advance, close = progress_bar(n, "stabilise", disable=args.quiet)
        stage = StabiliseStage(Clip(Path(args.path), source), config, args.flow, source.info.size, device, backend=flow)
        try:
            with out:
                stage.run({"depth": maps}, out, out.plan(CHUNK_FRAMES), advance)
        finally:
            close()

    return run_cli(body, underscores=True)


if __name__ == "__main__":
    raise SystemExit(main())
