"""Stage 1, depth: the seed's ``svg_run.py`` command line over ``svg3d.stages.depth`` (no vendored model code).

    cd third_party/Depth-Anything/
    python svg_run.py --encoder vitl --img-path ../../Videos/<clip>/images/ --outdir ../../Videos/<clip>/depths/

Writes ``<outdir>/<frame>_depth.npy`` (float32 relative disparity, raw) and ``<outdir>/preview/*.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for svg3d

from svg3d.cli import add_device_flag, progress_bar, resolve_device, run_cli, setup_logging  # noqa: E402
from svg3d.config import DEFAULT_DEPTH_MODEL, DepthConfig, default  # noqa: E402

CHUNK_FRAMES = 16  # frames read and predicted at a time: memory only (svg3d.stages.depth.run_depth)


def create_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Predict relative depth (disparity) for every frame of a clip.")
    p.add_argument(
        "--img-path", required=True, help="folder of frames (or its parent holding images/), or a video file"
    )
    p.add_argument("--outdir", default="./vis_depth", help="output folder for <frame>_depth.npy (default: %(default)s)")
    p.add_argument(
        "--encoder",
        choices=["vits", "vitb", "vitl"],
        default=None,
        help="seed compatibility: Depth Anything v1 small/base/large (the paper used vitl)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="any transformers depth-estimation model: hub id or local folder "
        f"(default: {DEFAULT_DEPTH_MODEL})",
    )
    p.add_argument("--batch-size", type=int, default=default(DepthConfig, "batch_size"), help="frames per forward pass (default: %(default)s)")
    add_device_flag(p)
    p.add_argument(
        "--preview",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write colour-mapped previews to <outdir>/preview/ (default: on)",
    )
    p.add_argument("--grayscale", action="store_true", help="grey previews instead of a colour map")
    p.add_argument(
        "--pred-only",
        dest="pred_only",
        action="store_true",
        help="accepted for compatibility with the seed; previews always show the prediction only",
    )
    p.add_argument("--quiet", action="store_true", help="warnings and errors only")
    return p


def main(argv: list[str] | None = None) -> int:
    args = create_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)

    def body() -> None:
        from svg3d import work
        from svg3d.checks import InputError
        from svg3d.config import DepthConfig
        from svg3d.models import depth_model_name
        from svg3d.source import open_source
        from svg3d.stages.clip import Clip
        from svg3d.stages.depth import DepthFolder, DepthStage

        if args.batch_size < 1:
            raise InputError(f"--batch-size {args.batch_size}: must be >= 1")
        if args.grayscale and not args.preview:
            raise InputError("--grayscale styles the previews, but --no-preview turns them off")
        name = depth_model_name(args.model, args.encoder)
        device = resolve_device(args.device)
        work.check_writable("outdir", Path(args.outdir))
        source = open_source(args.img_path)  # a bad clip fails before the model loads
        out = DepthFolder(args.outdir, source.info.names, preview=args.preview, grayscale=args.grayscale)
        # the reference keeps depth at the frame size: a resolution no smaller than the frame
        config = DepthConfig(model=name, batch_size=args.batch_size, resolution=max(source.info.size))
        stage = DepthStage(Clip(Path(args.img_path), source), config, device, flags={"flag": "model"})
        stage.check()  # the model is here, before anything is written
        advance, close = progress_bar(source.info.num_frames, "depth", disable=args.quiet)
        try:
            with out:
                stage.run({}, out, out.plan(CHUNK_FRAMES), advance)
        finally:
            close()

    return run_cli(body, {"img_path": "--img-path"})


if __name__ == "__main__":
    raise SystemExit(main())
