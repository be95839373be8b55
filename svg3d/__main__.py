"""``python -m svg3d``: the end-to-end commands.

    python -m svg3d convert INPUT -o OUT [options]    a video file or a frames folder -> 3D videos in OUT
    python -m svg3d convert --prompt TEXT -o OUT      text -> video (zeroscope) -> 3D, the prompt driving the fill
    python -m svg3d demo [--out results/demo]         render scenes, convert them, score them against the truth
    python -m svg3d batch INPUT_DIR -o OUT [options]  every video of a folder, in-process or on Ray (docs/batch.md)
    python -m svg3d ui [--jobs-dir DIR] [--port N]    the web UI (Gradio) on http://127.0.0.1:7860 (docs/ui.md)

``convert`` runs every stage in ``OUT/work``, chunk by chunk (resumable: run the same command again after a
crash or Ctrl-C). Defaults come from ``svg3d.config``; see ``svg3d.convert``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from svg3d import camera
from svg3d.config import (
    BORDER_CHOICES,
    DEPTH_RANGE_CHOICES,
    FILLER_CHOICES,
    FLOW_CHOICES,
    UNET_KINDS,
    ClipConfig,
    ConvertConfig,
    DepthConfig,
    DiffusionConfig,
    FillConfig,
    default,
)
from svg3d.encode import EncoderSettings
from svg3d.stages.export import ANAGLYPHS, EXPORTS, NAMINGS, ExportSettings
from svg3d.ui import DEFAULT_JOBS_DIR, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT

# convert's flag for each library parameter whose name differs from --param-name (InputError.params)
FLAGS = {
    "input": "INPUT",
    "output": "-o",
    "size": "--width/--height",
    "max_baseline": "--baseline",
    "nearest_depth": "--near",
    "farest_depth": "--far",
    "model": "--depth-model",
    "model_path": "--video-model",
    "depth_batch_size": "--depth-batch-size",
}
PHYSICAL = ("baseline", "focal", "near", "far", "metric_depth")  # flags that choose the physical camera


def _size(text: str) -> tuple[int, int]:
    """``WxH`` -> (H, W)."""
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 576x320") from None
    return h, w


def add_convert_args(c: argparse.ArgumentParser) -> None:
    """The convert flags (also the web UI's and batch's): defaults and choices from ``svg3d.config``."""
    conv = ConvertConfig
    c.add_argument("--work-dir", type=Path, default=None, help="folder for the stages' files (default: OUTPUT/work)")
    clip = c.add_argument_group("clip")
    clip.add_argument("--start-frame", type=int, default=default(ClipConfig, "start_frame"), help="first frame to convert (default: 0)")
    clip.add_argument("--num-frames", type=int, default=None, help="frames to convert (default: to the end)")
    clip.add_argument("--width", type=int, default=None, help="resize to this width, with --height (default: keep the input's size)")
    clip.add_argument("--height", type=int, default=None, help="resize to this height, with --width")

    d = c.add_argument_group("depth")
    d.add_argument("--depth-from", type=Path, default=None, help="folder with one depth map per frame (.npy/.png/.pfm) instead of the depth model")
    d.add_argument("--depth-model", default=None, help=f"depth checkpoint, hub id or folder (default: {default(DepthConfig, 'model')})")
    d.add_argument("--depth-resolution", type=int, default=default(DepthConfig, "resolution"), help="short side depth is kept at, px (default: %(default)s)")
    d.add_argument("--stabilise", action=argparse.BooleanOptionalAction, default=True, help="temporal depth stabilisation (default: on)")
    d.add_argument("--flow", choices=FLOW_CHOICES, default=default(conv, "flow"), help="optical flow for stabilisation; auto: RAFT if its weights are here, else OpenCV DIS (default: %(default)s)")

    g = c.add_argument_group("3D effect", "the strength and the screen plane; or the physical camera (--baseline, --focal, --near, --far, --metric-depth)")
    g.add_argument("--strength", type=float, default=None, help=f"disparity between the nearest and the farthest point, %% of the width (default: {camera.DEFAULT_STRENGTH})")
    g.add_argument("--convergence", type=float, default=None, help=f"the screen plane in the depth range: 0 far (all in front) .. 1 near (all behind) (default: {camera.DEFAULT_CONVERGENCE}; with the physical camera: at infinity)")
    g.add_argument("--depth-range", choices=DEPTH_RANGE_CHOICES, default=None, help="normalise depth per shot, or over the whole clip as the paper (default: shot)")
    g.add_argument("--baseline", type=float, default=None, help=f"physical camera: metres between the eyes (paper: {camera.DEFAULT_BASELINE})")
    g.add_argument("--focal", type=float, default=None, help="physical camera: focal length, pixels (default: 800 at 576 px wide, scaled with the width)")
    g.add_argument("--near", type=float, default=None, help="physical camera: metres of the nearest point (default: ~0.91)")
    g.add_argument("--far", type=float, default=None, help=f"physical camera: metres of the farthest point (default: {camera.DEFAULT_FAREST_DEPTH})")
    g.add_argument("--metric-depth", action="store_true", help="physical camera: the depth maps hold inverse metric depth (1/m)")

    v = c.add_argument_group("views")
    v.add_argument("--num-views", type=int, default=None, help="views of the frame matrix (default: 8 for diffusion or all-view exports, else the eyes)")
    v.add_argument("--layout", choices=[x.value for x in camera.Layout], default=camera.Layout.LEFT2RIGHT.value, help="the input is the left eye, the right eye, or between the eyes (default: %(default)s)")

    f = c.add_argument_group("hole filling")
    f.add_argument("--fill", choices=FILLER_CHOICES, default=default(conv, "filler"), help="auto: diffusion when zeroscope and CUDA are here, else classical (no weights); telea: OpenCV's inpainting (default: %(default)s)")
    f.add_argument("--border", choices=BORDER_CHOICES, default=default(FillConfig, "border"), help="the out-of-view band at the frame edge (classical): mirror the edge content, stretch it, a black floating window, or inpaint (default: %(default)s)")
    f.add_argument("--video-model", default=default(DiffusionConfig, "model"), help="zeroscope for diffusion: hub id or local folder (default: %(default)s)")
    f.add_argument("--prompt", default=default(DiffusionConfig, "prompt"), help="text describing the video (diffusion); without INPUT, the video is generated from it")
    f.add_argument("--steps", type=int, default=default(DiffusionConfig, "steps"), help="denoising steps (default: %(default)s)")
    f.add_argument("--seed", type=int, default=default(DiffusionConfig, "seed"), help="random seed (default: %(default)s)")
    f.add_argument("--window", type=int, default=default(DiffusionConfig, "window"), help="frames denoised together; longer clips go in sliding windows (default: %(default)s)")
    f.add_argument("--overlap", type=int, default=None, help="frames each window continues from the previous one (default: 4, at most --window - 1)")
    f.add_argument("--diffusion-size", type=_size, default=None, help="WxH the matrix is denoised at; holes get the upsampled result (default: 576x320)")
    f.add_argument("--offload", action="store_true", help="keep the idle text encoder and VAE on the CPU to save GPU memory")
    f.add_argument("--max-unet-frames", type=int, default=default(DiffusionConfig, "max_unet_frames"), help="latent frames per UNet call, CFG pair counted; lower saves GPU memory (default: %(default)s)")
    f.add_argument("--vae-frames", type=int, default=default(DiffusionConfig, "vae_frames"), help="frames per VAE call; lower saves GPU memory (default: %(default)s)")
    f.add_argument("--unet", choices=UNET_KINDS, default=default(DiffusionConfig, "unet"), help="the UNet forward: diffusers' UNet3D, or ours (svg3d.unet3d: the same numbers, channels-last) (default: %(default)s)")
    f.add_argument("--compile", action="store_true", help="torch.compile: diffusers' blocks, or with --unet ours its repeated blocks with each UNet call replayed as a CUDA graph, cached per machine in ~/.cache/svg3d/compile; pays off over many windows")

    o = c.add_argument_group("outputs", f"exports: {', '.join(EXPORTS)} (docs/exports.md)")
    o.add_argument("--exports", default=",".join(default(ExportSettings, "exports")), help="comma-separated export names, or all (default: %(default)s)")
    o.add_argument("--naming", choices=NAMINGS, default=default(ExportSettings, "naming"), help="file-name suffixes: ours, or iw3's for players set up for iw3 (default: %(default)s)")
    o.add_argument("--anaglyph", choices=tuple(ANAGLYPHS), default=default(ExportSettings, "anaglyph"), help="anaglyph kind (default: %(default)s)")
    o.add_argument("--vr180", action="store_true", help="also write a VR180 export (each eye as a 180-degree equirectangular image, with the metadata headsets read)")
    o.add_argument("--vr180-fov", type=float, default=None, help="the input's horizontal field of view, degrees, for VR180 (default: from the focal length)")
    o.add_argument("--vr180-size", type=int, default=None, help="VR180 pixels per eye side (default: the input's resolution at its centre, at most 2048)")
    o.add_argument("--codec", default=default(EncoderSettings, "codec"), help="video codec of every export, any encoder of the bundled FFmpeg (default: %(default)s)")
    o.add_argument("--crf", type=int, default=default(EncoderSettings, "crf"), help="constant quality, lower = better (default: %(default)s)")
    o.add_argument("--preset", default=default(EncoderSettings, "preset"), help="encoder speed/size preset (default: %(default)s)")
    o.add_argument("--pix-fmt", default=default(EncoderSettings, "pix_fmt"), help="pixel format: yuv420p, yuv444p, yuv420p10le, ... (default: %(default)s)")
    o.add_argument("--container", choices=("mp4", "mkv"), default=default(EncoderSettings, "container"), help="container of the videos (default: %(default)s)")
    o.add_argument("--preview", action=argparse.BooleanOptionalAction, default=default(ExportSettings, "preview"), help="write <name>_preview.png, the first stereo pair (default: on)")

    r = c.add_argument_group("run")
    r.add_argument("--chunk-frames", type=int, default=default(conv, "chunk_frames"), help="frames per chunk of every stage: memory is bounded by it (default: %(default)s)")
    r.add_argument("--clean-work", action="store_true", help="after the exports, delete the stages' bulky files (a later run recomputes what it needs)")
    r.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N (default: auto)")
    r.add_argument("--quiet", action="store_true", help="no progress bars; warnings and errors only")
    r.add_argument("--progress-log", type=Path, default=None, help="also append progress as JSON lines to this file (for programs watching the run)")


def add_batch_args(b: argparse.ArgumentParser) -> None:
    """batch's own flags, then every convert flag (defaults from ``svg3d.batch.BatchSettings``)."""
    from svg3d.batch import BatchSettings

    b.add_argument("input", type=Path, help="folder of videos and frames folders")
    b.add_argument("-o", "--output", type=Path, required=True, help="output folder: each input's exports go to OUTPUT/<its relative path>/")
    b.add_argument("-r", "--recursive", action="store_true", help="also the videos in the sub-folders")
    b.add_argument("--skip-error", action="store_true", help="go on after an input fails (the summary lists it; the exit status is still 1)")
    b.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                   help="run on Ray: auto (this machine's cluster, else a new local one) or a cluster's address (default: in this process)")  # fmt: skip
    b.add_argument("--segment-frames", type=int, default=default(BatchSettings, "segment_frames"),
                   help="split a video of at least twice this many frames at scene cuts into segments of at least this many, converted in parallel; 0: never (default: %(default)s)")  # fmt: skip
    b.add_argument("--unit-cpus", type=float, default=default(BatchSettings, "unit_cpus"), help="Ray: CPUs of one worker (default: %(default)s)")
    b.add_argument("--unit-gpus", type=float, default=None, help="Ray: GPUs of one worker (default: 1 on a cluster with GPUs, else 0)")
    b.add_argument("--retries", type=int, default=default(BatchSettings, "retries"), help="Ray: restarts of a worker that dies, its unit retried (default: %(default)s)")
    add_convert_args(b)
    batch_help = {
        "work_dir": "root of the inputs' work folders: W/<relative path>/ (default: OUTPUT/<relative path>/work)",
        "depth_from": "folder with one folder of depth maps per input, at the input's relative path without suffix",
    }
    for action in b._actions:
        action.help = batch_help.get(action.dest, action.help)


def create_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m svg3d", description="Stereoscopic 3D video from a monocular video (SVG).")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="convert a video (or a folder of frames, or a prompt) to 3D")
    c.add_argument("input", type=Path, nargs="?", default=None, help="video file, or folder of frames (or a clip folder with images/); omit with --prompt to generate the video")
    c.add_argument("-o", "--output", type=Path, required=True, help="output folder for the 3D videos")
    add_convert_args(c)

    b = sub.add_parser("batch", help="convert every video and frames folder of a folder, in this process or on a Ray cluster")
    add_batch_args(b)

    m = sub.add_parser("demo", help="render scenes, convert them with no downloads, and score them against the truth")
    m.add_argument("--out", type=Path, default=Path("results/demo"), help="output folder (default: %(default)s)")
    m.add_argument("--seed", type=int, default=0, help="scene seed (default: %(default)s)")
    m.add_argument("--quiet", action="store_true", help="no progress bars; warnings and errors only")

    u = sub.add_parser("ui", help="the web UI: convert videos from a browser, as jobs in a jobs folder")
    u.add_argument("--jobs-dir", type=Path, default=DEFAULT_JOBS_DIR, help="folder of the jobs: uploads, outputs, work folders (default: %(default)s)")
    u.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 serves every interface (default: %(default)s, this machine only)")
    u.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")
    u.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help="largest upload accepted, MB; larger ones are refused as they arrive (default: %(default)s)")
    u.add_argument("--quiet", action="store_true", help="warnings and errors only")
    return p


def main(argv: list[str] | None = None) -> int:
    args = create_parser().parse_args(argv)
    from svg3d.cli import run_cli, setup_logging

    setup_logging(quiet=args.quiet)
    if args.command == "batch":
        status = [0]
        code = run_cli(lambda: status.__setitem__(0, _batch(args)), flags=FLAGS)
        return code or status[0]
    commands = {"convert": _convert, "demo": _demo, "ui": _ui}
    return run_cli(lambda: commands[args.command](args), flags=FLAGS)


def config_from_args(args: argparse.Namespace) -> ConvertConfig:
    """The ``ConvertConfig`` the flags describe; cross-checks flags (one place) before anything is read."""
    from dataclasses import replace

    from svg3d.stages import export
    from svg3d.checks import InputError
    from svg3d.config import StabiliseConfig

    if (args.width is None) != (args.height is None):
        raise InputError("--width and --height go together")
    if args.depth_from is not None and args.depth_model is not None:
        raise InputError("--depth-from and --depth-model both choose where depth comes from; give one")
    physical = [f"--{name.replace('_', '-')}" for name in PHYSICAL if getattr(args, name) not in (None, False)]
    if physical and args.strength is not None:
        raise InputError(f"--strength and {physical[0]} both set the 3D effect; give the strength or the physical camera")
    base = ConvertConfig()
    matrix = replace(
        base.matrix,
        num_views=args.num_views,
        layout=camera.Layout(args.layout),
        strength=None if physical else (args.strength if args.strength is not None else base.matrix.strength),
        convergence=args.convergence if args.convergence is not None else (None if physical else base.matrix.convergence),
        depth_range=args.depth_range or base.matrix.depth_range,
        max_baseline=args.baseline if args.baseline is not None else base.matrix.max_baseline,
        focal=args.focal,
        nearest_depth=args.near if args.near is not None else base.matrix.nearest_depth,
        farest_depth=args.far if args.far is not None else base.matrix.farest_depth,
        metric_depth=args.metric_depth,
    )
    diffusion = DiffusionConfig(
        model=args.video_model, prompt=args.prompt, steps=args.steps, seed=args.seed, window=args.window, overlap=args.overlap,
        size=args.diffusion_size or default(DiffusionConfig, "size"), offload=args.offload, max_unet_frames=args.max_unet_frames,
        vae_frames=args.vae_frames, compile=args.compile, unet=args.unet,
    )  # fmt: skip
    return ConvertConfig(
        clip=ClipConfig(start_frame=args.start_frame, num_frames=args.num_frames, size=None if args.width is None else (args.height, args.width)),
        depth=DepthConfig(model=args.depth_model or default(DepthConfig, "model"), depth_from=args.depth_from, resolution=args.depth_resolution),
        stabilise=StabiliseConfig() if args.stabilise else None,
        flow=args.flow,
        matrix=matrix,
        filler=args.fill,
        classical=FillConfig(border=args.border),
        diffusion=diffusion,
        exports=ExportSettings(
            exports=tuple(dict.fromkeys([*export.parse_exports(args.exports), *(["vr180"] if args.vr180 else [])])),
            encoder=EncoderSettings(codec=args.codec, crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt, container=args.container),
            naming=args.naming, anaglyph=args.anaglyph, vr180_fov=args.vr180_fov, vr180_size=args.vr180_size, preview=args.preview,
        ),
        chunk_frames=args.chunk_frames,
        clean_work=args.clean_work,
    )


def _convert(args: argparse.Namespace) -> None:
    from svg3d import convert, work
    from svg3d.checks import InputError
    from svg3d.cli import ProgressLog, both, progress_bar, resolve_device, setup_logging

    config = config_from_args(args)  # flags first: a bad flag fails before anything is read
    if args.input is None and not args.prompt:
        raise InputError("give an INPUT video or frames folder, or --prompt TEXT to generate the video")
    device = resolve_device(args.device)
    work_dir = args.work_dir if args.work_dir is not None else work.default_work_dir(args.output)
    work.check_paths(args.input, args.output, work_dir, config.depth.depth_from)
    work.make_dirs(args.output, work_dir)
    setup_logging(quiet=args.quiet, log_file=work_dir / work.LOG_FILE)
    progress = lambda desc, total, initial=0: progress_bar(total, desc, initial=initial, disable=args.quiet)  # noqa: E731
    if args.progress_log is not None:
        progress = both(progress, ProgressLog(args.progress_log))
    result = convert.convert(args.input, args.output, config, work_dir=work_dir, device=device, progress=progress)
    for name, path in result.exports.items():
        print(f"{name:9s} {path}")


def _batch(args: argparse.Namespace) -> int:
    """The batch, its summary table on stdout; 1 when any input failed (or was not run after a failure)."""
    from svg3d import batch, work
    from svg3d.cli import ProgressLog, both, progress_bar, resolve_device, setup_logging

    config = config_from_args(args)
    settings = batch.BatchSettings(
        recursive=args.recursive, skip_error=args.skip_error, segment_frames=args.segment_frames, ray=args.ray,
        unit_cpus=args.unit_cpus, unit_gpus=args.unit_gpus, retries=args.retries, work_root=args.work_dir,
    )  # fmt: skip
    device = args.device if args.ray else str(resolve_device(args.device))  # in-process: a bad --device fails now
    work.check_paths(None, args.output, args.work_dir or args.output)
    work.make_dirs(args.output)
    setup_logging(quiet=args.quiet, log_file=args.output / "batch.log")
    progress = lambda desc, total, initial=0: progress_bar(total, desc, initial=initial, disable=args.quiet)  # noqa: E731
    if args.progress_log is not None:
        progress = both(progress, ProgressLog(args.progress_log))
    report = batch.run_batch(args.input, args.output, config, settings=settings, device=device, progress=progress)
    print(report.table(FLAGS))
    return 0 if report.ok else 1


def _demo(args: argparse.Namespace) -> None:
    from svg3d import demo
    from svg3d.cli import progress_bar

    report = demo.run_demo(args.out, seed=args.seed, progress=lambda desc, total, initial=0: progress_bar(total, desc, initial=initial, disable=args.quiet))
    print(f"report    {report}")


def _ui(args: argparse.Namespace) -> None:
    from svg3d import ui

    if not 0 <= args.port <= 65535:
        from svg3d.checks import InputError

        raise InputError(f"--port {args.port}: must be in 0..65535")
    ui.serve(args.jobs_dir, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, block=True)


if __name__ == "__main__":
    raise SystemExit(main())
