"""``python -m svg3d batch``: every video of a folder converted, long ones cut at scene cuts, in-process or on Ray.

    python -m svg3d batch INPUT_DIR -o OUT [--recursive] [--skip-error] [--ray [auto|ADDRESS]] [convert options]

Inputs are the video files (``io.VIDEO_SUFFIXES``) and frame folders (images, or a clip folder with
``images/``) of INPUT_DIR, and of its sub-folders with ``recursive`` (a frame folder is one input and is
not searched further; OUT is never searched). Input ``a/b.mp4`` writes its exports to ``OUT/a/b/`` and
works in ``OUT/a/b/work/`` (``work_root/a/b/`` with ``--work-dir``); two inputs that would share a folder
(``b.mp4`` and ``b.mkv``) keep their suffix (``OUT/a/b.mp4/``). ``--depth-from DIR`` holds one folder of
depth maps per input, at the same relative path (``DIR/a/b/``).

Units. The work is cut into units that depend only on their inputs and settings, so each gives the same
bytes wherever and however often it runs:

    plan     probe the input and, when its range has at least twice ``segment_frames`` frames, find its
             scene cuts (a light decode pass: ``shots``) and cut it there into segments of at least
             ``segment_frames`` frames; kept in ``work/segments.json``
    convert  ``convert.convert`` of the whole input, or of one segment (``ClipConfig(start_frame,
             num_frames)``) in ``work/segments/<first>-<end>/``: stable folders, so a rerun, or a retry on
             another worker, resumes it at chunk granularity from what the killed attempt committed
    join     the segments' exports joined into the input's (``join``: no re-encoding, the original's
             audio over the whole span, exact frame count), then the segments' own exports deleted

Splitting at cuts is what the method allows: depth is normalised per shot (``--depth-range shot``, the
default; with ``clip`` the range spans the whole video, so nothing is split) and the diffusion windows,
which continue from the previous window's latents, have nothing to continue across a cut. Inside a
segment the windows stay sequential (``convert`` runs them in order).

Skipping. A finished input has a batch record (``work/batch.json``): the key of its settings and of its
input's (and depth folder's) file sizes and modification times, and the size of every output. A rerun
skips an input whose record is current without opening anything; any other input goes to its units,
where ``convert``'s own records (content fingerprints) decide what is really left to do.

Executors. In-process (``ray=None``): the units one after another in this process. On Ray (``ray="auto"``:
the cluster this machine belongs to, or a new local one; or a cluster's address): one actor per
``unit_gpus`` GPUs (or per ``unit_cpus`` CPUs on a cluster without GPUs), created as units wait for one, each
keeping the models it loaded for its next units (``models.keep_loaded``); an actor whose process dies is restarted
and its unit retried (``max_restarts``, ``max_task_retries``: ``retries``). Both run the same ``Worker.run``
on the same units, so their outputs are the same. Every node must see INPUT_DIR, OUT and the model
folders at the same paths (a shared file system); svg3d itself is shipped to the workers (``connect``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path

from . import __version__, io, models, work
from .checks import InputError, gpu_out_of_memory
from .config import BatchSettings, ConvertConfig

log = logging.getLogger(__name__)

BATCH_RECORD = "batch.json"  # in an input's work folder: its finished outputs and their key
PLAN_RECORD = "segments.json"  # in an input's work folder: its segments
SEGMENTS = "segments"  # an input's work sub-folder of segment folders
RAY_REQUIREMENT = "ray==2.60.0"  # the version requirements.txt pins
RAY_CONNECT_TIMEOUT = 10.0  # seconds to reach a given cluster address (Ray alone retries for minutes: issue 24)


# --------------------------------------------------------------------------------------------------
# inputs and their folders


@dataclass(frozen=True)
class Job:
    """One input of a batch and where its outputs and work go."""

    input: Path
    name: str  # its path relative to INPUT_DIR (posix): the summary's name for it
    out_dir: Path
    work_dir: Path
    config: ConvertConfig  # the batch's, with this input's own depth folder
    stat: tuple  # sizes and modification times of the input (and its depth maps): ``files_stat``
    key: str  # the batch record's key: settings, segment length and ``stat``


def _is_frames_folder(path: Path) -> bool:
    folder = io.frames_folder(path)
    return any(f.suffix.lower() in io.IMAGE_SUFFIXES and not f.name.startswith(".") and f.is_file() for f in folder.iterdir())


def find_inputs(folder: Path, *, recursive: bool = False, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """The video files and frame folders in ``folder`` (and below, with ``recursive``), in natural order;
    nothing inside ``exclude`` (the output and work folders). Hidden entries are skipped."""
    excluded = [p.resolve() for p in exclude]
    found: list[Path] = []
    seen: set[Path] = set()  # folders visited, resolved: a link back up the tree is not followed twice

    def visit(d: Path) -> None:
        if d.resolve() in seen:
            return
        seen.add(d.resolve())
        for entry in sorted(d.iterdir(), key=lambda p: (io.natural_key(p.name), p.name)):
            if entry.name.startswith(".") or any(entry.resolve() == x or x in entry.resolve().parents for x in excluded):
                continue
            if entry.is_file() and entry.suffix.lower() in io.VIDEO_SUFFIXES:
                found.append(entry)
            elif entry.is_dir():
                if _is_frames_folder(entry):
                    found.append(entry)
                elif recursive:
                    visit(entry)

    visit(folder)
    return found


def output_names(inputs: list[Path], folder: Path) -> dict[Path, str]:
    """Each input's folder name under OUT: its relative path without the suffix, or with it where two would collide."""
    rel = {p: p.relative_to(folder) for p in inputs}
    bare = {p: (r.with_suffix("") if p.is_file() else r).as_posix() for p, r in rel.items()}
    taken = Counter(bare.values())
    return {p: rel[p].as_posix() if taken[bare[p]] > 1 and p.is_file() else bare[p] for p in inputs}


def files_stat(path: Path | None) -> tuple:
    """``(name, size, mtime_ns)`` of a file, or of each image or depth file of a folder: what ``make`` looks at."""
    if path is None:
        return ()
    if path.is_file():
        st = path.stat()
        return ((path.name, st.st_size, st.st_mtime_ns),)
    folder = io.frames_folder(path)
    if not folder.is_dir():
        return ()
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
    return tuple((f.name, st.st_size, st.st_mtime_ns) for f in files for st in (f.stat(),))


def make_jobs(input_dir: Path, out_dir: Path, config: ConvertConfig, settings: BatchSettings) -> list[Job]:
    """The jobs of a batch: one per input (``find_inputs``), with its folders, its depth folder and its key."""
    exclude = (out_dir,) + ((settings.work_root,) if settings.work_root is not None else ())
    inputs = find_inputs(input_dir, recursive=settings.recursive, exclude=exclude)
    jobs = []
    for path, name in output_names(inputs, input_dir).items():
        out = out_dir / name
        work_dir = settings.work_root / name if settings.work_root is not None else work.default_work_dir(out)
        depth_root = config.depth.depth_from
        job_config = config if depth_root is None else replace(config, depth=replace(config.depth, depth_from=depth_root / name))
        stat = (files_stat(path), files_stat(job_config.depth.depth_from))
        key = work.digest({
            "batch": __version__, "config": asdict(job_config), "segment_frames": settings.segment_frames, "stat": stat,
        })  # fmt: skip
        jobs.append(Job(path, path.relative_to(input_dir).as_posix(), out, work_dir, job_config, stat, key))
    return jobs


def finished(job: Job) -> bool:
    """Whether the input's outputs are current (its batch record: the key and every output's size); nothing is opened."""
    return work.OutputRecord(job.work_dir / BATCH_RECORD).current(job.key)


# --------------------------------------------------------------------------------------------------
# plans: the segments of an input


@dataclass(frozen=True)
class Plan:
    """How an input is converted: ``segments`` ``((first input frame, frames), ...)`` in order, covering its range."""

    segments: tuple[tuple[int, int], ...]
    rate: Fraction  # the input's frame rate (the exports')
    total_frames: int  # of the whole input (the range may be less)
    has_audio: bool

    @property
    def split(self) -> bool:
        return len(self.segments) > 1

    @property
    def first(self) -> int:
        return self.segments[0][0]

    @property
    def num_frames(self) -> int:
        return sum(n for _, n in self.segments)


def split_at_cuts(first: int, num_frames: int, cuts: list[int], min_frames: int) -> tuple[tuple[int, int], ...]:
    """Segments ``(first, count)`` of a range starting at cuts (indices in the range), each at least ``min_frames``
    long: a cut is used when it is that far from the last one used and from the end."""
    edges = [0]
    for c in cuts:
        if c - edges[-1] >= min_frames and num_frames - c >= min_frames:
            edges.append(c)
    edges.append(num_frames)
    return tuple((first + a, b - a) for a, b in zip(edges, edges[1:], strict=False))


def _small_frames(source, chunk: int) -> Iterator:
    """The range's frames at the shot signature's size, ``uint8 (n, h, w, 3)`` chunks: a video is decoded and shrunk
    in one swscale pass (area), without the full-size RGB frames convert makes; a folder's files are read."""
    import av
    import numpy as np

    from .shots import SIGNATURE_SIZE

    info = source.info
    if info.kind != "video":
        for a in range(0, info.num_frames, chunk):
            yield source.frames(a, min(a + chunk, info.num_frames))
        return
    w, h = SIGNATURE_SIZE
    batch, seen = [], 0
    try:
        with av.open(str(info.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index < info.start:
                    continue
                if seen == info.num_frames:
                    break
                batch.append(frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA"))
                seen += 1
                if len(batch) == chunk:
                    yield np.stack(batch)
                    batch = []
    except av.error.FFmpegError as e:
        raise InputError(f"{info.path}: cannot decode frame {info.start + seen} ({e.strerror or type(e).__name__}); the file is damaged") from None
    if batch:
        yield np.stack(batch)
    if seen < info.num_frames:
        raise InputError(f"{info.path}: {info.start + seen} of its {info.total_frames} frames decode; the file is truncated or damaged")


def scan_cuts(source, *, chunk: int = 256) -> list[int]:
    """Scene cuts of a ``source.Source``'s range (indices in the range): ``shots.detect_cuts`` over the whole range's
    ``shots.cut_scores``, from a light decode pass (``_small_frames``)."""
    import numpy as np

    from . import shots

    scores, previous = [], None
    for frames in _small_frames(source, chunk):
        signatures = shots.frame_signature(frames)
        scores.append(shots.cut_scores(signatures, previous))
        previous = signatures[-1]
    return shots.detect_cuts(np.concatenate(scores))


def plan_job(job: Job, segment_frames: int) -> Plan:
    """Probe the input and choose its segments (module docstring); kept in ``work/segments.json`` for reruns."""
    import json

    from .source import open_source

    clip, depth_from = job.config.clip, job.config.depth.depth_from
    key = work.digest({"plan": __version__, "stat": job.stat[0], "clip": asdict(clip), "segment_frames": segment_frames,
                       "depth_range": job.config.matrix.depth_range})  # fmt: skip
    record = job.work_dir / PLAN_RECORD
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        kept = json.loads(record.read_text())
        if kept["key"] == key:
            return Plan(tuple(map(tuple, kept["segments"])), Fraction(kept["rate"]), kept["total_frames"], kept["has_audio"])
    source = open_source(job.input, start=clip.start_frame, count=clip.num_frames, size=clip.size)  # a damaged input fails here
    if depth_from is not None and not depth_from.is_dir():
        raise InputError(f"depth_from {depth_from}: no such folder (batch reads each input's depth maps from DEPTH/<its relative path>/)",
                         params=("depth_from",))  # fmt: skip
    info = source.info
    segments: tuple[tuple[int, int], ...] = ((info.start, info.num_frames),)
    if segment_frames and info.num_frames >= 2 * segment_frames:
        if job.config.matrix.depth_range == "shot":
            cuts = scan_cuts(source)
            segments = split_at_cuts(info.start, info.num_frames, cuts, segment_frames)
            log.info("%s: %d cuts, %d segments: %s", job.name, len(cuts), len(segments), ", ".join(f"{a}..{a + n - 1}" for a, n in segments))
        else:
            log.info("%s: not split: --depth-range clip normalises depth over the whole clip, which a segment cannot see", job.name)
    source.close()
    plan = Plan(segments, info.rate, info.total_frames, info.has_audio)
    job.work_dir.mkdir(parents=True, exist_ok=True)
    io.write_text(record, json.dumps({"key": key, "segments": segments, "rate": str(info.rate), "total_frames": info.total_frames,
                                      "has_audio": info.has_audio}))  # fmt: skip
    return plan


def segment_dir(job: Job, first: int, count: int) -> Path:
    """A segment's stable folder (its exports in ``out/``, its stages in ``work/``): named by its frames."""
    return job.work_dir / SEGMENTS / f"{first:08d}-{first + count:08d}"


# --------------------------------------------------------------------------------------------------
# units and the worker that runs them


@dataclass(frozen=True)
class Unit:
    """One piece of work: ``plan`` a job, ``convert`` segment ``index`` of its plan, or ``join`` the segments."""

    kind: str
    job: Job
    segment_frames: int = 0  # plan
    plan: Plan | None = None  # convert, join
    index: int = 0  # convert: the segment
    manifests: tuple[dict[str, str], ...] = ()  # join: each segment's exports, in order

    def describe(self) -> str:
        if self.kind == "convert" and self.plan is not None and self.plan.split:
            first, count = self.plan.segments[self.index]
            return f"{self.job.name} frames {first}..{first + count - 1}"
        return f"{self.kind} {self.job.name}"


@dataclass(frozen=True)
class Outcome:
    """What a unit gave: ``value`` (a ``Plan`` or a manifest ``{export: path}``), or a one-line ``error``."""

    value: object = None
    error: str | None = None
    params: tuple[str, ...] = ()  # the library parameters the error names (``InputError.params``)
    seconds: float = 0.0
    worker: str = ""  # host:pid that ran it


@contextlib.contextmanager
def _unit_log(path: Path) -> Iterator[None]:
    """The unit's log records (svg3d's, INFO and up) appended to ``path`` too: each input keeps its own log."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
    except OSError:
        yield
        return
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("svg3d")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


def _one_line(e: BaseException) -> str:
    if (oom := gpu_out_of_memory(e)) is not None:
        return oom
    if isinstance(e, OSError) and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    text = " ".join(str(e).split()) or type(e).__name__
    return text if isinstance(e, InputError) else f"{type(e).__name__}: {text}"


class Worker:
    """Runs units (``run``), in this process or as a Ray actor; keeps its models loaded between them (``models.keep_loaded``).

    device: ``--device``; resolved here, where the unit runs (on Ray, ``auto`` is the GPU Ray gave this
    worker, if any). ``progress``: convert's progress bars (in-process only). ``on_chunk(stage, first, count)``:
    called after every committed chunk of every convert (tests interrupt or kill a worker there).
    """

    def __init__(self, device: str = "auto", *, progress=None, on_chunk=None, on_ray: bool = False) -> None:
        self.device_name, self.progress, self.on_chunk, self.on_ray = device, progress, on_chunk, on_ray
        self._device = None
        self.models = models.KeptModels()
        if on_ray:  # a process of its own: its svg3d records reach the unit logs
            logging.getLogger("svg3d").setLevel(logging.INFO)

    @property
    def device(self):
        if self._device is None:
            if self.on_ray and self.device_name in (None, "", "auto"):
                import ray
                import torch

                self._device = torch.device("cuda" if ray.get_gpu_ids() else "cpu")
            else:
                from .cli import resolve_device

                self._device = resolve_device(str(self.device_name))
        return self._device

    def run(self, unit: Unit) -> Outcome:
        started = time.perf_counter()
        where = f"{socket.gethostname()}:{os.getpid()}"
        job = unit.job
        log_dir = job.work_dir
        if unit.kind == "convert" and unit.plan is not None and unit.plan.split:
            log_dir = segment_dir(job, *unit.plan.segments[unit.index]) / "work"
        with _unit_log(log_dir / work.LOG_FILE):
            log.info("batch: %s on %s", unit.describe(), where)
            try:
                if unit.kind == "plan":
                    value = plan_job(job, unit.segment_frames)
                elif unit.kind == "convert":
                    with models.keep_loaded(self.models):  # the models stay loaded for this worker's next units
                        value = self._convert(unit)
                elif unit.kind == "join":
                    value = join_job(job, unit.plan, unit.manifests)
                else:
                    raise ValueError(f"unit kind {unit.kind!r}")
            except Exception as e:  # one input's failure is a row of the summary, never the end of the batch
                if isinstance(e, InputError):
                    log.info("batch: %s stopped: %s", unit.describe(), e)
                else:
                    log.exception("batch: %s failed", unit.describe())
                return Outcome(error=_one_line(e), params=getattr(e, "params", ()), seconds=time.perf_counter() - started, worker=where)
        return Outcome(value=value, seconds=time.perf_counter() - started, worker=where)

    def _convert(self, unit: Unit) -> dict[str, str]:
        from . import convert

        job, plan = unit.job, unit.plan
        kw = {"device": self.device, "progress": self.progress, "on_chunk": self.on_chunk}
        if not plan.split:
            result = convert.convert(job.input, job.out_dir, job.config, work_dir=job.work_dir, **kw)
            outputs = {name: str(path) for name, path in result.exports.items()}
            work.OutputRecord(job.work_dir / BATCH_RECORD).write(job.key, result.exports)
            return outputs
        first, count = plan.segments[unit.index]
        folder = segment_dir(job, first, count)
        config = replace(job.config, clip=replace(job.config.clip, start_frame=first, num_frames=count))
        result = convert.convert(job.input, folder / "out", config, work_dir=folder / "work", **kw)
        return {name: str(path) for name, path in result.exports.items()}


def join_job(job: Job, plan: Plan, manifests: tuple[dict[str, str], ...]) -> dict[str, str]:
    """The input's exports from its segments' (``join.join_exports``) with the original's audio; its batch record."""
    from .join import join_exports
    from .stages import export

    busy = f"another convert or batch is writing {job.out_dir}; wait for it"
    job.out_dir.mkdir(parents=True, exist_ok=True)
    with work.lock(job.out_dir, work.OUTPUT_LOCK_FILE, busy):
        export.remove_stale_parts(job.out_dir)
        audio = None
        if plan.has_audio:
            trimmed = plan.first > 0 or plan.num_frames < plan.total_frames  # as convert cuts a clip's audio
            audio = export.audio_track(
                job.input, job.work_dir / "audio.m4a", start=float(plan.first / plan.rate),
                duration=float(plan.num_frames / plan.rate) if trimmed else None,
            )  # fmt: skip
        written = join_exports(
            [{k: Path(v) for k, v in m.items()} for m in manifests], [n for _, n in plan.segments], job.out_dir,
            fps=plan.rate, settings=job.config.exports, audio=audio,
        )  # fmt: skip
    work.OutputRecord(job.work_dir / BATCH_RECORD).write(job.key, written)
    for first, count in plan.segments:  # the joined outputs hold everything; a rerun re-exports from the stages if needed
        shutil.rmtree(segment_dir(job, first, count) / "out", ignore_errors=True)
    return {name: str(path) for name, path in written.items()}


# --------------------------------------------------------------------------------------------------
# executors


class _InProcess:
    """The units one after another, in this process."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.queue: deque[Unit] = deque()

    def has_room(self) -> bool:
        return not self.queue

    @property
    def busy(self) -> int:
        return len(self.queue)

    def submit(self, unit: Unit) -> None:
        self.queue.append(unit)

    def wait(self) -> tuple[Unit, Outcome]:
        unit = self.queue.popleft()
        return unit, self.worker.run(unit)

    def close(self) -> None:
        """Nothing to release: the worker's models are kept per unit (``models.keep_loaded``) and go with it."""


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InputError(f"ray: Ray is not installed here; pip install {RAY_REQUIREMENT}", params=("ray",)) from None
    return ray


def _unreachable(address: str, timeout: float) -> str | None:
    """Why nothing accepts a TCP connection at ``address`` (``host:port`` or ``ray://host:port``) within ``timeout``
    seconds, or None when something does (or the address names no port to try)."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except OSError as e:
        return e.strerror or type(e).__name__


def connect(address: str | None = "auto", *, timeout: float = RAY_CONNECT_TIMEOUT, **init_kwargs) -> None:
    """Connect to a Ray cluster (``auto``/None: the one this machine belongs to, else a new local one) with svg3d
    shipped to its workers (the job's ``py_modules``, so every node runs this very code). ``init_kwargs`` go to
    ``ray.init`` (a new local cluster's ``num_cpus``, ``include_dashboard``, ``object_store_memory`` ...).

    A given address is tried first for ``timeout`` seconds: where nothing listens, Ray itself retries for
    minutes before it fails; this says so in one line at once."""
    if address not in (None, "auto", "local"):
        why = _unreachable(address, timeout)
        if why is not None:
            raise InputError(f"ray {address}: no Ray cluster answers there ({why}); start one with 'ray start --head' or use --ray auto",
                             params=("ray",))  # fmt: skip
    ray = _import_ray()
    runtime_env = {"py_modules": [str(Path(__file__).resolve().parent)]}
    try:
        ray.init(address=None if address in (None, "auto") else address, runtime_env=runtime_env, logging_level=logging.WARNING, **init_kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise InputError(f"ray {address}: cannot connect ({_one_line(e)})", params=("ray",)) from None


class _OnRay:
    """Units on Ray actors: as many as the cluster's resources hold, created as units wait for one."""

    def __init__(self, settings: BatchSettings, device: str, on_chunk) -> None:
        ray = self.ray = _import_ray()
        self.owns = not ray.is_initialized()
        if self.owns:
            connect(settings.ray)
        resources = ray.cluster_resources()
        gpus = settings.unit_gpus if settings.unit_gpus is not None else (1.0 if resources.get("GPU", 0) >= 1 else 0.0)
        if gpus:
            self.capacity = int(resources.get("GPU", 0) // gpus)
            if not self.capacity:
                raise InputError(f"unit_gpus {gpus:g}: the cluster has {resources.get('GPU', 0):g} GPUs", params=("unit_gpus",))
        else:
            self.capacity = int(resources.get("CPU", 0) // settings.unit_cpus)
            if not self.capacity:
                raise InputError(f"unit_cpus {settings.unit_cpus:g}: the cluster has {resources.get('CPU', 0):g} CPUs", params=("unit_cpus",))
        self.retries = settings.retries
        self.actor_class = ray.remote(Worker).options(
            num_cpus=settings.unit_cpus, num_gpus=gpus, max_restarts=settings.retries, max_task_retries=settings.retries,
        )  # fmt: skip
        self.args = (device,)
        self.kwargs = {"on_chunk": on_chunk, "on_ray": True}
        self.actors: list = []
        self.free: list = []
        self.running: dict = {}  # object ref -> (actor, unit)
        log.info("ray: %d workers of %g CPUs and %g GPUs", self.capacity, settings.unit_cpus, gpus)

    def has_room(self) -> bool:
        return len(self.running) < self.capacity

    @property
    def busy(self) -> int:
        return len(self.running)

    def submit(self, unit: Unit) -> None:
        if self.free:
            actor = self.free.pop()
        else:
            actor = self.actor_class.remote(*self.args, **self.kwargs)
            self.actors.append(actor)
        self.running[actor.run.remote(unit)] = (actor, unit)

    def wait(self) -> tuple[Unit, Outcome]:
        ray = self.ray
        (ref,), _ = ray.wait(list(self.running), num_returns=1)
        actor, unit = self.running.pop(ref)
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayActorError as e:  # died more often than it may be restarted: not given out again
            outcome = Outcome(error=f"its worker died {self.retries + 1} times ({type(e).__name__})")
            log.warning("ray: %s: %s", unit.describe(), e)
        except ray.exceptions.RayError as e:
            outcome = Outcome(error=f"ray: {_one_line(e)}")
            self.free.append(actor)
        else:
            self.free.append(actor)
        return unit, outcome

    def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        if self.owns:
            self.ray.shutdown()


# --------------------------------------------------------------------------------------------------
# the batch


@dataclass
class Row:
    """One input in the summary: ``status`` done, skipped, failed or not run (a batch stopped by a failure)."""

    name: str
    status: str = "not run"
    segments: int | None = None
    seconds: float = 0.0
    error: str | None = None
    params: tuple[str, ...] = ()
    outputs: dict[str, str] = field(default_factory=dict)

    def message(self, flags: dict[str, str] | None = None) -> str:
        """The error with library parameter names written as the CLI's flags (``InputError.flag_message``)."""
        return InputError(self.error or "", params=self.params).flag_message(flags) if self.error else ""


@dataclass
class BatchReport:
    rows: list[Row]
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.rows)

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.count("not run")

    def table(self, flags: dict[str, str] | None = None) -> str:
        """The summary: one line per input (failed ones with their one-line error), then the counts."""
        width = max([len("input"), *(len(r.name) for r in self.rows)])
        lines = [f"{'input':<{width}}  status    segments  seconds"]
        for r in self.rows:
            segments = "-" if r.segments is None else str(r.segments)
            seconds = f"{r.seconds:.1f}" if r.status in ("done", "failed") else "-"
            line = f"{r.name:<{width}}  {r.status:<8}  {segments:>8}  {seconds:>7}"
            lines.append(line + (f"  {r.message(flags)}" if r.error else ""))
        counts = ", ".join(f"{self.count(s)} {s}" for s in ("done", "skipped", "failed", "not run") if self.count(s) or s != "not run")
        lines.append(f"{counts} in {self.seconds:.1f} s")
        return "\n".join(lines)


def run_batch(
    input_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: ConvertConfig | None = None,
    *,
    settings: BatchSettings | None = None,
    device: str = "auto",
    progress=None,
    on_chunk: Callable[[str, int, int], None] | None = None,
) -> BatchReport:
    """Convert every input of ``input_dir`` into ``out_dir/<relative path>/`` (module docstring); a report per input.

    Raises ``InputError`` for a batch that cannot start (no such folder, no inputs, an encoder this FFmpeg lacks,
    no Ray); a failing input is a failed row instead. Without ``settings.skip_error`` the first failure stops
    new units (those running finish) and the rest are reported "not run". ``progress(desc, total, initial=0)``:
    a bar over the inputs, and convert's bars in-process. ``on_chunk``: ``Worker``.
    """
    from .encode import check_encoder

    config = ConvertConfig() if config is None else config
    settings = BatchSettings() if settings is None else settings
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    started = time.perf_counter()
    if not input_dir.is_dir():
        what = "is a file: convert takes one video" if input_dir.is_file() else "no such folder"
        raise InputError(f"input {input_dir}: {what}", params=("input",))
    check_encoder(config.exports.encoder)
    depth_root = config.depth.depth_from
    if depth_root is not None and not depth_root.is_dir():
        raise InputError(f"depth_from {depth_root}: no such folder (batch takes one folder of depth maps per input)", params=("depth_from",))
    work.check_paths(None, out_dir, settings.work_root or out_dir)
    work.make_dirs(out_dir)
    jobs = make_jobs(input_dir, out_dir, config, settings)
    if not jobs:
        hint = "" if settings.recursive else " (--recursive searches its sub-folders)"
        raise InputError(f"input {input_dir}: no videos ({' '.join(io.VIDEO_SUFFIXES)}) or frame folders{hint}", params=("input",))
    rows = {job.name: Row(job.name) for job in jobs}
    advance, close = (progress or (lambda desc, total, initial=0: ((lambda n: None), (lambda: None))))("batch", len(jobs))
    todo = []
    for job in jobs:
        if finished(job):
            rows[job.name].status = "skipped"
            log.info("batch: %s is done already (its outputs are current)", job.name)
            advance(1)
        else:
            todo.append(job)
    log.info("batch: %d inputs, %d to convert%s", len(jobs), len(todo), f" on Ray ({settings.ray})" if settings.ray else " in this process")
    executor = None
    try:
        if todo:
            if settings.ray:
                executor = _OnRay(settings, device, on_chunk)
            else:
                executor = _InProcess(Worker(device, progress=progress, on_chunk=on_chunk))
            _drive(executor, todo, rows, settings, advance)
    finally:
        close()
        if executor is not None:
            executor.close()
    return BatchReport([rows[job.name] for job in jobs], time.perf_counter() - started)


def _drive(executor, jobs: list[Job], rows: dict[str, Row], settings: BatchSettings, advance) -> None:
    """Feed the executor: a job's plan, then its segments' converts, then its join; record each outcome in its row."""
    queue: deque[Unit] = deque(Unit("plan", job, segment_frames=settings.segment_frames) for job in jobs)
    manifests: dict[str, dict[int, dict[str, str]]] = {job.name: {} for job in jobs}
    stopping = False
    while (queue and not stopping) or executor.busy:
        while queue and not stopping and executor.has_room():
            executor.submit(queue.popleft())
        unit, outcome = executor.wait()
        job, row = unit.job, rows[unit.job.name]
        if row.status == "failed":
            continue  # another unit of this input failed already
        row.seconds += outcome.seconds
        if outcome.error is not None:
            row.status, row.error, row.params = "failed", outcome.error, outcome.params
            log.warning("batch: %s failed: %s", unit.describe(), outcome.error)
            queue = deque(u for u in queue if u.job.name != job.name)
            advance(1)
            stopping = stopping or not settings.skip_error
            continue
        if unit.kind == "plan":
            plan: Plan = outcome.value
            row.segments = len(plan.segments)
            # this input's segments first: its outputs land early and its work is not spread over the whole batch
            queue.extendleft(reversed([Unit("convert", job, plan=plan, index=k) for k in range(len(plan.segments))]))
        elif unit.kind == "convert":
            manifests[job.name][unit.index] = outcome.value
            if len(manifests[job.name]) == len(unit.plan.segments):
                if unit.plan.split:
                    ordered = tuple(manifests[job.name][k] for k in range(len(unit.plan.segments)))
                    queue.appendleft(Unit("join", job, plan=unit.plan, manifests=ordered))
                else:
                    row.status, row.outputs = "done", outcome.value
                    advance(1)
        else:
            row.status, row.outputs = "done", outcome.value
            advance(1)
