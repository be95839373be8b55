"""``python -m svg3d``: the end-to-end commands.

    python -m svg3d convert INPUT -o OUT [options]   a video file or a frames folder -> 3D videos in OUT
    python -m svg3d demo [--out results/demo]        render a scene, convert it, score it against the truth

``convert`` runs every stage in ``OUT/work`` (resumable: run the same command again after a crash or
Ctrl-C) and writes the exports to ``OUT``. See ``svg3d.pipeline``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXPORT_HELP = "sbs, hsbs, tb, htb, anaglyph, left, right, grid, depth"  # svg3d.export.EXPORTS, kept light for --help


def create_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m svg3d", description="Stereoscopic 3D video from a monocular video (SVG).")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="convert a video (or a folder of frames) to 3D", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("input", type=Path, help="video file, or folder of frames (or a clip folder with images/ inside)")
    c.add_argument("-o", "--output", type=Path, required=True, help="output folder for the 3D videos")
    c.add_argument("--work-dir", type=Path, default=None, help="folder for the stages' files (default: OUTPUT/work)")
    clip = c.add_argument_group("clip")
    clip.add_argument("--start-frame", type=int, default=0, help="first frame to convert")
    clip.add_argument("--num-frames", type=int, default=None, help="frames to convert (default: to the end)")
    clip.add_argument("--width", type=int, default=None, help="resize to this width (with --height; default: keep)")
    clip.add_argument("--height", type=int, default=None, help="resize to this height (with --width; default: keep)")
    d = c.add_argument_group("depth")
    d.add_argument("--depth-from", type=Path, default=None, help="folder with one depth map per frame (.npy/.png/.pfm) instead of the depth model")
    d.add_argument("--depth-model", default=None, help="depth checkpoint, hub id or folder (default: Depth Anything V2 Small)")
    d.add_argument("--metric-depth", action=argparse.BooleanOptionalAction, default=False, help="depth maps hold inverse metric depth (1/m), not relative disparity")
    d.add_argument("--stabilise", action=argparse.BooleanOptionalAction, default=True, help="temporal depth stabilisation")
    d.add_argument("--flow", choices=("auto", "raft", "raft_small", "dis"), default="auto", help="optical flow for stabilisation (auto: RAFT if its weights are here, else OpenCV DIS)")
    g = c.add_argument_group("3D effect")
    g.add_argument("--baseline", type=float, default=0.07, help="distance between the eyes, metres (stronger 3D: larger)")
    g.add_argument("--focal", type=float, default=None, help="focal length, pixels (default: 800 at 576 px wide, scaled with the width)")
    g.add_argument("--near", type=float, default=-1.0, help="metres of the nearest point (<= 0: ~0.91 m)")
    g.add_argument("--far", type=float, default=10.0, help="metres of the farthest point (<= 0: off)")
    g.add_argument("--num-views", type=int, default=None, help="views of the frame matrix (default: 8 for diffusion or the grid export, else 2; 3 with middle2leftright)")
    g.add_argument("--layout", choices=("left2right", "right2left", "middle2leftright"), default="left2right", help="the input is the left eye, the right eye, or between the eyes")
    f = c.add_argument_group("hole filling")
    f.add_argument("--fill", choices=("auto", "diffusion", "classical"), default="auto", help="auto: diffusion when zeroscope is available and CUDA is, else classical (no weights)")
    f.add_argument("--video-model", default="cerspense/zeroscope_v2_576w", help="zeroscope for diffusion: hub id or local folder")
    f.add_argument("--prompt", default="", help="text describing the video (diffusion)")
    f.add_argument("--steps", type=int, default=50, help="denoising steps (diffusion)")
    f.add_argument("--seed", type=int, default=42, help="random seed (diffusion)")
    f.add_argument("--window", type=int, default=16, help="frames denoised together; longer clips go in sliding windows (diffusion)")
    f.add_argument("--overlap", type=int, default=None, help="frames each window continues from the previous one (diffusion; None: 4, at most --window - 1)")
    f.add_argument("--offload", action=argparse.BooleanOptionalAction, default=False, help="keep the idle text encoder and VAE on the CPU to save GPU memory (diffusion)")
    f.add_argument("--max-unet-frames", type=int, default=256, help="latent frames per UNet call, CFG pair counted; lower saves GPU memory (diffusion)")
    f.add_argument("--vae-frames", type=int, default=16, help="frames per VAE call; lower saves GPU memory (diffusion)")
    f.add_argument("--compile", action="store_true", help="torch.compile the UNet's and VAE's blocks: ~10%% faster steps after minutes of compiling (cached on disk); pays off over many windows (diffusion)")
    o = c.add_argument_group("outputs")
    o.add_argument("--exports", default="sbs,hsbs,anaglyph", help=f"comma-separated, or all: {EXPORT_HELP}")
    o.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N")
    o.add_argument("--quiet", action="store_true", help="no progress bars; warnings and errors only")

    m = sub.add_parser("demo", help="render a synthetic clip, convert it with no downloads, and score it", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    m.add_argument("--out", type=Path, default=Path("results/demo"), help="output folder")
    m.add_argument("--seed", type=int, default=0, help="scene seed")
    m.add_argument("--quiet", action="store_true", help="no progress bars; warnings and errors only")
    return p


def main(argv: list[str] | None = None) -> int:
    args = create_parser().parse_args(argv)
    from svg3d.cli import run_cli, setup_logging

    setup_logging(quiet=args.quiet)
    return run_cli(lambda: _convert(args) if args.command == "convert" else _demo(args))


def _config(args: argparse.Namespace):
    from svg3d import camera, export, models
    from svg3d.checks import InputError
    from svg3d.pipeline import ConvertConfig

    if (args.width is None) != (args.height is None):
        raise InputError("--width and --height go together")
    return ConvertConfig(
        start_frame=args.start_frame,
        num_frames=args.num_frames,
        size=None if args.width is None else (args.height, args.width),
        depth_from=args.depth_from,
        depth_model=args.depth_model or models.DEFAULT_DEPTH_MODEL,
        metric_depth=args.metric_depth,
        stabilise=args.stabilise,
        flow=args.flow,
        baseline=args.baseline,
        focal=args.focal,
        nearest_depth=args.near,
        farest_depth=args.far,
        num_views=args.num_views,
        layout=camera.Layout(args.layout),
        fill=args.fill,
        video_model=args.video_model,
        prompt=args.prompt,
        steps=args.steps,
        seed=args.seed,
        window=args.window,
        overlap=args.overlap,
        offload=args.offload,
        max_unet_frames=args.max_unet_frames,
        vae_frames=args.vae_frames,
        compile=args.compile,
        exports=export.parse_exports(args.exports),
    )


def _convert(args: argparse.Namespace) -> None:
    from svg3d import pipeline
    from svg3d.checks import InputError
    from svg3d.cli import progress_bar, resolve_device, setup_logging

    config = _config(args)  # flags first: a bad flag fails before anything is read
    if args.depth_from is not None and args.depth_model is not None:
        raise InputError("--depth-from and --depth-model both choose where depth comes from; give one")
    job = pipeline.prepare(args.input, args.output, config, work_dir=args.work_dir, device=resolve_device(args.device))
    setup_logging(quiet=args.quiet, log_file=job.work_dir / pipeline.LOG_FILE)
    result = pipeline.run(job, progress=lambda desc, total: progress_bar(total, desc, disable=args.quiet))
    for name, path in result.exports.items():
        print(f"{name:9s} {path}")


def _demo(args: argparse.Namespace) -> None:
    from svg3d import demo
    from svg3d.cli import progress_bar

    report = demo.run_demo(args.out, seed=args.seed, progress=lambda desc, total: progress_bar(total, desc, disable=args.quiet))
    print(f"report    {report}")


if __name__ == "__main__":
    raise SystemExit(main())
