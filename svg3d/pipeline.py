"""One command from a monocular video to a 3D video: every stage in a work folder, resumable.

Stages (DESIGN.md §1), each writing one folder of the work folder (``OUT/work`` by default):

    depth/          <frame>_depth.npy  disparity per frame (stage 1, or copied from --depth-from)
    stabilised/     <frame>_depth.npy  temporally stabilised disparity (stage 2)
    frame_matrix/   the frame matrix, lossless PNG cells (stage 3, ``matrix.save_frame_matrix``)
    filled/         view{v:03d}_{t:05d}.png  the hole-free views (stage 4: diffusion or classical)
    <stage>.json    the stage's manifest: parameters, input digests, outputs (size + sha256), timing
    .lock           held (``flock``) while a convert runs, so a second one on the folder stops at once

and the exports in ``OUT`` (``export``). Resume: a stage runs only when its manifest is missing, its
key (a hash of its parameters and of its inputs' digests) differs, or an output it lists is missing or
has another size. A stage writes into ``<stage>.tmp/``, renames it to ``<stage>/`` when complete and
writes its manifest last, so a run killed at any point leaves either a complete stage or one that
is redone; every file write is atomic (``io``). The downstream key includes the upstream *output*
digest, so an upstream stage that reruns and changes its outputs invalidates what follows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from . import __version__, camera, depth, export, fill, io, matrix, models
from .checks import InputError
from .denoise import default_overlap, window_starts
from .fill import FillConfig
from .stabilise import StabiliseConfig

log = logging.getLogger(__name__)

FILL_CHOICES = ("auto", "diffusion", "classical")
WORK_DIR = "work"  # default work folder, inside the output folder
LOG_FILE = "convert.log"
FILLED_NAME = "view{view:03d}_{frame:05d}.png"
ORIGIN_NAME = "origin_view{view:03d}.npy"  # classical filling: uint8 (T, H, W), fill.KNOWN / FROM_TIME / FROM_SPACE
DEFAULT_VIEWS_DIFFUSION = 8  # the paper's frame matrix (SVG README: 8 views)
DEFAULT_VIEWS_CLASSICAL = 2  # classical filling fills each view on its own: only the eyes are needed
MEMORY_WARNING_GB = 8.0  # warn when the frame matrix alone needs more memory than this

ProgressFactory = Callable[[str, int], tuple[Callable[[int], None], Callable[[], None]]]


@dataclass(frozen=True)
class ConvertConfig:
    """Everything that decides what ``convert`` produces (the CLI's flags). Defaults: the stages' own."""

    # the clip
    start_frame: int = 0  # first input frame used
    num_frames: int | None = None  # frames used from there; None = to the end
    size: tuple[int, int] | None = None  # (height, width) to resize the frames to; None = as the input
    # depth (stages 1-2)
    depth_from: Path | None = None  # a folder with one depth map per frame instead of running the model
    depth_model: str = models.DEFAULT_DEPTH_MODEL  # stage 1 checkpoint: hub id or local folder
    metric_depth: bool = False  # the depth maps are inverse metric depth (1/m), not relative disparity
    stabilise: bool = True  # stage 2 (DESIGN.md §3)
    flow: str = "auto"  # stage 2's flow: auto (RAFT if its weights are here, else OpenCV DIS), raft, raft_small, dis
    # the 3D effect (stage 3)
    baseline: float = camera.DEFAULT_BASELINE  # metres between the eyes (paper: 7 cm)
    focal: float | None = None  # pixels; None = 800 at 576 px wide, scaled with the width
    nearest_depth: float = -1.0  # metres of the nearest point; <= 0: ~0.91 m (reference)
    farest_depth: float = camera.DEFAULT_FAREST_DEPTH  # metres of the farthest point
    num_views: int | None = None  # None: 8 for diffusion (paper) or the grid export, else the eyes (and the input between them)
    layout: camera.Layout = camera.Layout.LEFT2RIGHT  # where the input sits: left eye (reference default)
    # hole filling (stage 4)
    fill: str = "auto"  # diffusion | classical | auto (diffusion when zeroscope is here and CUDA is, else classical)
    fill_config: FillConfig = field(default_factory=FillConfig)  # classical filling's settings
    video_model: str = models.ZEROSCOPE  # zeroscope for --fill diffusion: hub id or local folder
    prompt: str = ""  # text prompt for diffusion (empty: unconditional, guided away from the negative prompt)
    steps: int = 50  # DDPM steps for diffusion (reference)
    seed: int = 42  # diffusion's random seed (reference)
    window: int = 16  # diffusion: frames per sliding window (the reference's clip length)
    overlap: int | None = None  # diffusion: frames a window continues from the previous one; None: 4 (at most window - 1)
    offload: bool = False  # diffusion: text encoder and VAE wait on the CPU while idle
    max_unet_frames: int = 256  # diffusion: latent frames per UNet call (CFG pair counted); lower saves memory
    vae_frames: int = 16  # diffusion: frames per VAE call; lower saves memory
    compile: bool = False  # diffusion: torch.compile the UNet's and VAE's blocks (pays off over many windows)
    # outputs
    exports: tuple[str, ...] = export.DEFAULT_EXPORTS

    def __post_init__(self) -> None:
        checks = [
            (self.start_frame >= 0, f"--start-frame {self.start_frame}: must be >= 0"),
            (self.num_frames is None or self.num_frames >= 1, f"--num-frames {self.num_frames}: must be >= 1"),
            (self.size is None or min(self.size) >= 2, f"--width/--height {self.size}: must be >= 2"),
            (self.flow in ("auto", "raft", "raft_small", "dis"), f"--flow {self.flow}: expected auto, raft, raft_small or dis"),
            (self.baseline > 0, f"--baseline {self.baseline}: must be > 0 (metres)"),
            (self.focal is None or self.focal > 0, f"--focal {self.focal}: must be > 0 (pixels)"),
            (self.num_views is None or self.num_views >= 2, f"--num-views {self.num_views}: need at least 2 (the eyes)"),
            (
                self.num_views is None or self.num_views >= 3 or camera.Layout(self.layout) is not camera.Layout.MIDDLE2LEFTRIGHT,
                f"--num-views {self.num_views}: --layout middle2leftright needs at least 3 (the eyes and the input between them)",
            ),
            (self.fill in FILL_CHOICES, f"--fill {self.fill}: expected one of {', '.join(FILL_CHOICES)}"),
            (self.steps >= 1, f"--steps {self.steps}: must be >= 1"),
            (self.seed >= 0, f"--seed {self.seed}: must be >= 0"),
            (self.window >= 1, f"--window {self.window}: must be >= 1"),
            (self.max_unet_frames >= 1, f"--max-unet-frames {self.max_unet_frames}: must be >= 1"),
            (self.vae_frames >= 1, f"--vae-frames {self.vae_frames}: must be >= 1"),
            (self.overlap is None or 0 <= self.overlap < self.window, f"--overlap {self.overlap}: must be >= 0 and smaller than --window {self.window}"),
            (bool(self.exports), "--exports: give at least one export"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        unknown = [e for e in self.exports if e not in export.EXPORTS]
        if unknown:
            raise InputError(f"--exports: unknown export {', '.join(unknown)}; choose from {', '.join(export.EXPORTS)}")

    @property
    def window_overlap(self) -> int:
        """The overlap the windows use: ``overlap``, or its default for ``window``."""
        return default_overlap(self.window) if self.overlap is None else self.overlap


@dataclass(frozen=True)
class StageRecord:
    """What one stage did: ``ran`` False when it was up to date and skipped."""

    name: str
    ran: bool
    seconds: float
    frames: int
    digest: str
    outputs: dict[str, str]  # relative name -> absolute path


@dataclass(frozen=True)
class ConvertResult:
    stages: tuple[StageRecord, ...]
    exports: dict[str, Path]  # export name (and "preview") -> file
    work_dir: Path
    fill: str  # the filling that ran: "diffusion" or "classical"

    def stage(self, name: str) -> StageRecord:
        return next(s for s in self.stages if s.name == name)


# --------------------------------------------------------------------------------------------------
# paths and digests


def default_work_dir(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / WORK_DIR


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_paths(input_path: Path, out_dir: Path, work_dir: Path, depth_from: Path | None = None) -> None:
    """Refuse outputs that could overwrite an input, and output folders that cannot be written.

    Called before anything is written, so a refused run leaves no trace.
    """
    if not input_path.exists():
        raise InputError(f"{input_path}: no such file or folder")
    for what, folder in (("input", input_path), ("--depth-from", depth_from)):
        if folder is None:
            continue
        for flag, path in (("-o", out_dir), ("--work-dir", work_dir)):
            if folder.is_dir() and _inside(path, folder):
                raise InputError(f"{flag} {path}: is inside the {what} folder {folder}; choose an output folder outside it")
            if folder.is_file() and path.resolve() == folder.resolve():
                raise InputError(f"{flag} {path}: is the {what} file itself")
        if _inside(folder, work_dir):  # stage folders are replaced wholesale on a rerun
            raise InputError(f"{what} {folder}: is inside the work folder {work_dir}, which convert rewrites; copy it elsewhere first")
    for flag, path in (("-o", out_dir), ("--work-dir", work_dir)):
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise InputError(f"{flag} {path}: {existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise InputError(f"{flag} {path}: cannot write in {existing} (permission denied)")


def _make_dirs(*folders: Path) -> None:
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with io.atomic_path(folder / ".write-test"):
                pass
            (folder / ".write-test").unlink()
        except OSError as e:
            raise InputError(f"{folder}: cannot write to this folder ({e.strerror or e})") from None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _digest(items: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()


def input_fingerprint(path: Path) -> str:
    """Content digest of a video file, or of a clip folder's frame files (names and bytes)."""
    if path.is_file():
        return _sha256(path)
    return _digest({f.name: _sha256(f) for f in io.list_images(io.frames_folder(path))})


def depth_fingerprint(folder: Path) -> str:
    return _digest({f.name: _sha256(f) for f in io.list_depths(folder)})


# --------------------------------------------------------------------------------------------------
# the work folder


class WorkFolder:
    """Stage folders and manifests under ``root`` (module docstring)."""

    def __init__(self, root: Path, progress: ProgressFactory | None = None) -> None:
        self.root = root
        self.progress = progress

    def manifest_path(self, stage: str) -> Path:
        return self.root / f"{stage}.json"

    def folder(self, stage: str) -> Path:
        return self.root / stage

    def current(self, stage: str, key: str) -> dict | None:
        """The stage's manifest if the stage is up to date for ``key``: same key, every output present and whole."""
        path = self.manifest_path(stage)
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if manifest.get("key") != key:
            return None
        for out in manifest.get("outputs", {}).values():
            p = Path(out["path"])
            if not p.is_file() or p.stat().st_size != out["size"]:
                return None
        return manifest

    @contextlib.contextmanager
    def bar(self, desc: str, total: int) -> Iterator[Callable[[int], None]]:
        if self.progress is None:
            yield lambda n: None
            return
        advance, close = self.progress(desc, total)
        try:
            yield advance
        finally:
            close()

    def run(
        self,
        stage: str,
        params: dict,
        inputs: dict[str, str],
        frames: int,
        produce: Callable[[Path, Callable[[int], None]], list[Path] | None],
        *,
        total: int,
        out_dir: Path | None = None,
    ) -> StageRecord:
        """Run ``stage`` unless up to date. ``produce(folder, advance)`` writes the outputs.

        Folder stages (``out_dir`` None) write into a temporary folder, renamed to ``root/stage`` when
        complete; the outputs are every file in it. A stage writing elsewhere (exports) gets
        ``out_dir`` and returns the files it wrote (each written atomically).
        """
        key = _digest({"stage": stage, "svg3d": __version__, "params": params, "inputs": inputs})
        manifest = self.current(stage, key)
        if manifest is not None:
            log.info("%-12s up to date (%d frames), skipped", stage, manifest["frames"])
            outputs = {k: v["path"] for k, v in manifest["outputs"].items()}
            return StageRecord(stage, False, 0.0, manifest["frames"], manifest["digest"], outputs)
        self.manifest_path(stage).unlink(missing_ok=True)  # from now on the stage is incomplete
        start = time.perf_counter()
        if out_dir is None:
            final, tmp = self.folder(stage), self.root / f"{stage}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            try:
                with self.bar(stage, total) as advance:
                    produce(tmp, advance)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            files = sorted(p for p in final.rglob("*") if p.is_file())
            base = final
        else:
            with self.bar(stage, total) as advance:
                files = produce(out_dir, advance) or []
            base = out_dir
        seconds = time.perf_counter() - start
        outputs = {str(p.relative_to(base)): {"path": str(p.resolve()), "size": p.stat().st_size, "sha256": _sha256(p)} for p in files}
        digest = _digest({name: o["sha256"] for name, o in outputs.items()})
        manifest = {
            "stage": stage,
            "key": key,
            "svg3d": __version__,
            "params": params,
            "inputs": inputs,
            "frames": frames,
            "seconds": round(seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "digest": digest,
            "outputs": outputs,
        }
        io.write_text(self.manifest_path(stage), json.dumps(manifest, indent=1, default=str))
        log.info("%-12s done: %d frames in %.1f s", stage, frames, seconds)
        return StageRecord(stage, True, seconds, frames, digest, {k: v["path"] for k, v in outputs.items()})


# --------------------------------------------------------------------------------------------------
# the clip


def read_input(path: Path, config: ConvertConfig) -> io.Clip:
    """The frames ``convert`` works on: ``io.read_clip``, the frame range, the optional resize."""
    clip = io.read_clip(path, start=config.start_frame, max_frames=config.num_frames)
    if config.size is not None and config.size != clip.size:
        h, w = config.size
        log.info("resizing %dx%d -> %dx%d", clip.size[1], clip.size[0], w, h)
        clip = replace(clip, frames=np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in clip.frames]))
    return clip


def _read_depth_folder(folder: Path, clip: io.Clip, config: ConvertConfig) -> np.ndarray:
    """Depth maps of the clip's frames from ``--depth-from`` (``(T, H, W)``), resized with the frames."""
    if config.size is None:
        return io.read_depths(folder, count=clip.num_frames, start=config.start_frame, size=clip.size)
    disparity = io.read_depths(folder, count=clip.num_frames, start=config.start_frame)
    h, w = clip.size
    return np.stack([cv2.resize(d, (w, h), interpolation=cv2.INTER_LINEAR) for d in disparity])


# --------------------------------------------------------------------------------------------------
# hole filling: which backend


def video_model_missing(name: str) -> str | None:
    """Why the video model cannot be used without downloading it, or None when it is here.

    A local folder must hold ``unet/``; a hub id must be in the Hugging Face cache. Nothing is
    downloaded or loaded: this only decides ``--fill auto``.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        return None if (path / "unet").is_dir() else f"{name} has no unet/ folder"
    if models.looks_like_path(name):
        return f"{name}: no such folder"
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "unet/config.json")
    return None if isinstance(cached, str) else f"{name} is not in the Hugging Face cache"


def resolve_fill(config: ConvertConfig, device: torch.device) -> str:
    """``--fill auto`` -> diffusion when the video model is here and the device is CUDA, else classical (said in one line)."""
    if config.fill == "diffusion" and models.offline():
        reason = video_model_missing(config.video_model)
        if reason is not None:  # fail now rather than after the depth stages
            raise models.model_not_found(config.video_model, "video model", reason, flag="--video-model")
    if config.fill != "auto":
        return config.fill
    reason = "no CUDA device (diffusion on the CPU takes hours)" if device.type != "cuda" else video_model_missing(config.video_model)
    if reason is None:
        return "diffusion"
    log.info("fill: classical (auto: %s; --fill diffusion to use the model anyway)", reason)
    return "classical"


def _num_views(config: ConvertConfig, fill_kind: str) -> int:
    if config.num_views is not None:
        return config.num_views
    if fill_kind == "diffusion" or any(export.EXPORTS[e].needs_all_views for e in config.exports):
        return DEFAULT_VIEWS_DIFFUSION
    if camera.Layout(config.layout) is camera.Layout.MIDDLE2LEFTRIGHT:
        return 3  # the two eyes and the input between them
    return DEFAULT_VIEWS_CLASSICAL


def _matrix_config(config: ConvertConfig, num_views: int) -> matrix.MatrixConfig:
    return matrix.MatrixConfig(
        num_views=num_views,
        max_baseline=config.baseline,
        layout=camera.Layout(config.layout),
        focal=config.focal,
        nearest_depth=config.nearest_depth,
        farest_depth=config.farest_depth,
        metric_depth=config.metric_depth,
        lossless=True,  # PNG: JPEG would bleed colour into the holes (DESIGN.md §4)
    )


def _denoise(fm: matrix.FrameMatrix, views: tuple[int, ...], config: ConvertConfig, device: torch.device, advance) -> dict[int, torch.Tensor]:
    """Stage 4 by frame-matrix denoising (``denoise``): ``{view: (T, 3, H, W)}`` for ``views``."""
    from .denoise import DenoiseConfig, denoise_long

    model = models.load_zeroscope(config.video_model, device=device)
    if config.compile:
        models.compile_zeroscope(model)
    multiview = len(views) > 2
    # Multi-view mode (seed README: --frame_matrix_end 0) when every view is wanted, else the eyes.
    dconfig = DenoiseConfig(
        num_inference_steps=config.steps, seed=config.seed, frame_matrix_end=0 if multiview else 500,
        offload=config.offload, max_unet_frames=config.max_unet_frames, max_vae_frames=config.vae_frames,
    )  # fmt: skip
    # Frames of any size are reflect-padded to multiples of 8 inside and cropped back.
    result = denoise_long(
        model, fm.images, fm.masks, config.prompt, dconfig,
        window=config.window, overlap=config.window_overlap, layout=fm.info.layout, progress=advance,
    )  # fmt: skip
    out = {v: result.videos[v] for v in views}
    # The input view is the input itself, not its VAE reconstruction (which loses detail).
    ref = fm.info.reference_view
    if ref in out:
        out[ref] = fm.images[ref]
    return out


def _classical(fm: matrix.FrameMatrix, disparity: np.ndarray, views: tuple[int, ...], config: ConvertConfig, advance) -> fill.FillResult:
    """Stage 4 by ``fill`` on ``views``."""
    info = fm.info
    z = camera.disparity_to_depth(
        torch.from_numpy(disparity).float(), nearest_depth=info.nearest_depth, farest_depth=info.farest_depth, metric=info.metric_depth
    )
    depth_views = fill.warp_depth(z, torch.tensor(info.baselines), info.focal, num_planes=info.num_planes)
    mismatch = int(((depth_views > 0) != fm.masks[:, :, 0]).sum())
    if mismatch:  # a matrix built on another device may round a few splats differently
        log.debug("fill: %d pixels where the warped depth and the frame matrix's mask disagree", mismatch)
    return fill.fill_frame_matrix(fm.images, fm.masks, depth_views, config.fill_config, views=views, progress=advance)


# --------------------------------------------------------------------------------------------------
# convert


@dataclass(frozen=True)
class Job:
    """A validated conversion, ready to run: its folders exist and its clip is read (``prepare``)."""

    input_path: Path
    out_dir: Path
    work_dir: Path
    config: ConvertConfig
    clip: io.Clip
    device: torch.device


def prepare(
    input_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: ConvertConfig | None = None,
    *,
    work_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
) -> Job:
    """Validate the paths and read the input, then create the output and work folders.

    Raises ``InputError`` (one line) for bad input; nothing is written before the input is validated.
    """
    config = ConvertConfig() if config is None else config
    input_path, out_dir = Path(input_path), Path(out_dir)
    work_path = Path(work_dir) if work_dir is not None else default_work_dir(out_dir)
    check_paths(input_path, out_dir, work_path, config.depth_from)
    local_models = [("--depth-model", config.depth_model, config.depth_from is None), ("--video-model", config.video_model, config.fill == "diffusion")]
    for flag, name, used in local_models:  # a model folder that is not there fails now, not after the first stages
        if used and models.looks_like_path(name) and not Path(name).expanduser().exists():
            raise InputError(f"{flag} {name}: no such folder")
    clip = read_input(input_path, config)
    _make_dirs(out_dir, work_path)
    return Job(input_path, out_dir, work_path, config, clip, torch.device(device))


def convert(
    input_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: ConvertConfig | None = None,
    *,
    work_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressFactory | None = None,
    on_stage: Callable[[StageRecord], None] | None = None,
) -> ConvertResult:
    """Convert a video file or a folder of frames into stereo exports in ``out_dir``: ``prepare`` then ``run``."""
    job = prepare(input_path, out_dir, config, work_dir=work_dir, device=device)
    return run(job, progress=progress, on_stage=on_stage)


@contextlib.contextmanager
def work_lock(work_dir: Path) -> Iterator[None]:
    """Hold ``work_dir/.lock`` exclusively, or raise ``InputError`` at once if another run holds it.

    Two converts sharing a work folder would replace each other's stage folders mid-write. The lock is
    an OS file lock (``flock``), so a killed run leaves nothing to clean up. Not available on Windows,
    where the folder is not locked.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / ".lock"
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"{work_dir}: another convert is using this work folder; wait for it, or give this one its own -o or --work-dir"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run(
    job: Job,
    *,
    progress: ProgressFactory | None = None,
    on_stage: Callable[[StageRecord], None] | None = None,
) -> ConvertResult:
    """Run (or resume) every stage of a prepared job (module docstring), holding its work folder's lock.

    ``progress(desc, total) -> (advance, close)`` makes a progress bar per stage (``cli.progress_bar``).
    ``on_stage(record)`` is called after each stage (tests use it to interrupt a run).
    """
    with work_lock(job.work_dir):
        return _run(job, progress, on_stage)


def _run(job: Job, progress: ProgressFactory | None, on_stage: Callable[[StageRecord], None] | None) -> ConvertResult:
    config, clip, device = job.config, job.clip, job.device
    input_path, out_dir = job.input_path, job.out_dir
    work = WorkFolder(job.work_dir, progress)
    t_count = clip.num_frames
    log.info(
        "convert %s: %d frames %dx%d at %.3g fps -> %s (work folder %s)",
        input_path, t_count, clip.size[1], clip.size[0], clip.fps, out_dir, job.work_dir,
    )
    fill_kind = resolve_fill(config, device)
    num_views = _num_views(config, fill_kind)
    mconfig = _matrix_config(config, num_views)
    windows = len(window_starts(t_count, config.window, config.window_overlap))
    if fill_kind == "diffusion" and windows > 1:
        log.info("fill: %d frames in %d windows of %d (overlap %d)", t_count, windows, config.window, config.window_overlap)
    # The stages hold the clip in memory: the frame matrix alone is V x T float32 RGB images.
    matrix_gb = num_views * t_count * clip.size[0] * clip.size[1] * 3 * 4 / 1e9
    if matrix_gb > MEMORY_WARNING_GB:
        log.warning(
            "the frame matrix of %d views x %d frames at %dx%d takes %.0f GB of memory; "
            "consider --num-frames, --width/--height or fewer --num-views",
            num_views, t_count, clip.size[1], clip.size[0], matrix_gb,
        )
    clip_params = {"input": input_fingerprint(input_path), "start": config.start_frame, "frames": t_count, "size": clip.size}
    records: list[StageRecord] = []

    def done(record: StageRecord) -> StageRecord:
        records.append(record)
        if on_stage is not None:
            on_stage(record)
        return record

    names = [depth.DEPTH_NAME.format(stem=s) for s in clip.names]

    # 1. depth
    if config.depth_from is not None:
        depth_params = {"from": str(config.depth_from), "digest": depth_fingerprint(config.depth_from)}

        def produce_depth(folder: Path, advance) -> None:
            for name, d in zip(names, _read_depth_folder(config.depth_from, clip, config), strict=True):
                io.write_depth(folder / f"{name}.npy", d)
                advance(1)
    else:
        depth_params = {"model": config.depth_model}

        def produce_depth(folder: Path, advance) -> None:
            model = models.load_depth_model(config.depth_model, device=device, flag="--depth-model")
            depth.run_depth_stage(clip, folder, model, progress=advance)

    rec = done(work.run("depth", depth_params, clip_params, t_count, produce_depth, total=t_count))
    disparity_stage = rec

    # 2. stabilisation
    if config.stabilise:
        sconfig = StabiliseConfig()

        def produce_stable(folder: Path, advance) -> None:
            from .flow import make_flow
            from .stabilise import StageInputs, run_stabilise_stage

            src = work.folder("depth")
            inputs = StageInputs(clip.frames, io.read_depths(src, suffix=".npy", count=t_count), tuple(names), src)
            backend = make_flow(config.flow, device=device)
            run_stabilise_stage(inputs, folder, backend, sconfig, device=device, progress=advance)

        stable_params = {"flow": config.flow, "config": asdict(sconfig)}
        disparity_stage = done(
            work.run("stabilised", stable_params, {**clip_params, "depth": rec.digest}, t_count, produce_stable, total=t_count)
        )
    disparity_dir = work.folder(disparity_stage.name)

    def read_disparity() -> np.ndarray:
        return io.read_depths(disparity_dir, suffix=".npy", count=t_count)

    # 3. frame matrix
    def produce_matrix(folder: Path, advance) -> None:
        fm = matrix.frame_matrix_from_clip(
            clip.frames, read_disparity(), mconfig, frame_names=clip.names, fps=clip.fps, device=device, progress=advance
        )
        matrix.save_frame_matrix(fm, folder)

    matrix_params = {k: (v.value if isinstance(v, camera.Layout) else v) for k, v in asdict(mconfig).items()}
    rec = done(
        work.run(
            "frame_matrix", matrix_params, {**clip_params, "fps": clip.fps, "depth": disparity_stage.digest}, t_count,
            produce_matrix, total=t_count,
        )
    )

    # 4. hole filling
    eyes = camera.eye_views(num_views, mconfig.layout)
    all_views = any(export.EXPORTS[e].needs_all_views for e in config.exports)
    fill_views = tuple(range(num_views)) if all_views else tuple(sorted(set(eyes)))

    def produce_fill(folder: Path, advance) -> None:
        fm = matrix.load_frame_matrix(work.folder("frame_matrix"))  # from disk, as a resumed run sees it
        if fill_kind == "diffusion":
            filled = _denoise(fm, fill_views, config, device, advance)
        else:
            result = _classical(fm, read_disparity(), fill_views, config, advance)
            filled = dict(zip(result.views, result.images, strict=True))
            for v, origin in zip(result.views, result.origin, strict=True):
                with io.atomic_path(folder / ORIGIN_NAME.format(view=v)) as tmp:
                    np.save(tmp, origin.numpy())
        for v, frames in filled.items():
            rgb = (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # T 3 H W -> T H W 3
            for t, frame in enumerate(rgb):
                io.write_image(folder / FILLED_NAME.format(view=v, frame=t), frame)

    if fill_kind == "diffusion":
        fill_params = {
            "kind": fill_kind, "model": config.video_model, "prompt": config.prompt, "steps": config.steps, "seed": config.seed,
            "window": config.window, "overlap": config.window_overlap,
        }  # fmt: skip
    else:
        fill_params = {"kind": fill_kind, "config": asdict(config.fill_config)}
    fill_params["views"] = fill_views
    fill_total = config.steps * windows if fill_kind == "diffusion" else t_count * len(fill_views)
    rec = done(
        work.run("filled", fill_params, {"frame_matrix": rec.digest, "depth": disparity_stage.digest}, t_count, produce_fill, total=fill_total)
    )

    # 5. exports
    stem = input_path.stem if input_path.is_file() else input_path.resolve().name
    trimmed = config.start_frame > 0 or config.num_frames is not None

    def produce_exports(folder: Path, advance) -> list[Path]:
        def view(v: int) -> np.ndarray:
            return io.read_frames([work.folder("filled") / FILLED_NAME.format(view=v, frame=t) for t in range(t_count)])

        audio = None
        if clip.has_audio:  # the clip's span of the input's audio, in a form mp4 takes
            start = config.start_frame / clip.fps
            audio = export.audio_track(input_path, work.root / "audio.m4a", start=start, duration=t_count / clip.fps if trimmed else None)
        written = export.write_exports(
            folder, stem, config.exports,
            left=view(eyes[0]), right=view(eyes[1]), fps=clip.fps,
            views=np.stack([view(v) for v in range(num_views)]) if all_views else None,
            disparity=read_disparity() if "depth" in config.exports else None,
            audio_from=audio, progress=advance,
        )  # fmt: skip
        return list(written.values())

    export_params = {"exports": config.exports, "stem": stem, "fps": clip.fps, "audio": clip.has_audio, "trimmed": trimmed}
    done(
        work.run(
            "export", export_params, {**clip_params, "filled": rec.digest, "depth": disparity_stage.digest}, t_count,
            produce_exports, total=len(config.exports), out_dir=out_dir,
        )
    )
    exports = {name: export.output_path(out_dir, stem, name) for name in config.exports}
    exports["preview"] = out_dir / f"{stem}{export.PREVIEW_SUFFIX}"
    return ConvertResult(tuple(records), exports, job.work_dir, fill_kind)
