"""Thread counts chosen from the machine and from what runs at once, never inherited from the environment.

Four pools share the cores: torch's intra-op threads (OpenMP on a CPU: convolutions, the guided filter, the
warps), OpenCV's (DIS flow, resizes, colour conversions), the input's decoder (FFmpeg frame and slice threads) and
the video encoders' (libx264/libx265 frame threads).
Left alone each takes every core: torch and OpenCV one thread per core, libx264 1.5 per core, per encoder. With
the concurrent runner's stages (up to ~3 at once) and the other programs on the machine that is several threads
per core, and OpenMP's threads spin while they wait for each other at every parallel region's barrier: a thread
whose core is taken stalls the region for a whole scheduler slice. That is what the issue saw (issue 21): on a
busy 2-core machine ``convert`` ran ~3x faster with ``OMP_NUM_THREADS=1``, and on a quiet one 1.2x slower.

The rule (``plan_threads``):

- the cores to plan for: ``convert --threads N``, by default the machine's (``os.cpu_count``), not the CPU set or
  the load of the moment, since OpenCV's DIS rounds by its thread count and a resumed run must plan as the first
  did; on a machine busy with other work the user gives fewer (figures below). ``machine_plan`` (the process's
  cores, ``sched_getaffinity``, less the 1-minute load average) plans for the moment, for benchmarks;
- on a CPU, each of the ``concurrent_stages`` stages gets an equal share of those cores for torch and OpenCV
  (they run one after the other inside a stage, so both get the whole share), and the export stage's encoders
  split its share; no pool has more threads than its share of cores, so nothing spins against anything;
- on a CPU, the fill (over half of a run's time with the classical filler) computes ``fill_workers`` contiguous runs
  of its chunks at once, each in a thread of its own on ``fill_torch`` torch threads (``work.Runner``'s workers,
  ``work.split``: the same frames, the same bytes; measured on the quiet 2-core VM, README). Its per-frame ops are small (a 640x360 frame's warps, box filters, masks): torch's threads split each
  of them and wait for each other at its end, so two threads did not keep two cores busy, while two chunks at once
  share nothing. torch's count is per calling thread on its OpenMP builds (``torch.set_num_threads`` sets the
  calling thread's OpenMP count, and the default of threads that start later): each stage thread and each
  worker sets its own (``enter_stage``); on other builds it is one count for the process, and the workers
  leave it as it is;
- on CUDA, the stages' heavy work is on the GPU: torch needs a thread to launch kernels and a few for its CPU
  ops (``GPU_TORCH_THREADS``), OpenCV does the CPU side of decoding and the classical filler's rest; the cores
  left over go to the encoders, which are then the main CPU work (``convert`` at 1080p: three libx264 streams).

Measured on this project's 2-core machine (``bench/bench_threads.py``, ``bench/results/threads.json``: ``convert`` of
16 frames of 640x360 on the CPU, DIS and the classical filler; 2026-12-07, the VM otherwise quiet), wall time per
frame with the plan for every core (the default) -> ``--threads 1`` -> ``--threads`` of the cores the load average
leaves free (``free_cpus``):

- quiet: 0.593 s -> 0.731 s (x0.81) -> 0.716 s (x0.83: the load average still counted the run before, so it planned
  one core); two threads and the fill's two runs of chunks pay (and 0.412 against 0.520 s per frame on 48 frames,
  README);
- two more spinning processes: 1.802 s -> 1.087 s (x1.66) -> 1.112 s (x1.62); CPU time 1.49 -> 0.76 s per frame.

So the default plans for every core, and on a machine busy with other work ``--threads`` is the user's lever (a
plan from the load average alone cannot tell a busy machine from the tail of its own last run).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

GPU_TORCH_THREADS = 2  # torch's CPU threads per stage on CUDA: one launches kernels, one for small CPU-side ops
# Chunks of the fill computed at once on a CPU: each holds a chunk and its context (memory.estimate_peak counts them);
# two take the cores of the 2-core machine the CPU figures are for, and more would multiply the memory for cores that
# torch's threads inside each chunk use as well.
MAX_FILL_WORKERS = 2
# On CUDA one run by default: ``--fill-workers 2`` runs two, each thread launching on a CUDA stream of its own
# (``enter_stage``), so that one run's CPU side (its Python, OpenCV's Telea, the chunk's hashes) and its read-backs
# overlap the other's GPU work, where one thread kept an H100 ~30 % busy at 1080p (issue 21); each run holds its chunk
# and context on the GPU. On an H100 at 1080p two runs gave 4.16 frames/s against one's 3.77 (x1.10) for 50.9 GB of
# GPU memory against 31.0 (bench/results/h100-2026-12-07-e; the same bytes, tested there with three runs), and two
# runs do not fit under a 23 GiB cap, where one runs as fast as uncapped (bench/results/h100-2026-12-07-f).
GPU_FILL_WORKERS = 1
# Chunks a stage's store writes at once on CUDA (``work.StageStore.commit``): a stage computes faster than one thread
# deflates its chunks there (1080p depth), and the cores are idle; on a CPU the cores are the stages' (one at a time).
GPU_WRITES = 3


@dataclass(frozen=True)
class ThreadPlan:
    """Threads for each pool of one process; ``apply`` sets them (torch and OpenCV are process-wide settings).

    torch: ``torch.set_num_threads``. opencv: ``cv2.setNumThreads``. decoder: the input's decoder threads
    (``source.open_source(threads=)``). encoder: each video encoder's ``codec_context.thread_count``
    (libx264/libx265), for ``encoders`` encoders running at once.
    fill_workers: runs of the fill's chunks computed at once (``work.Runner``'s ``workers``, ``work.split``), each
    thread on ``fill_torch`` torch threads. writes: chunks each stage's store deflates and hashes at once in the
    background (``work.StageStore.writes``; each holds its chunk's arrays). cpus: the cores planned for (free ones);
    concurrent_stages, device: what the plan was made for.
    """

    torch: int
    opencv: int
    decoder: int
    encoder: int
    cpus: int
    concurrent_stages: int
    device: str
    fill_workers: int = 1
    fill_torch: int = 1
    writes: int = 1

    def describe(self) -> str:
        fill = f", the fill {self.fill_workers} chunks at once on {self.fill_torch} torch threads each" if self.fill_workers > 1 else ""
        return (
            f"threads: torch {self.torch}, OpenCV {self.opencv}, decoder {self.decoder}, {self.encoder} per encoder{fill} "
            f"({self.cpus} free cores, {self.concurrent_stages} stages at once, {self.device})"
        )

    def stage_torch(self, workers: int) -> int:
        """torch threads of each thread of a stage computing ``workers`` chunks at once (the fill's, or one)."""
        return self.fill_torch if workers > 1 else self.torch


def available_cpus() -> int:
    """The cores this process may run on: its affinity mask where the OS has one (Linux), else ``os.cpu_count``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def free_cpus(cpus: int, load: float) -> int:
    """Cores of ``cpus`` left after a load of ``load`` runnable threads (rounded to the nearest core, at least 1)."""
    return max(1, min(cpus, math.floor(cpus - max(0.0, load) + 0.5)))


def plan_threads(
    cpus: int, concurrent_stages: int = 1, device: str = "cpu", *, encoders: int = 1, fill_workers: int | None = None
) -> ThreadPlan:
    """Thread counts for ``cpus`` free cores and ``concurrent_stages`` stages at once on ``device`` ("cpu", "cuda",
    or a ``torch.device``'s string), with ``encoders`` video encoders writing at once (module docstring's rule);
    ``fill_workers``: the fill's runs of chunks at once (``convert --fill-workers``; None: ``MAX_FILL_WORKERS`` on a
    CPU, at most one per core, ``GPU_FILL_WORKERS`` on CUDA)."""
    if cpus < 1 or concurrent_stages < 1 or encoders < 1 or (fill_workers is not None and fill_workers < 1):
        raise ValueError(
            f"cpus, concurrent_stages, encoders and fill_workers must be >= 1, got {cpus}, {concurrent_stages}, {encoders}, {fill_workers}"
        )
    kind = str(device).split(":")[0]
    share = max(1, cpus // concurrent_stages)  # each stage's cores
    if kind == "cuda":
        torch_threads = min(share, GPU_TORCH_THREADS)
        opencv = share
        # the other stages each keep about their torch threads busy; the encoders have the rest
        encoder_cores = max(1, cpus - (concurrent_stages - 1) * torch_threads)
    else:
        torch_threads = opencv = share
        encoder_cores = share
    # the fill takes at least a core per chunk it computes (the others' idle ones when the stages overlap); alone, it
    # splits its cores among them
    workers = fill_workers or (GPU_FILL_WORKERS if kind == "cuda" else min(MAX_FILL_WORKERS, cpus))
    return ThreadPlan(
        torch=torch_threads,
        opencv=opencv,
        decoder=opencv,  # decoding runs in the depth stage, beside its OpenCV work (colour conversion, resize)
        encoder=max(1, encoder_cores // encoders),
        cpus=cpus,
        concurrent_stages=concurrent_stages,
        device=kind,
        fill_workers=workers,
        writes=GPU_WRITES if kind == "cuda" else 1,
        fill_torch=(max(1, share // workers) if concurrent_stages == 1 else share) if workers > 1 and kind != "cuda" else torch_threads,
    )


def machine_plan(concurrent_stages: int = 1, device: str = "cpu", *, encoders: int = 1) -> ThreadPlan:
    """``plan_threads`` for this machine now: the process's cores less the load other programs put on them
    (``os.getloadavg``; call it before starting work, or the plan counts our own threads as others')."""
    cpus = available_cpus()
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this OS: plan for a quiet machine
        load = 0.0
    return plan_threads(free_cpus(cpus, load), concurrent_stages, device, encoders=encoders)


@functools.cache
def per_thread_torch() -> bool:
    """torch's thread count is the calling thread's (its OpenMP builds: the usual wheels), not one for the process."""
    import torch

    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


def enter_stage(plan: ThreadPlan, workers: int = 1, device=None) -> None:
    """Set the calling thread's torch threads for a stage computing ``workers`` chunks at once (``work.Runner``'s
    ``on_thread``), where the count is per thread; elsewhere the process's count (``apply``) stays. On a CUDA
    ``device`` a thread other than the main one (a stage's or a fill run's) then launches on a stream of its own
    (``own_stream``); the main thread, which runs the stages when they run one after another, keeps its stream."""
    import torch

    if per_thread_torch():
        torch.set_num_threads(plan.stage_torch(workers))
    if device is not None and torch.device(device).type == "cuda":
        _load_lazy_libraries(torch.device(device))  # (every thread, the main one too: it may compute a fill run)
        if threading.current_thread() is not threading.main_thread():
            own_stream(torch.device(device))


def own_stream(device) -> None:
    """Make the calling thread launch its work on ``device`` on a new CUDA stream (torch's current stream is per
    thread), after what was queued on the stream it had (the models its stage uploaded before it started).

    On the one stream every thread shares, a thread's read-back (``.cpu()``, ``.nonzero()``, an upload from pageable
    memory) waits for every kernel the other stages' threads queued before it: the concurrent stages then take turns
    on the GPU. Each thread's tensors stay on its own stream: the stages hand their results on as host arrays
    (the stores); what crosses on the device orders itself with events (``graphs.CudaGraphs``' replays, the cells
    the fill hands to the export: ``stages.matrix.HandOn``)."""
    import torch

    stream = torch.cuda.Stream(device=device)
    stream.wait_stream(torch.cuda.current_stream(device))
    torch.cuda.set_stream(stream)


def on_callers_stream(fn, device):
    """``fn`` for another thread to call (an executor's), queuing its CUDA work on ``device`` on the stream that is
    current here, in the calling thread: after the work this thread has queued before it, which made its tensor
    arguments, and with their memory on the stream it was allocated on. A new thread's current stream is CUDA's
    default one, which does not wait for the streams threads make (``own_stream``): its kernels could read the
    arguments before they are written. Elsewhere ``fn`` itself."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return fn
    stream = torch.cuda.current_stream(device)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with torch.cuda.stream(stream):
            return fn(*args, **kwargs)

    return run


_LAZY = threading.Lock()
_lazy_loaded: set = set()


def _load_lazy_libraries(device) -> None:
    """Load torch's CUDA linear algebra (cuSOLVER) once, before threads race to: torch loads it at the first call of
    a linalg op on CUDA, and two threads calling at once fail with "lazy wrapper should be called at most once" (the
    classical filler's motion fit in two fill runs, on an H100)."""
    import torch

    with _LAZY:
        if device not in _lazy_loaded:
            torch.linalg.solve_ex(torch.eye(2, dtype=torch.float64, device=device), torch.ones(2, 1, dtype=torch.float64, device=device))
            torch.cuda.current_stream(device).synchronize()
            _lazy_loaded.add(device)


def apply(plan: ThreadPlan) -> None:
    """Set torch's and OpenCV's thread counts for this process (the encoders read ``plan.encoder`` when they open)."""
    import cv2
    import torch

    torch.set_num_threads(plan.torch)
    cv2.setNumThreads(plan.opencv)
    log.info(plan.describe())
