"""CUDA graphs for launch-bound functions of fixed-shape tensors (issue 21: the GPU idled while Python launched).

Our torch flow issues ~4,000 small kernels per call: at 640x360 it took 16.6 ms per pair on an H100 whatever the
size, the time of launching them, and in ``convert`` every launch also waits for the interpreter lock that the
other stages' threads hold. ``CudaGraphs(fn)`` records ``fn``'s kernels once per input shape and then replays them
in one launch: the same kernels in the same order on the same data, so the results are the eager call's, bit for
bit. It needs ``fn`` to be a pure function of its tensor arguments with no host synchronisation (no ``.item()``,
no ``.nonzero()``, no data-dependent Python branches) that returns one tensor.

On the CPU, or while another graph is being recorded, it calls ``fn`` as it is.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

MAX_GRAPHS = 4  # shapes kept per function: a clip's batches have one or two (the last batch may be shorter)


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor, ...]
    output: torch.Tensor


class CudaGraphs:
    """``fn(*tensors) -> tensor`` replayed from a CUDA graph recorded per shape, dtype and device of its arguments.

    A recorded graph keeps its inputs, output and intermediates in a memory pool of its own (the peak of one call),
    at most ``max_graphs`` of them (the least recently used is dropped). Calls are serialised: the recorded inputs
    are shared. ``fn``'s first call per shape runs eagerly on a side stream before the recording (lazy
    initialisation, cuDNN's choices), as torch's documentation asks.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], max_graphs: int = MAX_GRAPHS) -> None:
        self.fn, self.max_graphs = fn, max_graphs
        self._graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        if not args or not all(a.is_cuda for a in args) or torch.cuda.is_current_stream_capturing():
            return self.fn(*args)
        key = tuple((tuple(a.shape), a.dtype, a.device) for a in args)
        with self._lock:
            entry = self._graphs.get(key)
            if entry is None:
                entry = self._record(args)
                self._graphs[key] = entry
                while len(self._graphs) > self.max_graphs:
                    self._graphs.popitem(last=False)
            else:
                self._graphs.move_to_end(key)
            for static, a in zip(entry.inputs, args, strict=True):
                static.copy_(a)
            entry.graph.replay()
            return entry.output.clone()

    def _record(self, args: tuple[torch.Tensor, ...]) -> _Graph:
        inputs = tuple(a.detach().clone() for a in args)
        side = torch.cuda.Stream(device=args[0].device)
        side.wait_stream(torch.cuda.current_stream(args[0].device))
        with torch.cuda.stream(side):
            self.fn(*inputs)  # warm-up, outside the graph
        torch.cuda.current_stream(args[0].device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the other stages' threads go on launching their own work while this one records
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            output = self.fn(*inputs)
        return _Graph(graph, inputs, output)
