"""Thread counts from the machine and the stages at once (svg3d.threads): no pool beyond its share of the cores."""

from __future__ import annotations

import cv2
import pytest
import torch

from svg3d import threads
from svg3d.threads import ThreadPlan, free_cpus, plan_threads


@pytest.mark.parametrize("cpus", [1, 2, 3, 16, 64])
@pytest.mark.parametrize("stages", [1, 2, 3])
def test_cpu_plans_never_oversubscribe(cpus, stages):
    plan = plan_threads(cpus, stages, "cpu")
    assert min(plan.torch, plan.opencv, plan.decoder, plan.encoder) >= 1
    # a stage runs torch, OpenCV and its encoders one after the other: each pool within the stage's share
    if cpus >= stages:
        assert stages * max(plan.torch, plan.opencv, plan.decoder, plan.encoder) <= cpus
    else:  # fewer cores than stages: one thread each, the least there is
        assert plan.torch == plan.opencv == plan.encoder == 1


def test_plans_for_the_issues_machines():
    # the 2-core machine: one stage takes both cores; three stages at once get one thread each
    assert (plan_threads(2, 1, "cpu").torch, plan_threads(2, 3, "cpu").torch) == (2, 1)
    # one H100 host, 16 cores, 3 stages: torch launches kernels with 2 threads per stage, the encoders get the rest
    gpu = plan_threads(16, 3, "cuda:0", encoders=3)
    assert gpu.device == "cuda" and gpu.torch == 2 and gpu.opencv == 5
    assert gpu.encoder == (16 - 2 * 2) // 3
    assert "3 stages at once" in gpu.describe()


def test_free_cpus_subtracts_the_load():
    assert free_cpus(2, 0.0) == 2
    assert free_cpus(2, 0.4) == 2  # a little background activity is not a taken core
    assert free_cpus(2, 0.6) == 1
    assert free_cpus(2, 9.0) == 1  # a busy machine: one thread, so nothing spins against the others
    assert free_cpus(16, 3.2) == 13
    assert free_cpus(4, -1.0) == 4


def test_bad_plans_are_refused():
    with pytest.raises(ValueError, match="concurrent_stages"):
        plan_threads(2, 0)


def test_available_cpus_is_the_affinity():
    import os

    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert threads.available_cpus() == expected


def test_apply_sets_torch_and_opencv():
    before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        threads.apply(ThreadPlan(torch=1, opencv=1, decoder=1, encoder=1, cpus=1, concurrent_stages=1, device="cpu"))
        assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


@pytest.mark.parametrize("cpus", [1, 2, 3, 16])
@pytest.mark.parametrize("stages", [1, 4])
def test_the_fill_takes_a_core_per_chunk_at_once(cpus, stages):
    plan = plan_threads(cpus, stages, "cpu")
    assert plan.fill_workers == min(cpus, threads.MAX_FILL_WORKERS)
    if stages == 1:  # alone: its chunks share its cores, none left idle, none oversubscribed
        assert cpus - plan.fill_workers < plan.fill_workers * plan.fill_torch <= cpus
    else:  # beside the others: each chunk the stage share
        assert plan.fill_torch == plan.torch
    assert plan.stage_torch(1) == plan.torch and plan.stage_torch(plan.fill_workers) == plan.fill_torch


def test_the_2_core_machine_fills_two_chunks_on_one_thread_each():
    for stages in (1, 4):
        plan = plan_threads(2, stages, "cpu")
        assert (plan.fill_workers, plan.fill_torch) == (2, 1)
        assert "the fill 2 chunks at once on 1 torch threads each" in plan.describe()
    gpu = plan_threads(16, 3, "cuda")
    # on CUDA one run unless --fill-workers asks for more (each then launching on its own stream)
    assert gpu.fill_workers == threads.GPU_FILL_WORKERS and gpu.stage_torch(gpu.fill_workers) == gpu.torch == 2
    assert plan_threads(16, 3, "cuda", fill_workers=2).fill_workers == 2  # convert --fill-workers
    assert plan_threads(2, 1, "cpu", fill_workers=3).fill_workers == 3
    with pytest.raises(ValueError, match="fill_workers"):
        plan_threads(2, 1, "cpu", fill_workers=0)


def test_enter_stage_sets_the_calling_threads_count_only():
    import threading

    if not threads.per_thread_torch():
        pytest.skip("torch's thread count is one for the process in this build")
    plan = plan_threads(2, 1, "cpu")
    before = torch.get_num_threads()
    seen = {}

    def worker() -> None:
        threads.enter_stage(plan, plan.fill_workers)
        seen["worker"] = torch.get_num_threads()

    try:
        torch.set_num_threads(2)
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert seen["worker"] == 1 and torch.get_num_threads() == 2  # this thread's count is its own
        threads.enter_stage(plan)
        assert torch.get_num_threads() == plan.torch
    finally:
        torch.set_num_threads(before)


def test_a_function_for_another_thread_is_itself_off_cuda():
    def write(x):
        return x + 1

    assert threads.on_callers_stream(write, "cpu") is write


@pytest.mark.gpu
def test_another_threads_call_queues_on_the_callers_stream_after_what_made_its_arguments():
    """The export's feeder thread composes the eyes its stage made on its own stream (``threads.own_stream``): through
    ``on_callers_stream`` its kernels come after the ones that wrote them (the test can fail: on the new thread's
    default stream the read runs while the maker's stream still sleeps, before the tensor is written)."""
    from concurrent.futures import ThreadPoolExecutor

    device = torch.device("cuda", torch.cuda.current_device())
    maker = torch.cuda.Stream(device)
    with torch.cuda.stream(maker):
        torch.cuda._sleep(500_000_000)  # the maker's stream busy
        eye = torch.full((1 << 20,), 3.0, device=device)  # written after the sleep
        double = threads.on_callers_stream(lambda x: (x * 2).sum().item(), device)
    with ThreadPoolExecutor(1) as feeder:
        assert feeder.submit(double, eye).result() == 6.0 * (1 << 20)
