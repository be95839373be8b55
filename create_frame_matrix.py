"""Stage 3: warp a clip into the frame matrix (views x frames) with its known-masks.

    python create_frame_matrix.py --img_path=./Videos/<clip>/ --depth_path=./Videos/<clip>/ \\
        --output_path=./Videos/frame_matrix/<clip>/ --num_frames 16 --width 576 --height 320 \\
        --max_baseline 0.07 --num_training_views 8 --left2right

Accepts every flag of the authors' script (same names and defaults, but --max_baseline defaults to the
paper's 0.07 m) plus --device, --lossless and --start_frame.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

log = logging.getLogger("svg3d.create_frame_matrix")


def create_parser() -> argparse.ArgumentParser:
    from svg3d.config import MatrixConfig, default

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--img_path", required=True, help="clip folder (with images/ inside) or a folder of frames")
    p.add_argument("--depth_path", help="folder holding depths/ and depths_refined/, or a depth folder itself (default: --img_path)")
    p.add_argument("--output_path", required=True, help="frame-matrix folder to write")
    p.add_argument("--num_frames", type=int, default=16, help="frames to use, -1: all (default: %(default)s, as the reference)")
    p.add_argument("--start_frame", type=int, default=0, help="first frame to use (default: %(default)s)")
    p.add_argument("--width", type=int, help="resize frames and depth to this width (default: keep)")
    p.add_argument("--height", type=int, help="resize frames and depth to this height (default: keep)")
    p.add_argument("--focal", type=float, help="focal length in pixels (default: 800 at 576 px wide, scaled with the width)")
    p.add_argument("--max_baseline", type=float, default=default(MatrixConfig, "max_baseline"), help="distance between the eyes, metres (default: %(default)s)")
    p.add_argument("--num_training_views", type=int, default=default(MatrixConfig, "num_views"), help="views in the matrix, eyes included (default: %(default)s)")
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--left2right", action="store_true", help="the input is the left eye (default)")
    layout.add_argument("--right2left", action="store_true", help="the input is the right eye")
    layout.add_argument("--middle2leftright", action="store_true", help="the input is between the eyes")
    p.add_argument("--use_refined_depth", type=int, choices=(0, 1), default=1, help="1: depths_refined/, 0: depths/ (default: %(default)s)")
    p.add_argument("--depth_suffix", choices=(".npy", ".png", ".pfm"), default=".npy", help="depth format to read (default: %(default)s)")
    p.add_argument("--farest_depth", type=float, default=default(MatrixConfig, "farest_depth"), help="metres of the farthest point, <= 0: off (default: %(default)s)")
    p.add_argument("--nearest_depth", type=float, default=default(MatrixConfig, "nearest_depth"), help="metres of the nearest point, <= 0: ~0.91 m (default: %(default)s)")
    p.add_argument("--use_metric_depth", action="store_true", help="depth files hold inverse metric depth (1/m)")
    p.add_argument("--num_planes", type=int, default=default(MatrixConfig, "num_planes"), help="depth layers of the crack clean-up (default: %(default)s)")
    p.add_argument("--lossless", action=argparse.BooleanOptionalAction, default=default(MatrixConfig, "lossless"), help="PNG cells instead of JPEG (default: off, as the reference)")
    p.add_argument("--chunk_frames", type=int, default=16, help="frames warped and written at a time: memory only (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def depth_folder(depth_path: Path, refined: bool) -> Path:
    """The reference reads ``<depth_path>/depths_refined`` (or ``depths``); a depth folder itself also works."""
    from svg3d.checks import InputError

    want, other = ("depths_refined", "depths") if refined else ("depths", "depths_refined")
    if (depth_path / want).is_dir():
        return depth_path / want
    if (depth_path / other).is_dir():
        hint = "run the stabilisation stage, or pass --use_refined_depth 0" if refined else "pass --use_refined_depth 1"
        raise InputError(f"{depth_path}: has {other}/ but no {want}/ ({hint})")
    return depth_path


def main(argv: list[str] | None = None) -> int:
    args = create_parser().parse_args(argv)
    from svg3d.cli import run_cli, setup_logging

    setup_logging(quiet=args.quiet)
    return run_cli(lambda: _run(args), {"num_views": "--num_training_views", "size": "--width/--height"}, underscores=True)


def _run(args: argparse.Namespace) -> None:
    from svg3d import camera, io, work
    from svg3d.checks import InputError
    from svg3d.cli import progress_bar, resolve_device
    from svg3d.config import ConvertConfig, MatrixConfig
    from svg3d.source import open_source
    from svg3d.stages import depth, matrix
    from svg3d.stages.clip import Clip

    if args.num_frames == 0 or args.num_frames < -1:
        raise InputError(f"--num_frames {args.num_frames}: give a positive count, or -1 for all frames")
    if (args.width is None) != (args.height is None):
        raise InputError("--width and --height go together")
    if args.chunk_frames < 1:
        raise InputError(f"--chunk_frames {args.chunk_frames}: must be >= 1")
    device = resolve_device(args.device)
    layout = (
        camera.Layout.RIGHT2LEFT if args.right2left
        else camera.Layout.MIDDLE2LEFTRIGHT if args.middle2leftright
        else camera.Layout.LEFT2RIGHT
    )  # fmt: skip
    config = MatrixConfig(
        num_views=args.num_training_views, max_baseline=args.max_baseline, layout=layout, focal=args.focal,
        nearest_depth=args.nearest_depth, farest_depth=args.farest_depth, metric_depth=args.use_metric_depth,
        num_planes=args.num_planes, lossless=args.lossless,
    )  # fmt: skip

    img_path = Path(args.img_path)
    work.check_writable("output_path", Path(args.output_path))
    size = None if args.width is None else (args.height, args.width)
    full = open_source(img_path)
    depth_dir = depth_folder(Path(args.depth_path or args.img_path), bool(args.use_refined_depth))
    depth_files = io.list_depths(depth_dir, args.depth_suffix)
    if len(depth_files) != full.info.total_frames:
        raise InputError(f"{depth_dir}: {len(depth_files)} depth maps for {full.info.total_frames} frames in {io.frames_folder(img_path)}")
    source = open_source(img_path, start=args.start_frame, count=None if args.num_frames == -1 else args.num_frames, size=size)
    info = source.info
    if size is not None and (args.width % 2 or args.height % 2):
        log.warning("--width/--height %dx%d: odd sizes cannot be encoded as yuv420p video later", args.width, args.height)
    # the maps at the frames' size, as the depth stage's store (the reference normalises over the whole clip: Ranges)
    maps = depth.FolderDepth(depth_dir, start=info.start, num_frames=info.num_frames, frame_sizes=(info.stored_size,), files=depth_files, size=info.size)
    plan = camera.plan_views(config, info.size[1])
    stage = matrix.MatrixStage(Clip(img_path, source), plan, ConvertConfig(matrix=config), device, chunk_frames=args.chunk_frames)
    out = matrix.MatrixWriter(args.output_path, plan, config, info)
    start = time.perf_counter()
    advance, close = progress_bar(info.num_frames, "frame matrix", disable=args.quiet)
    try:
        stage.run({"depth": maps, "disparity": maps}, out, out.plan(args.chunk_frames), advance)
    finally:
        close()
    out.close()
    holes = 1 - out.known_pixels / (plan.num_views * info.num_frames * info.size[0] * info.size[1])
    log.info(
        "frame matrix: %d views x %d frames at %dx%d, %s, focal %.1f px, %.1f%% holes -> %s (%.1f s)",
        plan.num_views, info.num_frames, info.size[1], info.size[0], layout.value, plan.focal,
        100 * holes, args.output_path, time.perf_counter() - start,
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
