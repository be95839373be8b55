"""``convert --gpus N``: the stages whose chunks are independent, computed by one process per device.

A stage that declares ``spread = True`` (depth, stabilisation, the fill) computes each chunk from its inputs'
stored frames alone: that is what lets a run resume at any chunk with the same bytes (``work.Runner``). So its
missing chunks can be cut into one contiguous range per device and computed by as many processes at once, each
with its own model on its own GPU, reading the complete stores of the stages before it. A worker writes its chunk
files and sends their record entries to this process, the only one that writes the stage's record
(``StageStore.write`` / ``record_chunk``): an interrupted run resumes from the chunks recorded, as always.

Stages run one after another here, each spread over every device (a worker reads the stages before its own from
their files, so they must be complete); the stages that cannot be spread (the diffusion filler's pre-pass, which
reads its own earlier windows; the export, whose encoders take the frames in order) run in this process between
them, as one device's run would. The one exception: when the stages run at once, the spread stage right before the
export (the fill) runs beside it (``Beside``), since the export is in this process and reads each chunk as it is
recorded; so the export follows the first worker's range and no longer waits for the whole fill. Results are those
of one device: the frames are the same (the plan of one run, cut into equal runs by ``work.split``, which cuts the
chunk where two runs meet: other files, the same frames), each worker plans its threads as the single run does
(``threads.ThreadPlan``: OpenCV's rounding depends on its thread count), and the devices are alike.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .checks import InputError

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often this process looks at its workers while it waits for their chunks


def gpu_devices(count: int | None, device, per_gpu: int = 1) -> tuple[str, ...]:
    """The devices of ``--gpus count`` for ``--device device``: every visible GPU for None on CUDA, the one device
    otherwise; each ``per_gpu`` times (``--processes-per-gpu``: processes sharing a GPU, where one process's Python
    cannot keep it busy). One line (``InputError``) for a count the machine does not have."""
    import torch

    if device.type != "cuda":
        if count not in (None, 1):
            raise InputError(f"--gpus {count}: the run is on the CPU (--device {device}); --gpus spreads the work over CUDA devices", params=("gpus",))
        if per_gpu != 1:
            raise InputError(f"--processes-per-gpu {per_gpu}: the run is on the CPU (--device {device})", params=("processes_per_gpu",))
        return (str(device),)
    return tuple(d for d in _cuda_devices(count, device, torch.cuda.device_count()) for _ in range(per_gpu))


def _cuda_devices(count: int | None, device, visible: int) -> tuple[str, ...]:
    """The GPUs of ``--gpus count`` on a machine with ``visible`` of them."""
    if count is None:
        return (str(device),) if device.index is not None else tuple(f"cuda:{i}" for i in range(visible))
    if device.index is not None and count != 1:
        raise InputError(f"--gpus {count} with --device {device}: give one GPU (--device cuda:N) or several (--gpus N)", params=("gpus", "device"))
    if not 1 <= count <= visible:
        raise InputError(f"--gpus {count}: this machine has {visible} CUDA device(s)", params=("gpus",))
    return (str(device),) if count == 1 else tuple(f"cuda:{i}" for i in range(count))


@dataclass(frozen=True)
class Job:
    """What a worker needs to build the same stages as this process (``pipeline``), on its own device."""

    input_path: Path
    config: object  # ConvertConfig, as fitted to the memory by this process
    out_dir: Path
    work_dir: Path
    threads: object  # threads.ThreadPlan of this run
    pipeline: Callable  # convert.pipeline: (clip, config, device, out_dir=, work_dir=) -> (stages, filler, plan)


class Workers:
    """One process per device, started once for a run and given one stage after another (``run_stage``); a context
    manager that stops them. Each builds the run's stages once (``convert.pipeline`` on its device)."""

    def __init__(self, job: Job, devices: tuple[str, ...]) -> None:
        context = mp.get_context("spawn")  # CUDA cannot be forked
        self.devices = devices
        self.results = context.Queue()
        self.tasks = [context.Queue() for _ in devices]
        self.processes = [
            context.Process(target=_serve, args=(job, device, tasks, self.results), name=f"svg3d-worker-{device}", daemon=True)
            for device, tasks in zip(devices, self.tasks, strict=True)
        ]
        for p in self.processes:
            p.start()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        for tasks in self.tasks:
            tasks.put(None)
        for p in self.processes:
            p.join(5 if exc[0] is None else 0.1)
            if p.is_alive():
                p.terminate()
                p.join(5)

    def run_stage(self, name: str, runner, chunk_frames: int, progress) -> None:
        """Compute stage ``name`` of ``runner`` (its inputs complete) over the devices; record its chunks as they come
        and finish it. A worker's error is raised here as the worker raised it."""
        from .work import StageReport

        store = runner.stores[name]
        missing = store.start()
        todo = sum(b - a for a, b in missing)
        advance, close = progress(name, store.num_frames, initial=store.num_frames - todo)
        started = time.perf_counter()
        try:
            parts = self.compute(name, store, store.plan(chunk_frames), advance)
            store.finish()
        finally:
            close()
        seconds = time.perf_counter() - started
        log.info("%-10s done: %d frames in %.1f s over %d devices, %.1f MB", name, todo, seconds, parts, store.bytes() / 1e6)
        runner.reports[name] = StageReport(name, True, seconds, todo, store.resumed_from)

    def compute(self, name: str, store, chunks: list[tuple[int, int]], advance: Callable[[int], None]) -> int:
        """Stage ``name``'s ``chunks``, cut into one contiguous run per device, computed by the workers; each chunk
        recorded in ``store`` as it comes (readers in this process wake), ``advance(n)`` as frames are done. Returns
        how many workers took part."""
        from .work import split

        groups = split(chunks, len(self.devices))
        log.info("%-10s %d frames over %d processes (%s)", name, sum(b - a for a, b in chunks), len(groups), ", ".join(self.devices[: len(groups)]))
        for tasks, run in zip(self.tasks, groups, strict=False):
            tasks.put((name, store.key, run))
        running = len(groups)
        while running:
            try:
                kind, payload = self.results.get(timeout=POLL_S)
            except queue.Empty:
                dead = [p for p in self.processes if not p.is_alive()]
                if dead:
                    raise RuntimeError(f"stage {name}: the process on {dead[0].name.rsplit('-', 1)[-1]} ended (exit {dead[0].exitcode})") from None
                continue
            if kind == "chunk":
                store.record_chunk(payload)
            elif kind == "frames":  # a worker's progress inside its chunk
                advance(payload)
            elif kind == "done":
                running -= 1
            else:  # "error": the worker's exception, raised here as a one-line InputError or a RuntimeError
                bad_input, message, params = payload
                raise InputError(message, params=params) if bad_input else RuntimeError(message)
        return len(groups)


class Beside:
    """A spread stage as ``work.Runner`` runs it beside the export in this process: its ``run`` hands the chunks to the
    workers (``Workers.compute``) and records each as it comes, so the export, in another thread here, reads the
    frames as soon as they are recorded instead of after the whole stage. The stage right before the export only:
    the stages before it are read by the workers from their files, complete."""

    spread = False  # (its processes are the workers)

    def __init__(self, stage, workers: Workers) -> None:
        self.stage, self.workers = stage, workers
        self.name, self.needs = stage.name, stage.needs

    def params(self) -> dict:
        return self.stage.params()

    def check(self) -> None:
        self.stage.check()

    def run(self, inputs: dict, store, chunks: list[tuple[int, int]], progress: Callable[[int], None]) -> None:
        self.workers.compute(self.name, store, chunks, progress)


def _serve(job: Job, device: str, tasks, results) -> None:
    """A worker: stage tasks ``(name, key, chunks)`` until None; each answered by its chunks' entries and "done", or
    by "error" with the exception (then the worker ends: the run stops)."""
    built = None
    while (task := tasks.get()) is not None:
        try:
            built = built or _build(job, device)
            _work(job, built, *task, results.put)
            results.put(("done", device))
        except BaseException as e:  # sent as its message: bad input stays one line, anything else names its type
            bad = isinstance(e, InputError)
            results.put(("error", (bad, str(e) if bad else f"{type(e).__name__}: {e}", getattr(e, "params", ()))))
            return


def _build(job: Job, device: str):
    """The run's clip and stages on ``device``, as ``convert`` builds them."""
    import torch

    from . import memory, threads
    from .stages.clip import Clip

    logging.basicConfig(level=logging.ERROR)  # the run's lines are the parent's; a worker only fails
    threads.apply(job.threads)
    device_ = torch.device(device)
    if device_.type == "cuda":
        torch.cuda.set_device(device_)
    memory.cap_gpu_memory(job.config.max_gpu_memory, device_)
    clip = Clip.open(job.input_path, job.config.clip)
    clip.decoder_threads(job.threads.decoder)
    stages, _, _ = job.pipeline(clip, job.config, device_, out_dir=job.out_dir, work_dir=job.work_dir, hand_on=False)
    return clip, stages


def _work(job: Job, built, name: str, key: str, chunks: list[tuple[int, int]], send: Callable) -> None:
    """Stage ``name``'s ``chunks``: each written to the stage's folder and its entry sent to the parent, and the frames
    done inside them as they are done (the parent's bars)."""
    from . import work
    from .stages.fill.stage import store_folder

    clip, stages = built

    class Shard(work.StageStore):
        """The stage's store in a worker: chunk files written here, their entries recorded by the parent."""

        def commit(self, first, arrays, stats=None) -> None:
            send(("chunk", self.write(first, arrays, stats)))

    def make_store(stage: str, key_: str, params: dict):
        cls = Shard if stage == name else work.StageStore
        return cls(job.work_dir, stage, key=key_, params=params, inputs={}, num_frames=clip.num_frames, folder=store_folder(stage, params))

    runner = work.Runner(stages, make_store, chunk_frames=job.config.chunk_frames, concurrent=False)  # the stores, as now
    stage, store = runner.stages[name], runner.stores[name]
    if store.key != key:
        raise RuntimeError(f"stage {name}: the worker made another key than the run's (a setting that depends on the device?)")
    stage.run({s: runner.stores[s] for s in stage.needs}, store, chunks, lambda n: send(("frames", n)))
