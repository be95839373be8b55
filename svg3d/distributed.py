"""One clip across the GPUs of a machine (issue 13): each pass's UNet work and each VAE call's frames split over
ranks with ``torch.distributed`` (NCCL on GPUs, gloo on the CPU), the results gathered after every pass.

``Ranks`` is the ``denoise.Workers`` that a process of such a run hands to ``denoise_frame_matrix`` /
``denoise_windows``: every rank runs the same loop on the same inputs and draws every random number of the whole
matrix from the same seeded generators (the noise is drawn in the fixed matrix layout, never per share), so the
ranks hold identical frame matrices at all times. Only the expensive calls are shared:

- a pass's UNet batch items, as (column or row, CFG branch) pairs: rank r takes the r-th block of
  ceil(2n / world) pairs, so the 7 columns of a temporal pass go one per GPU, the 16 rows two per GPU, and the
  target view's single column (t <= E) is still split in its two CFG branches;
- the VAE re-injection's and the final decode's frames (whole columns for the SVD temporal decoder).

Each rank writes its share into a zero-filled tensor of all items and ``combine`` sums those tensors over the
ranks (``all_reduce``): every item has exactly one non-zero contributor, so the sum is that item, exactly, on
every rank. Results equal the one-device run up to the float rounding of other batch sizes per call (tested on
the CPU with two gloo processes).

Start it with ``torchrun --nproc-per-node N svg.py ...`` (``init_from_env``) or ``svg.py --gpus N``
(``spawn``: N processes on 127.0.0.1, a free port).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from .checks import InputError
from .denoise import Workers

log = logging.getLogger(__name__)


class Ranks(Workers):
    """This process's place in a run split over ``world`` processes (``denoise.Workers``)."""

    def __init__(self, rank: int, world: int, group: Any = None):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} of {world}")
        self.rank, self.world, self.group = rank, world, group

    def share(self, n: int) -> range:
        """Rank r's block of the items ``0 .. n-1``: ``[r k, (r + 1) k)`` with k = ceil(n / world) (may be empty)."""
        k = -(-n // self.world)
        start = min(n, self.rank * k)
        return range(start, min(n, start + k))

    def combine(self, x: torch.Tensor) -> torch.Tensor:
        """Sum ``x`` over the ranks, in place: the shares are disjoint and zero elsewhere, so this gathers them."""
        dist.all_reduce(x, op=dist.ReduceOp.SUM, group=self.group)
        return x


def launched() -> bool:
    """Whether this process was started as one of several (``torchrun`` sets ``WORLD_SIZE``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device_type: str | None = None) -> tuple[Ranks, torch.device]:
    """Join the process group described by ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR/PORT``.

    ``device_type``: ``"cuda"`` (NCCL; this process uses GPU ``LOCAL_RANK``) or ``"cpu"`` (gloo); None = CUDA when
    present. Returns this process's ``Ranks`` and device.
    """
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cuda":
        if local >= torch.cuda.device_count():
            raise InputError(f"rank {rank} needs GPU {local}, but this machine has {torch.cuda.device_count()}")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", rank=rank, world_size=world, device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo", rank=rank, world_size=world)
    log.debug("rank %d of %d on %s", rank, world, device)
    return Ranks(rank, world), device


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for the rendezvous of ``spawn``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(fn: Callable[..., None], nprocs: int, args: tuple = (), *, device_type: str = "cuda") -> None:
    """Run ``fn(ranks, device, *args)`` in ``nprocs`` new processes joined in one process group on 127.0.0.1.

    ``fn`` must be a module-level function (it is pickled). An ``InputError`` in any rank is raised here as one
    ``InputError`` with its message; other failures raise torch's ``ProcessRaisedException`` with the traceback.
    """
    import torch.multiprocessing as mp

    if nprocs < 1:
        raise ValueError(f"nprocs {nprocs}")
    errors = mp.get_context("spawn").SimpleQueue()
    try:
        mp.spawn(_entry, args=(nprocs, free_port(), device_type, fn, args, errors), nprocs=nprocs, join=True)
    except (mp.ProcessRaisedException, mp.ProcessExitedException):
        if not errors.empty():
            raise InputError(errors.get()) from None
        raise


def _entry(rank: int, world: int, port: int, device_type: str, fn, args: tuple, errors) -> None:
    """A spawned process: the rendezvous variables ``torchrun`` would set, the process group, then ``fn``."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    if device_type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))  # the ranks share the cores
    ranks, device = init_from_env(device_type)
    try:
        fn(ranks, device, *args)
    except InputError as e:
        errors.put(str(e))
        raise SystemExit(2) from None
    finally:
        dist.destroy_process_group()
