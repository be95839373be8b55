"""Conversion jobs for the web UI: a jobs folder, a FIFO queue of ``convert`` subprocesses, progress, results.

A job is one folder under the jobs folder, named by its id (``JOB_ID``), holding everything it owns::

    <jobs>/<id>/job.json        the record: input, convert flags, state, runs (``Job``)
    <jobs>/<id>/input/          the upload (a video, or the frames of a zip), or the demo clip
    <jobs>/<id>/depth/          depth maps of a depth zip (or of the demo clip), given as --depth-from
    <jobs>/<id>/out/            the exports (convert's -o); out/work/ is its work folder, out/work/convert.log its log
    <jobs>/<id>/progress.jsonl  convert's --progress-log (``cli.ProgressLog``), appended by every run
    <jobs>/<id>/stderr.log      what convert wrote to stderr (its one-line ``error: ...`` when it fails)

A job runs as ``python -m svg3d convert INPUT -o out --progress-log progress.jsonl --quiet FLAGS`` in its own
process group, one job at a time (``JobQueue``: the first queued runs first). Cancelling kills the group
(SIGTERM, then SIGKILL after ``CANCEL_GRACE`` s): the stages commit chunk by chunk atomically (``work``), so the
chunks a killed run finished are kept, and resuming runs the same command again, which continues where the work
folder stops ("resumed at frame N" in the log). Jobs found in the folder when a server starts are listed again;
those it had queued or running are ``interrupted`` and can be resumed.

Depth comes from a depth zip, the demo's exact depth, or a depth model: one the server found (``depth_models``: its
``--models-dir`` folders, the Hugging Face cache, the known hub ids), given as ``--depth-model``; a model the server
cannot load now is refused when the job is submitted (``check_depth_model``), not queued to fail.

Nothing a client sends is used as a path outside the jobs folder: flags that name files (``UI_FLAGS``) are set
here and refused from clients; model flags take hub ids only (``MODEL_ID``); uploads are checked to lie inside
the jobs folder and are copied (hard-linked where possible) into the job; zips are unpacked flat, refusing
absolute names, ``..`` and links, with the unpacked size bounded. Library code: no gradio here, no printing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from . import io
from .checks import InputError
from .config import ConvertConfig

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
JOB_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")  # 20261201-223300-a1b2c3: sorts by creation time
CANCEL_GRACE = 1.0  # s between SIGTERM and SIGKILL: convert has no cleanup to do (chunks commit atomically)
UNPACK_FACTOR = 4  # a zip may unpack to at most this many times the upload limit (PNG frames barely compress)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv", ".flv")
ACTIVE = ("queued", "running")
STATES = (*ACTIVE, "done", "failed", "cancelled", "interrupted")
# Flags the UI sets itself, each naming a path: a client must not choose them.
UI_FLAGS = ("-o", "--output", "--work-dir", "--progress-log", "--depth-from", "--quiet", "-h", "--help")
# Model flags take a hub id (owner/name) only: a local folder would be a path chosen by the client.
MODEL_FLAGS = ("--depth-model", "--video-model")
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
DEMO_FRAMES = 24
DEMO_SIZE = (128, 224)  # (H, W): small, so that the demo converts in seconds on a CPU
DEMO_FPS = 12.0
DEMO_SEED = 0


# --------------------------------------------------------------------------------------------------
# flags: the convert CLI's own parser and cross-checks


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises ``InputError`` instead of printing and exiting."""

    def error(self, message: str):
        raise InputError(message)

    def exit(self, status: int = 0, message: str | None = None):
        raise InputError(message or "stopped")


def convert_parser() -> argparse.ArgumentParser:
    """The convert flags (``cli.add_convert_args``), without INPUT and -o, which the jobs set."""
    from .cli import add_convert_args

    p = _Parser(prog="convert", add_help=False)
    add_convert_args(p)
    return p


def _flag_name(token: str) -> str:
    return token.split("=", 1)[0]


def parse_flags(flags: Sequence[str]) -> ConvertConfig:
    """Check convert ``flags`` as the CLI does (its parser, ``config_from_args``) and return the config.

    Raises ``InputError`` with the CLI's one-line message (flag names, ``FLAGS``). Refuses the flags the UI sets
    (``UI_FLAGS``) and model flags that are not hub ids.
    """
    from .cli import FLAGS, config_from_args

    flags = list(flags)
    for i, token in enumerate(flags):
        name = _flag_name(token)
        if name in UI_FLAGS:
            raise InputError(f"{name}: set by the web UI, not a flag a job can give")
        if name in MODEL_FLAGS:
            value = token.split("=", 1)[1] if "=" in token else (flags[i + 1] if i + 1 < len(flags) else "")
            if not MODEL_ID.match(value) or ".." in value:
                raise InputError(f"{name} {value!r}: give a hub id (owner/name); local folders are set where the server runs")
    args = convert_parser().parse_args(flags)
    try:
        return config_from_args(args)
    except InputError as e:
        raise InputError(e.flag_message(FLAGS)) from None


# --------------------------------------------------------------------------------------------------
# inputs


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """``path`` resolves (links followed) to ``folder`` or somewhere below it."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


def safe_name(name: str, default: str = "input") -> str:
    """A file name for what a client called its upload: the last component, ``[A-Za-z0-9_.-]`` only, not hidden."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", PurePosixPath(str(name).replace("\\", "/")).name)[:120].lstrip(".")
    return base or default


def unpack_zip(archive: Path, dest: Path, *, suffixes: Sequence[str], max_bytes: int, what: str) -> list[Path]:
    """Unpack the files of ``archive`` ending in one of ``suffixes`` flat into ``dest``; return them.

    Refused (``InputError`` naming ``what``): not a zip, a corrupt or encrypted member, a member with an
    absolute name, a drive, ``..`` or a link, two members of one name, more than ``max_bytes`` unpacked
    (counted while unpacking, not taken from the headers), no matching file. Hidden files are skipped.
    """
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    total = 0
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                name = info.filename.replace("\\", "/")
                parts = PurePosixPath(name).parts
                if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
                    raise InputError(f"{what}: the member {info.filename!r} points outside the archive; refused")
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise InputError(f"{what}: the member {info.filename!r} is a link; refused")
                if info.is_dir() or not parts:
                    continue
                base = parts[-1]
                if base.startswith(".") or "__MACOSX" in parts or Path(base).suffix.lower() not in suffixes:
                    continue
                target = dest / safe_name(base)
                if target.exists():
                    raise InputError(f"{what}: two members are named {target.name}; give each frame its own name")
                with zf.open(info) as src, open(target, "wb") as out:
                    while block := src.read(1 << 20):
                        total += len(block)
                        if total > max_bytes:
                            raise InputError(f"{what}: unpacks to more than {max_bytes / 2**20:.0f} MB; refused")
                        out.write(block)
                written.append(target)
    except InputError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, ValueError) as e:
        shutil.rmtree(dest, ignore_errors=True)
        raise InputError(f"{what}: not a readable zip file ({e})") from None
    if not written:
        shutil.rmtree(dest, ignore_errors=True)
        raise InputError(f"{what}: no {'/'.join(suffixes)} files in the zip")
    return written


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # the upload stays in Gradio's cache as well: a link costs no space
    except OSError:
        shutil.copyfile(src, dst)


def demo_clip(folder: Path) -> tuple[Path, Path]:
    """The bundled demo: a rendered scene (``scene``) as ``folder/demo.mp4`` and its exact depth ``folder/depth/``.

    Rendered once (``DEMO_FRAMES`` frames of ``DEMO_SIZE`` at ``DEMO_FPS``), then reused. Returns (video, depth folder).
    """
    import numpy as np

    video, depth_dir = folder / "demo.mp4", folder / "depth"
    done = folder / "done.json"
    if done.is_file() and video.is_file():
        return video, depth_dir
    from . import scene

    h, w = DEMO_SIZE
    sc = scene.make_scene(DEMO_SEED, num_frames=DEMO_FRAMES, height=h, width=w)
    rgb, z = scene.render(sc)
    frames = (rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()  # T 3 H W -> T H W 3
    for t, d in enumerate(z.numpy()):
        io.write_depth(depth_dir / f"{t:05d}.npy", (1.0 / d).astype(np.float32))  # 1/Z: inverse depth
    io.write_video(video, frames, DEMO_FPS)
    io.write_text(done, json.dumps({"frames": DEMO_FRAMES, "size": [w, h], "fps": DEMO_FPS, "seed": DEMO_SEED}))
    return video, depth_dir


# --------------------------------------------------------------------------------------------------
# depth models on this server


@dataclass(frozen=True)
class DepthChoice:
    """A depth model a job may use: ``name`` as convert takes it (hub id or folder), ``label`` for people,
    ``missing``: why it cannot be used here (``models.missing_reason``), None when it can."""

    name: str
    label: str
    missing: str | None


def _is_depth_config(path: Path) -> bool:
    """A ``config.json`` of a depth-estimation model (transformers' ``...ForDepthEstimation`` classes)."""
    try:
        architectures = json.loads(path.read_text()).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return False
    return any(str(a).endswith("ForDepthEstimation") for a in architectures)


def depth_models(folders: Sequence[str | os.PathLike] = ()) -> list[DepthChoice]:
    """The depth models of this server: every model folder (``save_pretrained``) in ``folders`` (the folders
    themselves or their sub-folders), every depth model in the Hugging Face cache, and the known hub ids
    (``models.KNOWN_MODELS``) with why each missing one cannot be used. Usable ones first, the default model
    first among them. Nothing is downloaded (a hub id not in the cache is usable only while the hub answers)."""
    from . import models

    found: dict[str, DepthChoice] = {}
    for folder in map(Path, folders):
        for candidate in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())] if folder.is_dir() else []:
            if _is_depth_config(candidate / "config.json"):
                found[str(candidate.resolve())] = DepthChoice(str(candidate.resolve()), f"{candidate.name} (folder on the server)", None)
    hub = [name for name, info in models.KNOWN_MODELS.items() if info.kind == "depth"]
    with contextlib.suppress(Exception):  # no cache folder yet, or one huggingface_hub cannot read: the known ids
        from huggingface_hub import scan_cache_dir, try_to_load_from_cache

        for repo in scan_cache_dir().repos:
            config = try_to_load_from_cache(repo.repo_id, "config.json") if repo.repo_type == "model" else None
            if isinstance(config, str) and _is_depth_config(Path(config)) and repo.repo_id not in hub:
                hub.append(repo.repo_id)
    for name in hub:
        reason = models.missing_reason(name)
        found[name] = DepthChoice(name, name if reason is None else f"{name} (not on this server)", reason)
    default = ConvertConfig().depth.model
    return sorted(found.values(), key=lambda c: (c.missing is not None, c.name != default))


def check_depth_model(name: str) -> None:
    """Refuse (``InputError``, one line) a depth model this server cannot load now, before a job is queued."""
    from . import models

    reason = models.missing_reason(name)
    if reason is not None:
        raise InputError(f"depth model {name}: not on this server ({reason}); choose a depth model the server has, "
                         "or upload depth maps (a zip, one map per frame)")  # fmt: skip


# --------------------------------------------------------------------------------------------------
# jobs


@dataclass
class Job:
    """One conversion: its folder, what it converts and how, and where it stands (``job.json``)."""

    id: str
    folder: Path
    name: str  # what the user gave (the upload's name, or "demo")
    input: str  # path of the input, relative to the folder
    flags: list[str]  # the convert flags the user chose (``parse_flags``)
    depth: str | None = None  # the depth maps' folder, relative, given as --depth-from
    depth_model: str | None = None  # a depth model the server found (hub id or its folder), given as --depth-model
    state: str = "queued"  # one of STATES
    message: str = ""  # why it failed, or what it did
    created: float = field(default_factory=time.time)
    runs: list[dict] = field(default_factory=list)  # {"started", "ended", "returncode"} per run

    @property
    def out(self) -> Path:
        return self.folder / "out"

    @property
    def progress_log(self) -> Path:
        return self.folder / "progress.jsonl"

    @property
    def log_file(self) -> Path:
        """convert's log (DEBUG, every run), or its stderr when it stopped before writing one."""
        from . import work

        log_file = self.out / work.WORK_DIR / work.LOG_FILE
        return log_file if log_file.is_file() else self.folder / "stderr.log"

    def command(self, python: str = sys.executable) -> list[str]:
        argv = [python, "-m", "svg3d", "convert", str(self.folder / self.input), "-o", str(self.out)]
        argv += ["--progress-log", str(self.progress_log), "--quiet", *self.flags]
        if self.depth is not None:
            argv += ["--depth-from", str(self.folder / self.depth)]
        elif self.depth_model is not None:
            argv += ["--depth-model", self.depth_model]
        return argv

    def save(self) -> None:
        record = {k: v for k, v in asdict(self).items() if k != "folder"}
        io.write_text(self.folder / JOB_FILE, json.dumps(record, indent=1))

    @classmethod
    def load(cls, folder: Path) -> Job:
        record = json.loads((folder / JOB_FILE).read_text())
        return cls(folder=folder, **{k: v for k, v in record.items() if k in cls.__dataclass_fields__ and k != "folder"})


@dataclass(frozen=True)
class StageProgress:
    """One stage of a job as its progress log tells it: frames ``done`` of ``total``, seconds left and frames per
    second of this run (None: unknown yet)."""

    stage: str
    done: int
    total: int
    eta: float | None
    rate: float | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


def read_progress(path: Path, since: float = 0.0) -> list[StageProgress]:
    """The stages of a progress log (``cli.ProgressLog``), in the order they started; the ETA from this run's
    rate (lines at or after ``since``, seconds since the epoch). A torn last line (a run killed mid-write) is skipped."""
    latest: dict[str, dict] = {}
    first: dict[str, dict] = {}
    try:
        text = path.read_text()
    except OSError:
        return []
    for line in text.splitlines():
        try:
            e = json.loads(line)
            stage, done, total, t = str(e["stage"]), int(e["done"]), int(e["total"]), float(e["time"])
        except (ValueError, KeyError, TypeError):
            continue
        latest[stage] = {"done": done, "total": total, "time": t}
        if t >= since and (stage not in first or first[stage]["total"] != total):
            first[stage] = {"done": done, "time": t, "total": total}
    out = []
    for stage, e in latest.items():
        eta = rate = None
        if stage in first and e["time"] > first[stage]["time"] and e["done"] > first[stage]["done"]:
            rate = (e["done"] - first[stage]["done"]) / (e["time"] - first[stage]["time"])
            eta = (e["total"] - e["done"]) / rate
        if e["done"] >= e["total"]:
            eta = 0.0
        out.append(StageProgress(stage, e["done"], e["total"], eta, rate))
    return out


def expected_stages(flags: Sequence[str]) -> tuple[str, ...]:
    """The stages a job with these convert flags runs, in order (a filler's own pre-pass shows up once it starts)."""
    try:
        config = parse_flags(flags)
    except InputError:
        return ()
    return ("depth", *(("stabilised",) if config.stabilise is not None else ()), "filled", "export")


@dataclass(frozen=True)
class Overall:
    """A job's progress over all its stages: ``stage`` (1-based, the one running) of ``stages``, frames ``done`` of
    ``total`` summed over the stages, and seconds left (None: unknown until a stage has a rate)."""

    stage: int
    stages: int
    done: int
    total: int
    eta: float | None


def overall_progress(stages: Sequence[StageProgress], expected: Sequence[str]) -> Overall:
    """The whole job's progress: the stages of its log and those still to come (``expected``). A stage to come
    is estimated at the mean seconds per frame of the stages with a rate (a rough guide: stages differ)."""
    seen = {s.stage: s for s in stages}
    names = list(dict.fromkeys([*(s.stage for s in stages), *expected]))  # stages start in pipeline order
    frames = max((s.total for s in stages), default=0)
    rates = [1.0 / s.rate for s in stages if s.rate]
    per_frame = sum(rates) / len(rates) if rates else None
    eta: float | None = 0.0
    done = total = 0
    for n in names:
        s = seen.get(n)
        done += s.done if s else 0
        total += s.total if s else frames
        left = (s.eta if s else (None if per_frame is None else per_frame * frames))
        if s is not None and s.done >= s.total:
            left = 0.0
        eta = None if eta is None or left is None else eta + left
    current = next((i for i, n in enumerate(names, 1) if n not in seen or seen[n].done < seen[n].total), len(names))
    return Overall(current, len(names), done, total, eta)


def results(job: Job) -> dict[str, Path]:
    """The exports of a finished job (its export record), name -> file or folder, each inside the job folder."""
    from . import work

    record = work.OutputRecord(job.out / work.WORK_DIR / "export.json")
    return {name: p for name, p in record.outputs().items() if p.exists() and inside(p, job.folder)}


def _last_error(stderr: Path) -> str:
    try:
        lines = [ln.strip() for ln in stderr.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("error:")]
    return errors[-1] if errors else (lines[-1] if lines else "")


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the server's worker thread dies (Linux), so that a killed
    server leaves no conversion running on its own."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


class JobQueue:
    """The jobs of one jobs folder and the worker that runs them one at a time, first queued first.

    Thread-safe (the web server calls it from many threads). ``python``: the interpreter jobs run with;
    ``env``: extra environment for them.
    """

    def __init__(self, jobs_dir: str | os.PathLike, *, python: str = sys.executable, env: dict[str, str] | None = None,
                 grace: float = CANCEL_GRACE) -> None:  # fmt: skip
        self.root = Path(jobs_dir).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.python, self.grace = python, grace
        package_root = str(Path(__file__).resolve().parents[1])  # jobs run in their folder: find svg3d from there
        paths = [package_root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), **(env or {})}
        self._cv = threading.Condition()
        self._pending: deque[str] = deque()
        self._proc: subprocess.Popen | None = None
        self._running: str | None = None
        self._cancelling: set[str] = set()
        self._demo_lock = threading.Lock()  # the demo clip is rendered once, by one submit
        self._closed = False
        self.jobs: dict[str, Job] = {}
        for folder in sorted(self.root.iterdir()):
            if JOB_ID.match(folder.name) and (folder / JOB_FILE).is_file():
                try:
                    job = Job.load(folder)
                except (OSError, ValueError, TypeError) as e:
                    log.warning("%s: unreadable job record (%s); skipped", folder, e)
                    continue
                if job.state in ACTIVE:  # its server stopped while it was queued or running
                    job.state, job.message = "interrupted", "the server stopped; resume to continue"
                    job.save()
                self.jobs[job.id] = job
        self._worker = threading.Thread(target=self._work, name="svg3d-jobs", daemon=True)
        self._worker.start()

    # -- creating jobs

    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and its (created) folder."""
        while True:
            job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            folder = self.root / job_id
            with contextlib.suppress(FileExistsError):
                folder.mkdir()
                return job_id, folder

    def submit(self, flags: Sequence[str], *, upload: str | os.PathLike | None = None, upload_name: str | None = None,
               depth_zip: str | os.PathLike | None = None, demo: bool = False, depth_model: str | None = None,
               max_upload_bytes: int) -> Job:  # fmt: skip
        """Check and queue a job; returns it. ``upload``: an uploaded video or zip of frames (a file inside the jobs
        folder, as the web server stores uploads); ``depth_zip``: a zip of depth maps; ``demo``: the bundled clip
        (with its exact depth unless a depth zip or model is given); ``depth_model``: a depth model the server
        found (``depth_models``: a hub id or a server folder, never a client's path).

        Raises ``InputError`` (one line, the CLI's flag names) for bad flags, a bad upload (not a video, corrupt,
        a frame range outside it), a bad zip, or a depth model this server does not have (``check_depth_model``:
        refused now, not queued to fail); nothing of a refused job is kept.
        """
        from .cli import FLAGS

        config = parse_flags(flags)
        if demo == (upload is not None):
            raise InputError("give a video (or a zip of frames) or choose the demo clip" if not demo else
                             "the demo clip or an upload: choose one")  # fmt: skip
        flag_model = any(_flag_name(f) == "--depth-model" for f in flags)
        if (depth_model is not None or flag_model) and depth_zip is not None:
            raise InputError("depth maps and a depth model both given: choose one depth source")
        if depth_model is not None and flag_model:
            raise InputError("the depth model is chosen twice: give one depth source")
        demo_depth = demo and depth_zip is None and depth_model is None and not flag_model  # the demo's exact depth
        if depth_zip is None and not demo_depth:
            check_depth_model(depth_model or config.depth.model)
        for what, path in (("upload", upload), ("depth maps", depth_zip)):
            if path is not None and not (Path(path).is_file() and inside(path, self.root)):
                raise InputError(f"{what}: not a file uploaded to this server")
        job_id, folder = self.new_folder()
        name, input_rel = "demo" if demo else safe_name(upload_name or Path(upload).name), ""
        try:
            depth = None
            if demo:
                video, demo_depth_dir = self.demo()
                input_rel = "input/demo.mp4"
                _link_or_copy(video, folder / input_rel)
                if demo_depth:
                    for f in io.list_depths(demo_depth_dir):
                        _link_or_copy(f, folder / "depth" / f.name)
                    depth = "depth"
            else:
                if Path(name).suffix.lower() == ".zip":
                    unpack_zip(Path(upload), folder / "input" / "frames", suffixes=io.IMAGE_SUFFIXES,
                               max_bytes=UNPACK_FACTOR * max_upload_bytes, what=name)  # fmt: skip
                    input_rel = "input/frames"
                else:
                    input_rel = f"input/{name}"
                    _link_or_copy(Path(upload), folder / input_rel)
            if depth_zip is not None:
                unpack_zip(Path(depth_zip), folder / "depth", suffixes=io.DEPTH_SUFFIXES,
                           max_bytes=UNPACK_FACTOR * max_upload_bytes, what=safe_name(Path(depth_zip).name))  # fmt: skip
                depth = "depth"
            self._probe(folder / input_rel, config, name)
            job = Job(id=job_id, folder=folder, name=name, input=input_rel, flags=list(flags), depth=depth,
                      depth_model=None if depth is not None else depth_model)  # fmt: skip
            job.save()
        except InputError as e:
            shutil.rmtree(folder, ignore_errors=True)
            message = e.flag_message(FLAGS)
            if input_rel:  # the input by the name the user gave it, not the server's path
                message = message.replace(str(folder / input_rel), name)
            raise InputError(message.replace(f"{folder}/", "")) from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        with self._cv:
            self.jobs[job.id] = job
            self._enqueue(job)
        return job

    @staticmethod
    def _probe(path: Path, config: ConvertConfig, name: str) -> None:
        """Refuse an input convert would refuse (not a video, corrupt, the frame range) before queueing it."""
        from .source import open_source

        if path.is_file() and path.suffix.lower() not in VIDEO_SUFFIXES:
            raise InputError(f"{name}: not a video or a zip of frames (expected {', '.join(VIDEO_SUFFIXES)} or .zip)")
        clip = config.clip
        open_source(path, start=clip.start_frame, count=clip.num_frames, size=clip.size).close()

    def demo(self) -> tuple[Path, Path]:
        """The demo clip and its depth folder (``demo_clip``), rendered once into ``<jobs>/.demo``."""
        with self._demo_lock:
            return demo_clip(self.root / ".demo")

    # -- the queue

    def _enqueue(self, job: Job) -> None:  # with self._cv held
        job.state, job.message = "queued", ""
        job.save()
        self._pending.append(job.id)
        self._cv.notify_all()

    def get(self, job_id: str) -> Job:
        """The job of ``job_id`` (``InputError`` for an id that is not one of this folder's jobs)."""
        if not isinstance(job_id, str) or not JOB_ID.match(job_id) or job_id not in self.jobs:
            raise InputError(f"{job_id!r}: no such job")
        return self.jobs[job_id]

    def position(self, job_id: str) -> int | None:
        """0 while the job runs, n >= 1 while it waits as the n-th in line (1: it runs next), None otherwise."""
        with self._cv:
            if self._running == job_id:
                return 0
            try:
                return self._pending.index(job_id) + 1
            except ValueError:
                return None

    def running(self) -> str | None:
        """The id of the running job, None when none runs."""
        with self._cv:
            return self._running

    def queue_length(self) -> int:
        with self._cv:
            return len(self._pending) + (self._running is not None)

    def cancel(self, job_id: str) -> Job:
        """Stop a job: taken off the queue, or its process group killed (within ``grace`` s + a moment)."""
        job = self.get(job_id)
        with self._cv:
            if job_id in self._pending:
                self._pending.remove(job_id)
                job.state, job.message = "cancelled", "cancelled before it started"
                job.save()
                return job
            if self._running != job_id or self._proc is None:
                return job
            proc = self._proc
            self._cancelling.add(job_id)
        _kill_group(proc, self.grace)
        with self._cv:
            self._cv.wait_for(lambda: self._running != job_id, timeout=5)
        return job

    def resume(self, job_id: str) -> Job:
        """Queue a stopped job again: the same command, which continues from the chunks in its work folder."""
        job = self.get(job_id)
        with self._cv:
            if job.state not in ACTIVE:
                self._enqueue(job)
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job is neither queued nor running (or ``timeout`` s pass); returns it."""
        job = self.get(job_id)
        with self._cv:
            self._cv.wait_for(lambda: job.state not in ACTIVE, timeout=timeout)
        return job

    def close(self) -> None:
        """Stop the worker and kill the running job (its chunks stay; it is ``interrupted``)."""
        with self._cv:
            self._closed = True
            proc = self._proc
            self._cv.notify_all()
        if proc is not None:
            _kill_group(proc, self.grace)
        self._worker.join(timeout=10)

    def _work(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._pending or self._closed)
                if self._closed:
                    return
                job = self.jobs[self._pending.popleft()]
                self._running = job.id
                job.state, job.message = "running", ""
                run = {"started": time.time(), "ended": None, "returncode": None}
                job.runs.append(run)
                job.save()
                try:
                    with open(job.folder / "stderr.log", "ab") as err, open(job.folder / "stdout.log", "ab") as out:
                        self._proc = subprocess.Popen(
                            job.command(self.python), cwd=job.folder, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                            env=self.env, start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                        )  # fmt: skip
                except OSError as e:
                    self._proc = None
                    rc = None
                    job.state, job.message = "failed", f"could not start convert: {e}"
                proc = self._proc
            if proc is not None:
                rc = proc.wait()
            with self._cv:
                run["ended"], run["returncode"] = time.time(), rc
                if proc is not None:
                    if job.id in self._cancelling:
                        job.state, job.message = "cancelled", "cancelled; finished chunks are kept: resume to continue"
                    elif self._closed:
                        job.state, job.message = "interrupted", "the server stopped; resume to continue"
                    elif rc == 0:
                        job.state, job.message = "done", ""
                    else:
                        job.state, job.message = "failed", _last_error(job.folder / "stderr.log") or f"convert exited with status {rc}"
                self._cancelling.discard(job.id)
                self._proc, self._running = None, None
                job.save()
                self._cv.notify_all()


def _kill_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the process group of ``proc`` (convert and anything it started), SIGKILL after ``grace`` s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
