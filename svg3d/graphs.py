"""CUDA graphs for launch-bound functions of fixed-shape tensors (issue 21: the GPU idled while Python launched).

Our torch flow issues ~4,000 small kernels per call: at 640x360 it took 13.9 ms per pair on an H200 launched one by
one, 7.2 ms replayed (bench/results/h200-2026-12-07), and in ``convert`` every launch also waits for the interpreter
lock that the other stages' threads hold; our UNet compiled by regions is replayed whole the same way (issue 22: no
Python between its blocks). ``CudaGraphs(fn)`` records ``fn``'s kernels once per input shape and then replays them
in one launch: the same kernels in the same order on the same data, so the results are the eager call's, bit for
bit. It needs ``fn`` to be a pure function of its tensor arguments with no host synchronisation (no ``.item()``,
no ``.nonzero()``, no data-dependent Python branches) that returns one tensor.

On the CPU, or while another graph is being recorded, it calls ``fn`` as it is.

``to_device`` is the other half of keeping the queue full: a tensor made on the host (frames, a constant, a list of
indices) copied to CUDA without waiting for the kernels queued before it, which a plain ``.to("cuda")`` and indexing
with a Python list do. The classical filler at 1080p on an H100 synchronised its stream 12 times a frame, 5 of them
reading values back, the others such copies (the motion fit's constants waited for the flow just launched before it;
``bench/results/h100-2026-12-07-g/before/profile_fill-cuda.txt``).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)

MAX_GRAPHS = 4  # shapes kept per function: a clip's batches have one or two (the last batch may be shorter)
# One recording at a time in the process: ``torch.cuda.graph`` synchronises the device as it begins, which CUDA
# refuses while another thread's stream is capturing (two fill runs recording their flows at once, on an H100).
_RECORDING = threading.Lock()


def to_device(x, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x`` (a tensor, an array or a list of numbers) as a tensor on ``device``: from the host to CUDA through pinned
    memory, queued on the current stream (ordered before the kernels that read it) without waiting for the work
    queued before it (an array is copied once, so a read-only one needs no copy of its own); elsewhere
    ``torch.as_tensor``'s (a view of a CPU tensor or array where it can be one)."""
    device = torch.device(device)
    if device.type == "cuda" and isinstance(x, np.ndarray):  # one copy into pinned memory (read-only arrays too)
        host = torch.empty(x.shape, dtype=torch.from_numpy(np.empty(0, x.dtype)).dtype, pin_memory=True)
        host.numpy()[...] = x
        return host.to(device, non_blocking=True).to(dtype or host.dtype)
    x = torch.as_tensor(x, dtype=dtype)
    if device.type != "cuda" or x.device.type != "cpu":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


class HostCopy:
    """CUDA tensors copied to pinned host memory, queued on the current stream: ``arrays()`` returns them as numpy arrays
    once the stream has got there, waiting for nothing queued after (``.cpu()`` waits for all of it, and the GPU then
    idles until the thread launches more). Another thread may wait for them: the classical filler's Telea round trip
    runs beside the next batch's kernels. Tensors on a CPU are read as they are, with no copy."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        self._event = None
        if tensors and tensors[0].device.type == "cuda":
            self._host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t, non_blocking=True) for t in tensors]
            self._event = torch.cuda.Event()
            self._event.record(torch.cuda.current_stream(tensors[0].device))
        else:
            self._host = [t.detach() for t in tensors]

    def arrays(self) -> list[np.ndarray]:
        if self._event is not None:
            self._event.synchronize()
        return [t.numpy() for t in self._host]


def take_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]``: the rows ``(N, ...)`` of ``table (M, ...)`` at the long ``index (N,)`` (each in ``0 .. M-1``),
    bit for bit. On CUDA torch's row indexing (``index_select(0, .)`` of more than 16 rows, ``table[index]``, ``gather``
    with the index expanded over a row) of rows of a multiple of 16 bytes launches one block of 32 threads per row, of
    which one moves a narrow row: its ~32 blocks an SM at a time wait on memory in turn. The classical filler's
    16-byte colour-and-depth taps and 96-byte motion rows, ~18 M rows a 1080p frame, took 11.4 ms of its 59 ms of
    kernels a frame on an H100 (``vectorized_gather_kernel``, ``bench/results/h100-2026-12-07-g/before/
    profile_fill-cuda.txt``). Here ``gather`` gets the index written out for every 8-byte word of a row, which sends it
    to its kernel of a thread per value: the index costs the rows' size again in memory traffic. Elsewhere
    ``index_select``, the fastest on a CPU."""
    if table.device.type != "cuda":
        return table.index_select(0, index)
    return _gather_rows(table, index)


def _gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    flat = table.reshape(table.shape[0], -1)
    if flat.is_contiguous() and flat.shape[1] * flat.element_size() % 8 == 0 and flat.numel():
        words = flat.view(torch.int64)  # (a row as 8-byte words: fewer of them to index, the same bits)
    else:
        words = flat
    got = words.gather(0, index[:, None].expand(-1, words.shape[1]).contiguous())  # (written out: not the per-row kernel)
    return got.view(flat.dtype).view(index.shape[0], *table.shape[1:])


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor, ...]
    output: torch.Tensor


class CudaGraphs:
    """``fn(*tensors) -> tensor`` replayed from a CUDA graph recorded per shape, dtype and device of its arguments.

    The graphs of one function share one memory pool for their intermediates (calls are serialised and each output
    is copied out at once, so a replay may reuse what another shape's left), and keep their recorded inputs and
    output; at most ``max_graphs`` of them (None: no limit; past it the least recently used is dropped). Calls from
    threads on different CUDA streams (``threads.own_stream``) are ordered on the device too: a call's copy into the
    recorded inputs waits for the last call's replay and copy out, on whichever stream they ran. ``fn`` runs
    ``warm_ups`` times per shape on a side stream before the recording (lazy initialisation, cuDNN's choices; a
    compiled ``fn`` compiles on the first), as torch's documentation asks. ``name`` names the recordings in the log.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], max_graphs: int | None = MAX_GRAPHS, *, warm_ups: int = 1,
                 name: str | None = None) -> None:  # fmt: skip
        self.fn, self.max_graphs, self.warm_ups, self.name = fn, max_graphs, warm_ups, name
        self.graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self._pool = None
        self._lock = threading.Lock()
        self._done: torch.cuda.Event | None = None  # recorded after the last call's copy out, on its stream

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        if not args or not all(a.is_cuda for a in args) or torch.cuda.is_current_stream_capturing():
            return self.fn(*args)
        key = tuple((tuple(a.shape), a.dtype, a.device) for a in args)
        with self._lock:
            entry = self.graphs.get(key)
            if entry is None:
                entry = self._record(args)
                self.graphs[key] = entry
                while self.max_graphs is not None and len(self.graphs) > self.max_graphs:
                    self.graphs.popitem(last=False)
            else:
                self.graphs.move_to_end(key)
            stream = torch.cuda.current_stream(args[0].device)
            if self._done is not None:
                stream.wait_event(self._done)
            for static, a in zip(entry.inputs, args, strict=True):
                static.copy_(a)
            entry.graph.replay()
            out = entry.output.clone()
            self._done = torch.cuda.Event()
            self._done.record(stream)
            return out

    def _record(self, args: tuple[torch.Tensor, ...]) -> _Graph:
        with _RECORDING:
            return self._record_alone(args)

    def _record_alone(self, args: tuple[torch.Tensor, ...]) -> _Graph:
        device = args[0].device
        inputs = tuple(a.detach().clone() for a in args)
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(self.warm_ups):  # outside the graph
                self.fn(*inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # thread_local: the other stages' threads go on launching their own work while this one records
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            output = self.fn(*inputs)
        if self.name:
            log.info("recorded a CUDA graph of %s for %s", self.name, tuple(args[0].shape))
        return _Graph(graph, inputs, output)
