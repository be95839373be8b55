"""The memory estimate: its parts grow as they should, and a measured convert's peak RSS lies within its stated factor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from svg3d import memory

ROOT = Path(__file__).resolve().parents[1]
FACTOR = 1.5  # a measured peak RSS lies within [estimate / FACTOR, estimate * FACTOR] (bench/results/rss.json)


def test_the_estimate_grows_with_what_a_run_holds():
    base = dict(chunk_frames=16, num_views=2, filler="classical", exports=("sbs", "hsbs", "anaglyph"))
    e = memory.estimate_peak((720, 1280), **base)
    assert e.parts["process"] == memory.PROCESS_MB and e.total_mb == e.parts["process"] + max(e.parts["fill"], e.parts["export"])
    frames = 16 + 2 * memory.CONTEXT["classical"]
    assert e.parts["fill"] == pytest.approx(memory.CELL_BYTES * 720 * 1280 * frames * 2 / 2**20)
    assert memory.estimate_peak((1440, 2560), **base).parts["fill"] == pytest.approx(4 * e.parts["fill"])  # pixels
    assert memory.estimate_peak((720, 1280), **{**base, "num_views": 8}).parts["fill"] == pytest.approx(4 * e.parts["fill"])  # views
    short = memory.estimate_peak((720, 1280), **base, num_frames=1)  # a single image holds one frame, whatever the chunk
    assert short.parts["fill"] == pytest.approx(e.parts["fill"] / frames)
    encoders = {n: memory.estimate_peak((720, 1280), **{**base, "exports": n}).parts["export"] for n in (("sbs",), ("hsbs",), ("eyes_png",))}
    assert encoders[("sbs",)] - encoders[("eyes_png",)] == pytest.approx(2 * (encoders[("hsbs",)] - encoders[("eyes_png",)]))  # 2 eyes wide
    assert encoders[("eyes_png",)] > 0  # no encoder, but the chunk's views
    assert memory.estimate_peak((720, 1280), **base, model_mb=1300).parts["process"] == memory.PROCESS_MB + 1300
    with pytest.raises(ValueError, match="unknown nope"):
        memory.estimate_peak((720, 1280), **{**base, "exports": ("nope",)})


def test_largest_chunk_fits_the_budget():
    kw = dict(num_views=2, filler="classical", exports=("sbs",))
    budget = memory.estimate_peak((1080, 1920), chunk_frames=10, **kw).total_mb + 1
    assert memory.largest_chunk((1080, 1920), budget, **kw) == 10
    assert memory.largest_chunk((1080, 1920), memory.PROCESS_MB, **kw) == 0  # not even one frame
    assert memory.available_mb() is None or memory.available_mb() > 0


@pytest.mark.slow  # a convert of its own: ~25 s on a quiet 2-core machine, ~60 s on a busy one
def test_a_measured_convert_lies_within_the_stated_factor(tmp_path):
    """A real convert (640x360, 8 frames, chunks of 4, the default exports) in its own process: peak RSS measured by
    the kernel (``wait4``) against the estimate for the same settings."""
    sys.path.insert(0, str(ROOT / "bench"))
    from testsrc import make_clip

    from svg3d.tiny_models import save_tiny_depth_anything

    clip = make_clip(tmp_path / "clip.mp4", 8, (640, 360))
    model = save_tiny_depth_anything(tmp_path / "model")
    cmd = [sys.executable, "-m", "svg3d", "convert", str(clip), "-o", str(tmp_path / "out"), "--depth-model", str(model), "--flow", "dis",
           "--fill", "classical", "--chunk-frames", "4", "--device", "cpu", "--quiet"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read().decode()
    measured = usage.ru_maxrss / 1024  # kB -> MB
    model_mb = sum(f.stat().st_size for f in model.rglob("*") if f.is_file()) / 2**20
    estimate = memory.estimate_peak((360, 640), chunk_frames=4, num_views=2, filler="classical", exports=("sbs", "hsbs", "anaglyph"),
                                    model_mb=model_mb, num_frames=8).total_mb  # fmt: skip
    assert estimate / FACTOR <= measured <= estimate * FACTOR, (measured, estimate)


def test_the_cells_handed_on_count_until_their_cap():
    """A CPU run's fill hands its cells on to the export (``HandOn``): the estimate adds them, a short clip's all of
    them (8 bytes per pixel per filled view and 7 per frame), a long clip's ``HAND_ON_MB`` at most."""
    kw = {"chunk_frames": 8, "num_views": 2, "filler": "classical", "exports": ("sbs",)}
    for frames, expected in ((10, (8 + 7) * 360 * 640 * 10 / memory.MB), (10_000, memory.HAND_ON_MB)):
        without = memory.estimate_peak((360, 640), num_frames=frames, **kw)
        handed = memory.estimate_peak((360, 640), num_frames=frames, hand_on=True, **kw)
        assert handed.total_mb - without.total_mb == pytest.approx(expected)


def test_a_gpu_memory_cap_is_for_cuda_only(caplog):
    """``cap_gpu_memory`` (``convert --max-gpu-memory``) sets nothing off CUDA (and says so) and without a cap."""
    with caplog.at_level("WARNING", logger="svg3d.memory"):
        assert memory.cap_gpu_memory(4.0, "cpu") is None
    assert "--max-gpu-memory 4: ignored, the run is on cpu" in caplog.text
    assert memory.cap_gpu_memory(None, "cuda") is None  # (no cap: nothing is asked of CUDA)


def test_running_out_of_gpu_memory_is_one_line_and_exit_1(capsys):
    """torch's CUDA out-of-memory error (raised in this process, or named by a spread worker) ends a command with one
    line naming the flags that lower the memory, and exit status 1 (a batch's row for the input says the same); other
    runtime errors stay tracebacks."""
    import torch

    from svg3d.cli import run_cli

    text = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.20 GiB is free."

    def body(e):
        def raise_():
            raise e

        return raise_

    for error in (torch.OutOfMemoryError(text), RuntimeError(f"OutOfMemoryError: {text}")):
        assert run_cli(body(error)) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: the GPU ran out of memory (CUDA out of memory. Tried to allocate 2.00 GiB)")
        assert "--chunk-frames" in err and "--max-gpu-memory" in err and "resumes" in err
    with pytest.raises(RuntimeError, match="something else"):
        run_cli(body(RuntimeError("something else")))
    from svg3d.batch import _one_line  # a batch's summary row for the input: the same line

    assert _one_line(torch.OutOfMemoryError(text)) == err.removeprefix("error: ").rstrip("\n")


def test_the_gpu_memory_cap_names_the_card_by_index(monkeypatch):
    """``convert`` passes ``cuda`` with no index; torch's ``set_per_process_memory_fraction`` refuses a device
    without one (seen on the H100), so the cap names the current card by its index, and sizes the fraction by it."""
    import torch

    seen = []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: seen.append(("props", d)) or SimpleNamespace(total_memory=80 * memory.GIB))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d: seen.append(("cap", f, d)))
    assert memory.cap_gpu_memory(20.0, "cuda") == 0.25
    assert seen == [("props", torch.device("cuda", 3)), ("cap", 0.25, torch.device("cuda", 3))]
    seen.clear()
    assert memory.cap_gpu_memory(100.0, torch.device("cuda", 1)) == 1.0  # a cap above the card: the whole card
    assert seen == [("props", torch.device("cuda", 1)), ("cap", 1.0, torch.device("cuda", 1))]


@pytest.mark.gpu
def test_the_gpu_memory_cap_frees_other_streams_cached_blocks():
    """Under ``cap_gpu_memory`` a block freed on one CUDA stream (each thread of a CUDA run has its own) is given back
    when another stream's allocation would pass the cap, so the allocator never holds more than the cap; an
    allocation larger than the cap raises torch's out-of-memory error. The cap is 1 GiB over what the process holds
    already (tests run before this one in the same process keep some: 0.55 GB after the stream tests on an H100)."""
    import torch

    device = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    held = torch.cuda.memory_reserved(device)
    try:
        assert 0 < memory.cap_gpu_memory(held / memory.GIB + 1.0, "cuda") <= 1  # (as convert passes it: no index)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(3):  # each stream allocates 600 MB and frees it: without the cap the allocator would keep all three
            with torch.cuda.stream(torch.cuda.Stream(device)):
                x = torch.empty(600 * 2**20, dtype=torch.uint8, device=device)
                x.fill_(1)
                del x
        assert torch.cuda.max_memory_reserved(device) <= held + 2**30
        with pytest.raises(torch.OutOfMemoryError):
            torch.empty(3 * 2**29, dtype=torch.uint8, device=device)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()
