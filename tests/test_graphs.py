"""graphs.to_device: host data onto a device without waiting for the GPU's queued work; graphs.take_rows: rows by index; graphs.HostCopy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from svg3d.graphs import HostCopy, _gather_rows, take_rows, to_device


def test_to_device_on_the_cpu_is_a_view_of_an_array_and_converts_lists():
    frames = np.zeros((2, 4, 4, 3), np.uint8)
    x = to_device(frames, torch.device("cpu"))
    x[0, 0, 0, 0] = 7  # a view, as torch.from_numpy's: no copy of the frames
    assert frames[0, 0, 0, 0] == 7
    assert to_device([1e-12, 1e-6], "cpu", torch.float64).dtype == torch.float64
    assert to_device(range(3), "cpu").tolist() == [0, 1, 2]


@pytest.mark.gpu
def test_to_device_does_not_wait_for_the_kernels_queued_before_it():
    """With the GPU busy (a kernel that spins ~0.5 s), ``to_device`` returns while the stream still works, and the data
    arrives in order before the kernels queued after it; a plain ``.to("cuda")`` of the same list waits (the test can
    fail)."""
    device = torch.device("cuda", torch.cuda.current_device())
    stream = torch.cuda.current_stream(device)
    frames = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)[:, ::-1]  # an array as decoders and stores give it
    frames.flags.writeable = False
    to_device([0.0, 0.0], device, torch.float64)  # the pinned host allocator's first blocks (their allocation may wait)
    to_device(frames, device)
    torch.cuda.synchronize(device)
    torch.cuda._sleep(1_000_000_000)
    x = to_device([3.0, 4.0], device, torch.float64)
    assert not stream.query()  # still spinning: nothing waited for it
    assert (x * 2).tolist() == [6.0, 8.0]
    torch.cuda._sleep(1_000_000_000)
    y = to_device(frames, device, torch.float32)
    assert not stream.query()
    assert y.dtype == torch.float32 and np.array_equal(y.cpu().numpy(), frames)
    torch.cuda._sleep(1_000_000_000)
    torch.tensor([3.0, 4.0]).to(device)  # a blocking copy from pageable memory: waits for the stream
    assert stream.query()


@pytest.mark.parametrize(
    "table",
    [
        torch.rand(50, 4),  # the filler's colour-and-depth taps
        torch.rand(50, 12, dtype=torch.float64),  # its motion rows
        torch.randint(0, 255, (50, 3, 2), dtype=torch.uint8),
        torch.rand(4, 50).t(),  # not contiguous
        torch.rand(50),  # rows of one value
    ],
)
def test_rows_by_gather_are_index_selects(table):
    """The CUDA path of ``take_rows`` (gather with the index written out over a row's words) gives index_select's rows,
    bit for bit, in its shape; an empty index gives no rows."""
    index = torch.tensor([3, 0, 49, 3, 17, 17, 8])
    assert torch.equal(_gather_rows(table, index), table.index_select(0, index))
    empty = torch.zeros(0, dtype=torch.long)
    assert _gather_rows(table, empty).shape == table.index_select(0, empty).shape


@pytest.mark.gpu
def test_rows_on_cuda_equal_index_select_without_a_block_per_row():
    """On CUDA, 2 M rows of 16 bytes: index_select's values, and none of torch's one-block-per-row gather kernels (the
    test can fail: index_select launches one)."""
    from torch.profiler import ProfilerActivity, profile

    device = torch.device("cuda", torch.cuda.current_device())
    table = torch.rand(1_000_000, 4, device=device)
    index = torch.randint(0, table.shape[0], (2_000_000,), device=device)
    expected = table.index_select(0, index)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        got = take_rows(table, index)
        torch.cuda.synchronize(device)
    assert torch.equal(got, expected)
    kernels = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    assert kernels and not any("vectorized_gather" in k for k in kernels), kernels
    with profile(activities=[ProfilerActivity.CUDA]) as prof:  # what the assertion tells apart
        table.index_select(0, index)
        torch.cuda.synchronize(device)
    assert any("vectorized_gather" in e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def test_a_host_copy_on_the_cpu_reads_the_tensors_themselves():
    x = torch.arange(6).reshape(2, 3)[:, ::2]
    (a,) = HostCopy(x).arrays()
    x[0, 0] = 9  # no copy: a view
    assert a.tolist() == [[9, 2], [3, 5]]


@pytest.mark.gpu
def test_a_host_copy_does_not_wait_for_the_gpu_and_its_arrays_wait_for_their_values():
    """With the stream busy (a kernel spinning ~0.5 s), making a ``HostCopy`` of a result queued after it returns at
    once, and ``arrays()``, from another thread, the values once the stream got there (the test can fail: ``.cpu()``
    would wait in the caller)."""
    from concurrent.futures import ThreadPoolExecutor

    device = torch.device("cuda", torch.cuda.current_device())
    stream = torch.cuda.current_stream(device)
    x = torch.arange(12, device=device).reshape(3, 4)
    HostCopy(x).arrays()  # the pinned host allocator's first blocks
    torch.cuda.synchronize(device)
    torch.cuda._sleep(1_000_000_000)
    copy = HostCopy((x * 2)[:, ::2], (x > 5))
    assert not stream.query()  # still spinning: nothing waited
    with ThreadPoolExecutor(1) as pool:
        doubled, big = pool.submit(copy.arrays).result()
    assert doubled.tolist() == [[0, 4], [8, 12], [16, 20]] and big.sum() == 6
