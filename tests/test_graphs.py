"""graphs.to_device: host data onto a device without waiting for the GPU's queued work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from svg3d.graphs import to_device


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
