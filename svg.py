"""Stage 4: denoise a frame matrix into a stereoscopic (or multi-view) video; the seed's ``svg.py``.

    python svg.py --prompt 'Obama is speaking' --init_image ./Videos/frame_matrix/Obama_is_speaking \\
        --output_root ./results/Obama_is_speaking/ --num_frames 16 --width 576 --height 320 --latent_w 72 --latent_h 40
    # multi-view: add --frame_matrix_end 0 --fix_last_view_begin 600

Every frame of the matrix is converted (``--total_frames N`` for the first N): clips longer than
``--num_frames`` go in sliding windows of that length, each continuing ``--overlap`` frames of the
previous one: the window loop of ``convert --fill diffusion`` (``svg3d.stages.fill.diffusion.denoise_into``),
reading the matrix window by window. Frames of any size work: sides that are not multiples
of 8 are padded for the model and cropped back.

Writes into ``--output_root`` (default ``results/<matrix folder name>/``): ``view{v:03d}_{t:05d}.jpg`` for
each output view (view 0 and the last view; every view in multi-view mode), ``results3d.mp4`` (side by
side, left | right), ``results3d.gif`` and ``manifest.json`` (settings, model, seed, UNet work).

Stage 0 (text to video): without ``--init_image``, the same model generates the monocular clip of
``--prompt`` into ``Videos/<clip>/images/``, ready for the depth stage.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from svg3d.cli import add_device_flag, progress_bar, resolve_device, run_cli, setup_logging
from svg3d.config import UNET_KINDS, ZEROSCOPE, DenoiseConfig, DiffusionConfig, default

log = logging.getLogger("svg3d.svg")


T2V_SIZE = default(DiffusionConfig, "size")  # zeroscope_v2_576w's native (height, width)


def create_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Stereoscopic / multi-view video by denoising a frame matrix (SVG).")
    io = p.add_argument_group("input and output")
    io.add_argument("--prompt", required=True, help="text prompt describing the video")
    io.add_argument(
        "--init_image", default=None, help="frame-matrix folder (create_frame_matrix.py); omit for text-to-video"
    )
    io.add_argument("--output_root", default=None, help="output folder (default: results/<frame-matrix folder name>/)")
    io.add_argument(
        "--videos_root",
        default="Videos",
        help="text-to-video only: where Videos/<clip>/images/ goes (default: %(default)s)",
    )
    io.add_argument(
        "--clip_name", default=None, help="text-to-video only: the clip folder name (default: from the prompt and size)"
    )
    io.add_argument(
        "--num_frames",
        type=int,
        default=16,
        help="frames denoised together: the sliding window (text-to-video: the clip) (default: %(default)s)",
    )
    io.add_argument(
        "--total_frames",
        type=int,
        default=-1,
        help="frames of the matrix to convert, in windows of --num_frames; -1 = all (default: %(default)s)",
    )
    io.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="frames each window continues from the previous one (default: 4, at most --num_frames - 1)",
    )
    io.add_argument(
        "--num_views", type=int, default=None, help="views of the frame matrix; must match it (default: as on disk)"
    )
    io.add_argument(
        "--width",
        type=int,
        default=None,
        help="frame width, padded to a multiple of 8 inside (default: the frame "
        f"matrix's; {T2V_SIZE[1]} for text-to-video); given with a matrix, it must be the matrix's",
    )
    io.add_argument(
        "--height",
        type=int,
        default=None,
        help=f"frame height (default: the matrix's; {T2V_SIZE[0]} for text-to-video)",
    )
    io.add_argument("--latent_w", type=int, default=None, help="accepted for compatibility: must be ceil(width / 8)")
    io.add_argument("--latent_h", type=int, default=None, help="accepted for compatibility: must be ceil(height / 8)")
    io.add_argument("--downscale", type=int, default=8, help="accepted for compatibility: must be the VAE's factor (8)")

    layout = p.add_argument_group("views").add_mutually_exclusive_group()
    layout.add_argument("--left2right", action="store_true", help="the input is the left eye (view 0)")
    layout.add_argument("--right2left", action="store_true", help="the input is the right eye (view 0)")
    layout.add_argument(
        "--middle2leftright", action="store_true", help="the input is the middle view; both eyes are generated"
    )
    views = p.add_argument_group("views (continued)")
    views.add_argument("--last_view_idx", type=int, default=None, help="the other eye's view (default: num_views - 1)")
    views.add_argument(
        "--monocular_video_idx",
        type=int,
        default=None,
        help="accepted for compatibility: must be the input view of the layout",
    )

    model = p.add_argument_group("model")
    model.add_argument(
        "--model_path",
        default=ZEROSCOPE,
        help="zeroscope: hub id or local folder (default: %(default)s)",
    )
    model.add_argument(
        "--vae",
        choices=["model", "svd"],
        default="model",
        help="decode with the model's VAE or SVD-XT's temporal decoder (default: %(default)s)",
    )
    model.add_argument(
        "--svd_path",
        default="stabilityai/stable-video-diffusion-img2vid-xt",
        help="with --vae svd: hub id or local folder holding vae/",
    )
    add_device_flag(model)

    d = p.add_argument_group("denoising (defaults: the reference's)")
    d.add_argument("--num_inference_steps", type=int, default=default(DenoiseConfig, "num_inference_steps"), help="DDPM steps (default: %(default)s)")
    d.add_argument(
        "--guidance_scale", type=float, default=default(DenoiseConfig, "guidance_scale"), help="classifier-free guidance scale (default: %(default)s)"
    )
    d.add_argument(
        "--negative_prompt",
        default=default(DenoiseConfig, "negative_prompt"),
        help="CFG's unconditional prompt (default: %(default)r)",
    )
    d.add_argument(
        "--threshold",
        type=float,
        default=default(DenoiseConfig, "threshold"),
        help="a latent cell is known if this share of its pixels is (default: %(default)s)",
    )
    d.add_argument(
        "--erode_size",
        type=int,
        default=default(DenoiseConfig, "erode_size"),
        help="erode the known-mask by this odd square first; 1 = off (default: %(default)s)",
    )
    d.add_argument(
        "--soft_mask_k",
        type=int,
        default=default(DenoiseConfig, "soft_mask_k"),
        help="odd kernel size of the soft latent mask; 1 = hard (default: %(default)s)",
    )
    d.add_argument(
        "--soft_mask_type",
        choices=["gaussian", "box"],
        default=default(DenoiseConfig, "soft_mask_type"),
        help="soft-mask kernel (default: %(default)s)",
    )
    d.add_argument(
        "--resample",
        type=int,
        default=default(DenoiseConfig, "resample"),
        help="resampling passes per step while t > frame_matrix_end; 0 = none (default: %(default)s)",
    )
    d.add_argument(
        "--frame_matrix_end",
        type=int,
        default=default(DenoiseConfig, "frame_matrix_end"),
        help="below this t only the eye view(s) are denoised; <= 0: multi-view (default: %(default)s)",
    )
    d.add_argument(
        "--last_view_resample",
        type=int,
        default=default(DenoiseConfig, "last_view_resample"),
        help="resampling passes on the eye view(s) later on (default: %(default)s)",
    )
    d.add_argument(
        "--fix_last_view_begin",
        type=int,
        default=default(DenoiseConfig, "fix_last_view_begin"),
        help="multi-view: stage 2 (last view held fixed) from this t (default: %(default)s)",
    )
    d.add_argument(
        "--stage2_resample",
        type=int,
        default=default(DenoiseConfig, "stage2_resample"),
        help="multi-view: stage-2 resampling passes per step (default: %(default)s)",
    )
    d.add_argument(
        "--stage2_time_direction_denoise_freq",
        type=int,
        default=default(DenoiseConfig, "stage2_time_freq"),
        help="multi-view: every n-th stage-2 pass is temporal (default: %(default)s)",
    )
    d.add_argument(
        "--update_source_latent",
        action=argparse.BooleanOptionalAction,
        default=default(DenoiseConfig, "update_source_latent"),
        help="disocclusion boundary re-injection (default: on)",
    )
    d.add_argument(
        "--update_source_latent_end", type=int, default=default(DenoiseConfig, "update_source_latent_end"), help="re-inject while t > this (default: %(default)s)"
    )
    d.add_argument("--seed", type=int, default=default(DenoiseConfig, "seed"), help="random seed (default: %(default)s)")
    d.add_argument(
        "--batch_size",
        type=int,
        default=1,
        help="videos to generate, with seeds seed, seed+1, ... (default: %(default)s)",
    )

    mem = p.add_argument_group("memory")
    mem.add_argument(
        "--max_unet_frames",
        type=int,
        default=default(DenoiseConfig, "max_unet_frames"),
        help="latent frames per UNet call, CFG pair counted; lower to save memory (default: %(default)s)",
    )
    mem.add_argument("--low_ram_vae", type=int, default=0, help=f"frames per VAE call; 0 = {default(DenoiseConfig, 'max_vae_frames')} (default: %(default)s)")
    mem.add_argument(
        "--offload",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="keep the idle text encoder and VAE on the CPU (default: off)",
    )
    p.add_argument(
        "--unet",
        choices=UNET_KINDS,
        default=default(DenoiseConfig, "unet"),
        help="the UNet forward: diffusers (its UNet3D) or ours (svg3d.unet3d: the same numbers, channels-last) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile for speed, cached on disk: with --unet diffusers its UNet's and VAE's blocks (~10%% "
        "faster steps after minutes of compiling); with --unet ours its repeated blocks, each UNet call replayed "
        "as a CUDA graph, and the VAE, kept in ~/.cache/svg3d/compile so a machine compiles once",
    )
    p.add_argument(
        "--gpus",
        type=int,
        default=1,
        help="split each clip across this many GPUs of the machine (one process each); or start svg.py "
        "with torchrun --nproc-per-node N (default: %(default)s)",
    )
    p.add_argument("--quiet", action="store_true", help="warnings and errors only")
    return p


def main(argv: list[str] | None = None) -> int:
    args = create_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)
    return run_cli(lambda: _run(args), FLAGS, underscores=True)


def _config(args: argparse.Namespace, seed: int) -> DenoiseConfig:
    return DenoiseConfig(
        num_inference_steps=args.num_inference_steps,
        guidance_scale=args.guidance_scale,
        negative_prompt=args.negative_prompt,
        threshold=args.threshold,
        erode_size=args.erode_size,
        soft_mask_k=args.soft_mask_k,
        soft_mask_type=args.soft_mask_type,
        resample=args.resample,
        frame_matrix_end=args.frame_matrix_end,
        last_view_resample=args.last_view_resample,
        fix_last_view_begin=args.fix_last_view_begin,
        stage2_resample=args.stage2_resample,
        stage2_time_freq=args.stage2_time_direction_denoise_freq,
        update_source_latent=args.update_source_latent,
        update_source_latent_end=args.update_source_latent_end,
        last_view_idx=args.last_view_idx,
        seed=seed,
        max_unet_frames=args.max_unet_frames,
        max_vae_frames=args.low_ram_vae if args.low_ram_vae > 0 else default(DenoiseConfig, "max_vae_frames"),
        offload=args.offload,
        unet=args.unet,
    )


# svg.py's flags for the DenoiseConfig fields whose names differ (InputError.params)
FLAGS = {"stage2_time_freq": "--stage2_time_direction_denoise_freq", "max_vae_frames": "--low_ram_vae"}


def _check_sizes(args: argparse.Namespace) -> None:
    """Sizes and lengths; --latent_w/h (derivable: sides are padded to multiples of 8) must agree with them.

    Called again once --width/--height default to the frame matrix's size (None until then).
    """
    from svg3d.checks import InputError

    f = args.downscale
    for flag, value in (("--width", args.width), ("--height", args.height), ("--num_frames", args.num_frames)):
        if value is not None and value < 1:
            raise InputError(f"{flag} {value}: must be >= 1")
    for flag, value, size in (("--latent_w", args.latent_w, args.width), ("--latent_h", args.latent_h, args.height)):
        if value is not None and size is not None and value != -(-size // f):
            raise InputError(
                f"{flag} {value} does not match ceil({size} / {f}) = {-(-size // f)}; leave it out, it is derived"
            )
    if args.total_frames == 0 or args.total_frames < -1:
        raise InputError(f"--total_frames {args.total_frames}: must be >= 1, or -1 for all frames")
    if args.overlap is not None and not 0 <= args.overlap < args.num_frames:
        raise InputError(f"--overlap {args.overlap}: must be >= 0 and smaller than --num_frames {args.num_frames}")
    if args.batch_size < 1:
        raise InputError(f"--batch_size {args.batch_size}: must be >= 1")
    if args.low_ram_vae < 0:
        raise InputError(f"--low_ram_vae {args.low_ram_vae}: must be >= 0 (0: {default(DenoiseConfig, 'max_vae_frames')} frames per VAE call)")
    if args.gpus < 1:
        raise InputError(f"--gpus {args.gpus}: must be >= 1")


def _layout_flag(args: argparse.Namespace) -> str | None:
    for name in ("left2right", "right2left", "middle2leftright"):
        if getattr(args, name):
            return name
    return None


def _run(args: argparse.Namespace) -> None:
    from svg3d import distributed
    from svg3d.checks import InputError

    _check_sizes(args)
    _config(args, args.seed)  # bad settings fail before anything heavy happens
    if args.init_image is None:
        if args.gpus > 1 or distributed.launched():
            raise InputError("--gpus / torchrun: only for denoising a frame matrix (--init_image)")
        _text_to_video(args)
    elif args.gpus > 1:  # one process per GPU (gloo processes with --device cpu)
        device = resolve_device(args.device)
        if device.type == "cuda" and args.gpus > _cuda_count():
            raise InputError(f"--gpus {args.gpus}: this machine has {_cuda_count()} CUDA device(s)")
        distributed.spawn(_stereo_on_rank, args.gpus, (args,), device_type=device.type)
    elif distributed.launched():  # started by torchrun
        _stereo_on_rank(*distributed.init_from_env(resolve_device(args.device).type), args)
    else:
        _stereo(args)


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count()


def _stereo_on_rank(workers, device, args: argparse.Namespace) -> None:
    """One process of a split run: the same denoising as every other rank; rank 0 writes the results."""
    if workers.rank > 0:
        args.quiet = True
    setup_logging(quiet=args.quiet)
    _stereo(args, workers, device)


def _load_model(args: argparse.Namespace, device=None):
    from svg3d.checks import InputError
    from svg3d.stages.fill.diffusion import load_model

    device = resolve_device(args.device) if device is None else device
    unet = _config(args, args.seed).unet
    model = load_model(args.model_path, device, compile=args.compile, unet=unet, flag="model_path", vae=args.vae, svd_path=args.svd_path)
    if model.vae_scale_factor != args.downscale:
        raise InputError(f"--downscale {args.downscale}: the model's VAE downscales by {model.vae_scale_factor}")
    timesteps = model.scheduler.config.num_train_timesteps
    if args.num_inference_steps > timesteps:
        raise InputError(f"--num_inference_steps {args.num_inference_steps}: the model's scheduler has {timesteps} timesteps")
    return model


def _stereo(args: argparse.Namespace, workers=None, device=None) -> None:
    from dataclasses import asdict

    from svg3d import __version__, camera, work
    from svg3d.checks import InputError
    from svg3d.denoise import LOCAL, default_overlap, output_views, target_views, window_starts
    from svg3d.stages import matrix
    from svg3d.stages.fill.diffusion import ResultsFolder, denoise_into

    folder = Path(args.init_image)
    total = None if args.total_frames == -1 else args.total_frames
    fm = matrix.MatrixFolder(folder, num_views=args.num_views, num_frames=total)
    info = fm.info
    given = (args.height or info.height, args.width or info.width)
    if (info.height, info.width) != given:
        raise InputError(
            f"{folder}: the frame matrix is {info.width}x{info.height}, but --width/--height are {given[1]}x{given[0]}"
        )
    args.height, args.width = info.height, info.width
    _check_sizes(args)
    layout = _layout_flag(args)
    if layout is None:
        layout = info.layout
    elif (folder / matrix.MANIFEST).is_file() and layout != info.layout:
        raise InputError(f"{folder}: the frame matrix was made {info.layout}, but --{layout} was given")
    v_count = info.num_views
    ref = camera.reference_view(v_count, layout)
    if args.monocular_video_idx is not None and args.monocular_video_idx != ref:
        raise InputError(
            f"--monocular_video_idx {args.monocular_video_idx}: the input view of a {v_count}-view {layout} matrix is {ref}"
        )
    try:
        last = target_views(v_count, layout, args.last_view_idx)[-1]
    except ValueError as e:
        raise InputError(str(e)) from None
    left, right = (last, 0) if layout == camera.Layout.RIGHT2LEFT.value else (0, last)

    workers = LOCAL if workers is None else workers
    root = Path(args.output_root) if args.output_root else Path("results") / folder.name
    work.check_writable("output_root", root)  # before the model loads and the matrix is denoised
    model = _load_model(args, device)
    overlap = default_overlap(args.num_frames) if args.overlap is None else args.overlap
    windows = len(window_starts(info.num_frames, args.num_frames, overlap))
    for k in range(args.batch_size):
        seed = args.seed + k
        config = _config(args, seed)
        views = output_views(v_count, config)
        out = ResultsFolder(root if args.batch_size == 1 else root / f"seed{seed}", views, write=workers.rank == 0)  # rank 0 writes
        advance, close = progress_bar(config.num_inference_steps * windows, f"denoise {folder.name}", disable=args.quiet)
        try:
            stats = denoise_into(model, fm.read, out, args.prompt, config, num_frames=info.num_frames, num_views=v_count, window=args.num_frames,
                                 overlap=overlap, keep=views, layout=layout, workers=workers, steps=advance)  # fmt: skip
        finally:
            close()
        if workers.rank > 0:
            continue
        manifest = {
            "prompt": args.prompt, "frame_matrix": str(folder), "layout": layout, "eyes": [left, right], "views": sorted(views),
            "model": args.model_path, "vae": args.vae if args.vae == "model" else args.svd_path, "device": str(model.device),
            "dtype": str(model.dtype), "config": asdict(config), "frames": info.num_frames, "window": args.num_frames,
            "overlap": overlap, "unet_calls": stats.unet_calls, "unet_frame_evaluations": stats.unet_frames, "gpus": workers.world,
            "svg3d": __version__,
        }  # fmt: skip
        out.finish((left, right), info.fps, manifest)
        log.info("wrote %s (views %s, %d UNet calls)", out.folder, sorted(views), stats.unet_calls)


def _text_to_video(args: argparse.Namespace) -> None:
    import torch

    from svg3d import io, work
    from svg3d.denoise import text_to_video

    args.height, args.width = args.height or T2V_SIZE[0], args.width or T2V_SIZE[1]
    _check_sizes(args)
    # (the prompt's first 100 characters: a long prompt must not make a folder name over 255 bytes)
    name = args.clip_name or f"{re.sub(r'[^A-Za-z0-9]+', '_', args.prompt)[:100].strip('_')}_{args.height}x{args.width}"
    work.check_writable("videos_root", Path(args.videos_root) / name)
    model = _load_model(args)
    for k in range(args.batch_size):
        seed = args.seed + k
        clip = name if args.batch_size == 1 else f"{name}_seed{seed}"
        advance, close = progress_bar(args.num_inference_steps, f"text to video {clip}", disable=args.quiet)
        try:
            video = text_to_video(
                model,
                args.prompt,
                num_frames=args.num_frames,
                height=args.height,
                width=args.width,
                config=_config(args, seed),
                progress=advance,
            )
        finally:
            close()
        frames = (video.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()  # T H W 3
        out = Path(args.videos_root) / clip / "images"
        for t, frame in enumerate(frames):
            io.write_image(out / f"{t:05d}.jpg", frame)
        log.info(
            "wrote %s (%d frames); next: depth, stabilisation and create_frame_matrix.py on %s",
            out,
            len(frames),
            out.parent,
        )


if __name__ == "__main__":
    raise SystemExit(main())
