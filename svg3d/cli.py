"""The command line: every flag of ``python -m svg3d`` (derived from ``svg3d.config``), and what every entry point
shares (error reporting, logging, progress bars, devices).

A CLI module defines ``create_parser()`` and ``main(argv=None) -> int`` and ends with
``raise SystemExit(main())``. ``main`` wraps its work in ``run_cli`` so that an ``InputError``
becomes one line on stderr and exit status 2, never a traceback. Nothing here imports torch at module level:
``--help`` and a bad flag answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from . import camera, comfort, io
from .checks import InputError, gpu_out_of_memory
from .config import (
    BORDER_CHOICES,
    DEPTH_KINDS,
    DEPTH_RANGE_CHOICES,
    FILLER_CHOICES,
    FLOW_CHOICES,
    NAMINGS,
    UNET_KINDS,
    BatchSettings,
    ClipConfig,
    ConvertConfig,
    DepthConfig,
    DiffusionConfig,
    ExportSettings,
    FillConfig,
    MatrixConfig,
    UISettings,
    default,
)
from .encode import EncoderSettings
from .layouts import ANAGLYPHS, EXPORTS
from .threads import GPU_FILL_WORKERS, MAX_FILL_WORKERS

log = logging.getLogger("svg3d")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a user's ``kill``, the web UI's cancel), handled as Ctrl-C is: what is committed stays."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def run_cli(body: Callable[[], None], flags: dict[str, str] | None = None, *, underscores: bool = False) -> int:
    """Run ``body``; map ``InputError`` to ``error: ...`` + exit 2, the GPU running out of memory (``checks.gpu_out_of_memory``)
    to one such line + exit 1, Ctrl-C to exit 130 and SIGTERM to exit 143.

    ``flags``: this CLI's names for library parameters that differ from ``--param-name``
    (``InputError.flag_message``); ``underscores``: the CLI spells its flags ``--param_name`` (the seed
    scripts). The error is also logged, so that a log file records why a run ended.
    """
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        body()
    except InputError as e:
        message = e.flag_message(flags, underscores=underscores)
        log.debug("stopped: %s", message)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except OSError as e:  # the disk or the OS refused (full disk, read-only or vanished folder): no traceback
        where = e.filename if e.filename is not None else ""
        message = f"{where}: {e.strerror or e}" if where else str(e.strerror or e)
        log.debug("stopped: %s", message)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if (message := gpu_out_of_memory(e)) is None:
            raise
        log.debug("stopped: %s", message)
        print(f"error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        log.info("%s: finished chunks are kept", "terminated (SIGTERM)" if terminated else "interrupted (Ctrl-C)")
        print(f"{'terminated' if terminated else 'interrupted'}: finished outputs are kept; run the same command again to resume", file=sys.stderr)
        # Leave at once: stage threads may be mid-chunk in native code (torch, OpenCV, FFmpeg), which cannot be
        # stopped and aborts the interpreter's shutdown ("terminate called without an active exception"); every
        # chunk and output is committed atomically, so nothing is lost that a rerun would not redo.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(143 if terminated else 130)
    return 0


def setup_logging(*, quiet: bool = False, log_file: str | Path | None = None, held: bool = False) -> _LogFile | None:
    """INFO to stderr (WARNING with ``quiet``) and, optionally, DEBUG to ``log_file`` (returned).

    ``held``: the log file is written only once ``unhold()`` is called (a convert whose stages start); until then
    its records wait in memory, so that a run refused in its checks leaves no log file behind."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for h in list(root.handlers):
        root.removeHandler(h)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if quiet else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(console)
    fh = None
    if log_file is not None:
        if not held:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = _LogFile(log_file, delay=True)
        fh.held = [] if held else None
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(fh)
    for noisy in ("PIL", "matplotlib", "urllib3", "filelock", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return fh


class _LogFile(logging.FileHandler):
    """The log file; when it cannot be written (a full disk) it stops, quietly: logging's own handler would print
    a traceback per record, and the run's own writes report the cause in one line."""

    broken = False
    held: list | None = None  # records waiting for ``unhold`` (``setup_logging(held=True)``)

    def emit(self, record: logging.LogRecord) -> None:
        if self.held is not None:
            self.held.append(record)
        elif not self.broken:
            super().emit(record)

    def unhold(self) -> None:
        """Write the records held so far, and every later one, to the file. (Not ``release``: that is the handler
        lock's.)"""
        held, self.held = self.held or [], None
        for record in held:
            self.emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        self.broken = True
        with contextlib.suppress(OSError):
            self.close()


def progress_bar(total: int, desc: str, *, initial: int = 0, disable: bool = False) -> tuple[Callable[[int], None], Callable[[], None]]:
    """A tqdm bar as ``(advance(n), close())`` — the library takes ``advance`` as its progress callable.

    ``initial``: frames already done (a resumed stage), so that the rate and the ETA count this run's work only.
    """
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, desc=desc, disable=disable, leave=False, dynamic_ncols=True, unit="frame")
    return bar.update, bar.close


class StageBars:
    """Progress of a pipeline: a bar per stage named "k/n stage", and an overall bar whose ETA covers every stage.

    A progress factory (``progress(desc, total, initial) -> (advance, close)``); ``work.Runner`` calls ``plan`` with
    the stages it will run before it starts them, so that the overall bar knows all the work to come. Stages that
    overlap advance the overall bar together: its rate is the pipeline's.
    """

    def __init__(self, *, disable: bool = False) -> None:
        self.disable = disable
        self.order: list[str] = []
        self.overall = None

    def plan(self, stages: list[tuple[str, int, int]]) -> None:
        """``[(name, total, done), ...]``: the stages that will run, in order."""
        from tqdm import tqdm

        self.order = [name for name, _, _ in stages]
        total = sum(t for _, t, _ in stages)
        done = sum(d for _, _, d in stages)
        if self.overall is not None:
            self.overall.close()
        self.overall = tqdm(total=total, initial=done, desc=f"all {len(stages)} stages", disable=self.disable, leave=False,
                            dynamic_ncols=True, unit="frame", position=0)  # fmt: skip

    def __call__(self, desc: str, total: int, initial: int = 0):
        k = self.order.index(desc) + 1 if desc in self.order else None
        name = f"{k}/{len(self.order)} {desc}" if k is not None else desc
        advance, close = progress_bar(total, name, initial=initial, disable=self.disable)
        if self.overall is None:
            return advance, close
        overall = self.overall

        def both(n: int) -> None:
            advance(n)
            overall.update(n)

        def done() -> None:
            close()
            if desc == self.order[-1]:
                overall.close()

        return both, done


def resolve_device(name: str | None):
    """``--device`` to a ``torch.device``: ``auto``/None = CUDA when present, else CPU.

    Asking for CUDA on a machine without it is an ``InputError``, not a silent CPU fallback.
    """
    import torch

    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: no CUDA device on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise InputError(f"--device {name}: unsupported device type (use auto, cpu, cuda or cuda:N)")
    return device


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N")


class ProgressLog:
    """Progress as JSON lines appended to a file (``--progress-log``), for programs that watch a run (the web UI, batch).

    Each line: ``{"stage", "done", "total", "time"}`` (seconds since the epoch), written when a stage starts,
    at most every ``interval`` seconds while it runs, and when it ends. Used as a progress factory next to
    (or instead of) the tqdm bars: ``progress(desc, total, initial) -> (advance, close)``.
    """

    def __init__(self, path: str | Path, interval: float = 0.5) -> None:
        self.path, self.interval = Path(path), interval
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _write(self, stage: str, done: int, total: int) -> None:
        import json
        import time

        try:
            with open(self.path, "a") as f:
                f.write(json.dumps({"stage": stage, "done": done, "total": total, "time": round(time.time(), 3)}) + "\n")
        except OSError as e:  # (a full disk fails the write with no file name)
            raise OSError(e.errno, e.strerror or str(e), str(self.path)) from None

    def plan(self, stages: list[tuple[str, int, int]]) -> None:
        """A line for each stage that will run, in pipeline order, before any starts (stages run at once: readers
        list them in this order, not in the order their threads happen to start)."""
        for name, total, done in stages:
            self._write(name, done, total)

    def __call__(self, desc: str, total: int, initial: int = 0) -> tuple[Callable[[int], None], Callable[[], None]]:
        import time

        state = {"done": initial, "last": 0.0}
        self._write(desc, initial, total)

        def advance(n: int) -> None:
            state["done"] += n
            now = time.monotonic()
            if now - state["last"] >= self.interval or state["done"] >= total:
                state["last"] = now
                self._write(desc, state["done"], total)

        return advance, lambda: self._write(desc, state["done"], total)


def both(*factories):
    """A progress factory feeding every one of ``factories`` (tqdm bars and a ``ProgressLog``), and their ``plan``."""

    def make(desc: str, total: int, initial: int = 0):
        pairs = [f(desc, total, initial=initial) for f in factories]
        return (lambda n: [a(n) for a, _ in pairs]), (lambda: [c() for _, c in pairs])

    def plan(stages) -> None:
        for f in factories:
            if hasattr(f, "plan"):
                f.plan(stages)

    make.plan = plan
    return make


# --------------------------------------------------------------------------------------------------
# python -m svg3d


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


def _strength(text: str) -> float | str:
    """``--strength``: a number (% of the width) or ``auto``."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number (% of the width) or auto") from None


def add_convert_args(c: argparse.ArgumentParser) -> None:
    """The convert flags (also the web UI's and batch's): defaults and choices from ``svg3d.config``."""
    conv = ConvertConfig
    c.add_argument("--work-dir", type=Path, default=None, help="folder for the stages' files (default: OUTPUT/work)")
    clip = c.add_argument_group("clip")
    clip.add_argument("--start-frame", type=int, default=default(ClipConfig, "start_frame"), help="first frame to convert (default: 0)")
    clip.add_argument("--num-frames", type=int, default=None, help="frames to convert (default: to the end)")
    clip.add_argument("--width", type=int, default=None, help="resize to this width, with --height (default: keep the input's size)")
    clip.add_argument("--height", type=int, default=None, help="resize to this height, with --width")
    clip.add_argument("--fps", type=float, default=None, help=f"frame rate of a folder of frames (default: the number in its fps.txt, else {io.DEFAULT_FPS:g})")

    d = c.add_argument_group("depth")
    d.add_argument("--depth-from", type=Path, default=None, help="folder with one depth map per frame (.npy/.png/.pfm) instead of the depth model; by default they hold relative inverse depth, larger = nearer (see --depth-kind)")
    d.add_argument("--depth-kind", choices=DEPTH_KINDS, default=default(DepthConfig, "depth_kind"),
                   help="what the --depth-from maps hold: inverse depth (larger = nearer, as depth networks give), stereo disparity (pixels, larger = nearer), or depth (distance, larger = farther) (default: %(default)s)")  # fmt: skip
    d.add_argument("--depth-model", default=None, help=f"depth checkpoint, hub id or folder (default: {default(DepthConfig, 'model')})")
    d.add_argument("--depth-resolution", type=int, default=default(DepthConfig, "resolution"), help="short side depth is kept at, px (default: %(default)s)")
    d.add_argument("--stabilise", action=argparse.BooleanOptionalAction, default=True, help="temporal depth stabilisation (default: on)")
    d.add_argument("--flow", choices=FLOW_CHOICES, default=default(conv, "flow"), help="optical flow for stabilisation; auto: RAFT if its weights are here, else OpenCV DIS (default: %(default)s)")

    g = c.add_argument_group("3D effect", "the strength and the screen plane; or the physical camera (--baseline, --focal, --near, --far, --metric-depth)")
    g.add_argument("--strength", type=_strength, default=None, help=f"disparity between the nearest and the farthest point, %% of the width, or auto: per shot, from the --screen budget and the shot's depth (default: {camera.DEFAULT_STRENGTH}, or the --screen budget's)")
    g.add_argument("--screen", default=None, help=f"the screen the 3D is watched on, whose disparity budget limits the effect: {', '.join(comfort.SCREENS)}, or WIDTH,DISTANCE in metres (default: {comfort.DEFAULT_SCREEN}, +-{comfort.DEFAULT_LIMIT} %% of the width); see docs/comfort.md")
    g.add_argument("--window-violations", choices=comfort.WINDOW_CHOICES, default=default(MatrixConfig, "window_violations"), help="an object cut by the left or right frame edge in front of the screen: move the screen plane in front of it, add a floating window, or leave it (default: %(default)s)")
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
    f.add_argument("--deep-cache", type=int, default=default(DiffusionConfig, "deep_cache"), help="beyond the paper's schedule, off (1): with N > 1 only every Nth step runs the whole UNet, the others reuse its inner levels (DeepCache; needs --unet ours; faster, quality not measured) (default: %(default)s)")
    f.add_argument("--compile", action=argparse.BooleanOptionalAction, default=default(DiffusionConfig, "compile"), help="torch.compile: diffusers' blocks, or with --unet ours its repeated blocks (each UNet call a CUDA graph), cached per machine in ~/.cache/svg3d/compile (default: on CUDA with --unet ours when the run has windows enough to repay a cold compile, ~5 of the default schedule)")

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
    r.add_argument("--concurrent-stages", action=argparse.BooleanOptionalAction, default=default(ConvertConfig, "concurrent_stages"), help="run the stages at once, chunk by chunk (the same bytes as one after another, which --no-concurrent-stages does with less memory) (default: at once on a GPU or 4 cores and more)")
    r.add_argument("--gpus", type=int, default=default(ConvertConfig, "gpus"), help="CUDA devices to spread depth, stabilisation and the fill over, one process each; the outputs are those of one GPU (default: every visible one)")
    r.add_argument("--processes-per-gpu", type=int, default=default(ConvertConfig, "processes_per_gpu"), help="processes sharing each GPU for those stages, each on its own chunks, where one process's Python leaves the GPU idle; the outputs are the same (default: %(default)s)")
    r.add_argument("--fill-workers", type=int, default=default(ConvertConfig, "fill_workers"), help=f"runs of the fill's chunks computed at once, each in a thread (on CUDA on a stream of its own); the outputs are the same (default: {MAX_FILL_WORKERS} on a CPU, at most one per core; {GPU_FILL_WORKERS} on CUDA)")
    r.add_argument("--max-gpu-memory", type=float, default=default(ConvertConfig, "max_gpu_memory"), metavar="GIB", help="GiB of GPU memory each process of a CUDA run may hold: cached memory is freed at the cap, as on a smaller card; too little for the chunk stops the run (default: the card's)")
    r.add_argument("--threads", type=int, default=None, help="cores to plan threads for (torch, OpenCV, decoding); on a machine busy with other work, fewer; keep it when resuming, since some steps round by it (default: the machine's cores)")
    r.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N (default: auto)")
    r.add_argument("--quiet", action="store_true", help="no progress bars; warnings and errors only")
    r.add_argument("--progress-log", type=Path, default=None, help="also append progress as JSON lines to this file (for programs watching the run)")


def add_batch_args(b: argparse.ArgumentParser) -> None:
    """batch's own flags, then every convert flag (defaults from ``svg3d.config.BatchSettings``)."""
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


# The flags ``convert --help`` shows; ``--help-all`` shows every one (they all work either way).
SHORT_HELP = {"input", "output", "strength", "screen", "convergence", "fill", "layout", "exports", "depth_model", "depth_from", "device",
              "num_frames", "start_frame", "help", "help_all"}  # fmt: skip
CONVERT_EXAMPLES = """examples:
  python -m svg3d convert clip.mp4 -o out/                       SBS, half SBS and anaglyph of clip.mp4 in out/
  python -m svg3d convert clip.mp4 -o out/ --strength 3.5        a stronger effect (%% of the width)
  python -m svg3d convert frames/ -o out/ --exports hsbs,vr180   a folder of frames, for a 3D TV and a headset
  python -m svg3d convert clip.mp4 -o out/ --fill telea          the quickest filler
  (run the same command again after a crash or Ctrl-C: it resumes; --help-all lists every flag)"""


def create_parser(*, full: bool = True) -> argparse.ArgumentParser:
    """The parser of ``python -m svg3d``; ``full=False``: ``convert --help`` lists the common flags only."""
    from . import __version__

    p = argparse.ArgumentParser(prog="python -m svg3d", description="Stereoscopic 3D video from a monocular video (SVG).")
    p.add_argument("--version", action="version", version=f"svg3d {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="convert a video (or a folder of frames, or a prompt) to 3D", epilog=CONVERT_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    c.add_argument("--help-all", action="help", help="show every flag and exit")
    c.add_argument("input", type=Path, nargs="?", default=None, help="video file, or folder of frames (or a clip folder with images/); omit with --prompt to generate the video")
    c.add_argument("-o", "--output", type=Path, required=True, help="output folder for the 3D videos")
    add_convert_args(c)
    if not full:
        for action in c._actions:
            if action.dest not in SHORT_HELP:
                action.help = argparse.SUPPRESS
        for group in c._action_groups:  # a group left with no flag to show is not shown either
            if all(a.help == argparse.SUPPRESS for a in group._group_actions):
                group.title, group.description = None, None

    b = sub.add_parser("batch", help="convert every video and frames folder of a folder, in this process or on a Ray cluster")
    add_batch_args(b)

    m = sub.add_parser("demo", help="render scenes, convert them with no downloads, and score them against the truth")
    m.add_argument("--out", type=Path, default=Path("results/demo"), help="output folder (default: %(default)s)")
    m.add_argument("--seed", type=int, default=0, help="scene seed (default: %(default)s)")
    m.add_argument("--quiet", action="store_true", help="no progress bars; warnings and errors only")

    u = sub.add_parser("ui", help="the web UI: convert videos from a browser, as jobs in a jobs folder")
    u.add_argument("--jobs-dir", type=Path, default=default(UISettings, "jobs_dir"), help="folder of the jobs: uploads, outputs, work folders (default: %(default)s)")
    u.add_argument("--host", default=default(UISettings, "host"), help="address to listen on; 0.0.0.0 serves every interface (default: %(default)s, this machine only)")
    u.add_argument("--port", type=int, default=default(UISettings, "port"), help="port (default: %(default)s)")
    u.add_argument("--max-upload-mb", type=float, default=default(UISettings, "max_upload_mb"), help="largest upload accepted, MB; larger ones are refused as they arrive (default: %(default)s)")
    u.add_argument("--models-dir", type=Path, action="append", default=[], help="a folder of depth models (saved with save_pretrained, or folders of them) the page offers besides those in the Hugging Face cache; repeatable")
    u.add_argument("--quiet", action="store_true", help="warnings and errors only")
    return p


def config_from_args(args: argparse.Namespace) -> ConvertConfig:
    """The ``ConvertConfig`` the flags describe; cross-checks flags (one place) before anything is read."""
    from dataclasses import replace

    from svg3d.checks import InputError
    from svg3d.config import StabiliseConfig
    from svg3d.stages import export

    if (args.width is None) != (args.height is None):
        raise InputError("--width and --height go together")
    if args.depth_from is not None and args.depth_model is not None:
        raise InputError("--depth-from and --depth-model both choose where depth comes from; give one")
    if args.depth_kind != default(DepthConfig, "depth_kind") and args.depth_from is None:
        raise InputError(f"--depth-kind {args.depth_kind}: says what --depth-from's maps hold, and no --depth-from is given")
    physical = [f"--{name.replace('_', '-')}" for name in PHYSICAL if getattr(args, name) not in (None, False)]
    if physical and args.strength is not None:
        raise InputError(f"--strength and {physical[0]} both set the 3D effect; give the strength or the physical camera")
    base = ConvertConfig()
    screen = args.screen or base.matrix.screen
    if physical or args.strength == "auto":
        strength, convergence = None, args.convergence
    elif args.strength is None and args.screen is not None:  # the effect that fills the screen's budget
        try:
            budget = comfort.screen_budget(screen)
        except ValueError as e:
            raise InputError(f"--screen {e}") from None
        strength, convergence = comfort.effect_envelope(budget, strength=None, convergence=args.convergence, auto=False)
    else:
        strength = args.strength if args.strength is not None else base.matrix.strength
        convergence = args.convergence if args.convergence is not None else base.matrix.convergence
    matrix = replace(
        base.matrix,
        num_views=args.num_views,
        layout=camera.Layout(args.layout),
        strength=strength,
        convergence=convergence,
        screen=screen,
        auto_strength=args.strength == "auto",
        window_violations=args.window_violations,
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
        vae_frames=args.vae_frames, compile=args.compile, unet=args.unet, deep_cache=args.deep_cache,
    )  # fmt: skip
    return ConvertConfig(
        clip=ClipConfig(start_frame=args.start_frame, num_frames=args.num_frames, size=None if args.width is None else (args.height, args.width),
                        fps=args.fps),  # fmt: skip
        depth=DepthConfig(model=args.depth_model or default(DepthConfig, "model"), depth_from=args.depth_from, resolution=args.depth_resolution,
                          depth_kind=args.depth_kind),  # fmt: skip
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
        threads=args.threads,
        gpus=args.gpus,
        processes_per_gpu=args.processes_per_gpu,
        fill_workers=args.fill_workers,
        max_gpu_memory=args.max_gpu_memory,
        concurrent_stages=args.concurrent_stages,
    )
