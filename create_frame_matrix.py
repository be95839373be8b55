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
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--img_path", required=True, help="clip folder (with images/ inside) or a folder of frames")
    p.add_argument("--depth_path", help="folder holding depths/ and depths_refined/, or a depth folder itself (default: --img_path)")
    p.add_argument("--output_path", required=True, help="frame-matrix folder to write")
    p.add_argument("--num_frames", type=int, default=16, help="frames to use (-1: all)")
    p.add_argument("--start_frame", type=int, default=0, help="first frame to use")
    p.add_argument("--width", type=int, help="resize frames and depth to this width (default: keep)")
    p.add_argument("--height", type=int, help="resize frames and depth to this height (default: keep)")
    p.add_argument("--focal", type=float, help="focal length in pixels (default: 800 at 576 px wide, scaled with the width)")
    p.add_argument("--max_baseline", type=float, default=0.07, help="distance between the eyes, metres")
    p.add_argument("--num_training_views", type=int, default=8, help="views in the matrix, eyes included")
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--left2right", action="store_true", help="the input is the left eye (default)")
    layout.add_argument("--right2left", action="store_true", help="the input is the right eye")
    layout.add_argument("--middle2leftright", action="store_true", help="the input is between the eyes")
    p.add_argument("--use_refined_depth", type=int, choices=(0, 1), default=1, help="1: depths_refined/, 0: depths/")
    p.add_argument("--depth_suffix", choices=(".npy", ".png", ".pfm"), default=".npy")
    p.add_argument("--farest_depth", type=float, default=10.0, help="metres of the farthest point (<= 0: off)")
    p.add_argument("--nearest_depth", type=float, default=-1.0, help="metres of the nearest point (<= 0: ~0.91 m)")
    p.add_argument("--use_metric_depth", action="store_true", help="depth files hold inverse metric depth (1/m)")
    p.add_argument("--num_planes", type=int, default=4, help="depth layers of the crack clean-up")
    p.add_argument("--lossless", action=argparse.BooleanOptionalAction, default=False, help="PNG cells instead of JPEG")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
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
    return run_cli(lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    import cv2
    import numpy as np

    from svg3d import camera, io, matrix
    from svg3d.checks import InputError
    from svg3d.cli import progress_bar, resolve_device

    if args.num_training_views < 2:
        raise InputError(f"--num_training_views {args.num_training_views}: need at least 2 (the two eyes)")
    if args.num_frames == 0 or args.num_frames < -1:
        raise InputError(f"--num_frames {args.num_frames}: give a positive count, or -1 for all frames")
    if args.num_planes < 2:
        raise InputError(f"--num_planes {args.num_planes}: need at least 2")
    if (args.width is None) != (args.height is None):
        raise InputError("--width and --height go together")
    if args.max_baseline <= 0:
        raise InputError(f"--max_baseline {args.max_baseline}: must be > 0")
    device = resolve_device(args.device)
    layout = (
        camera.Layout.RIGHT2LEFT if args.right2left
        else camera.Layout.MIDDLE2LEFTRIGHT if args.middle2leftright
        else camera.Layout.LEFT2RIGHT
    )

    img_path = Path(args.img_path)
    frames_dir = io.frames_folder(img_path)
    all_frames = io.list_images(frames_dir)
    depth_dir = depth_folder(Path(args.depth_path or args.img_path), bool(args.use_refined_depth))
    depth_files = io.list_depths(depth_dir, args.depth_suffix)
    if len(depth_files) != len(all_frames):
        raise InputError(f"{depth_dir}: {len(depth_files)} depth maps for {len(all_frames)} frames in {frames_dir}")
    count = len(all_frames) - args.start_frame if args.num_frames == -1 else args.num_frames
    clip = io.read_clip(img_path, start=args.start_frame, max_frames=count)
    disparity = io.read_depths(depth_dir, suffix=args.depth_suffix, count=count, start=args.start_frame, size=clip.size)
    frames = clip.frames
    if args.width is not None and (args.height, args.width) != clip.size:
        if args.width % 2 or args.height % 2:
            log.warning("--width/--height %dx%d: odd sizes cannot be encoded as yuv420p video later", args.width, args.height)
        log.info("resizing %dx%d -> %dx%d", clip.size[1], clip.size[0], args.width, args.height)
        size = (args.width, args.height)
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
        disparity = np.stack([cv2.resize(d, size, interpolation=cv2.INTER_LINEAR) for d in disparity])

    config = matrix.MatrixConfig(
        num_views=args.num_training_views,
        max_baseline=args.max_baseline,
        layout=layout,
        focal=args.focal,
        nearest_depth=args.nearest_depth,
        farest_depth=args.farest_depth,
        metric_depth=args.use_metric_depth,
        num_planes=args.num_planes,
        lossless=args.lossless,
    )
    start = time.perf_counter()
    advance, close = progress_bar(len(frames), "frame matrix", disable=args.quiet)
    try:
        fm = matrix.frame_matrix_from_clip(
            frames, disparity, config, frame_names=clip.names, fps=clip.fps, device=device, progress=advance
        )
    finally:
        close()
    matrix.save_frame_matrix(fm, args.output_path)
    holes = 1 - fm.masks.float().mean().item()
    log.info(
        "frame matrix: %d views x %d frames at %dx%d, %s, focal %.1f px, %.1f%% holes -> %s (%.1f s)",
        fm.info.num_views, fm.info.num_frames, fm.info.width, fm.info.height, layout.value, fm.info.focal,
        100 * holes, args.output_path, time.perf_counter() - start,
    )


if __name__ == "__main__":
    raise SystemExit(main())
