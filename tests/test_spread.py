"""``convert --gpus N`` (``svg3d.spread``): the stages with independent chunks computed by one process per device give
the bytes of one device's run, resume like it, and refuse device counts the machine does not have."""

from __future__ import annotations

import json

import pytest
import torch

from svg3d import convert, spread, work
from svg3d.checks import InputError
from svg3d.config import ConvertConfig, DepthConfig, ExportSettings
from svg3d.stages.fill.stage import store_name
from tests.media import stage_folder
from tests.test_convert import Recorder

STAGES = ("depth", "stabilised", "filled")


@pytest.mark.parametrize("parts", [1, 2, 3, 5, 40])
def test_split_is_contiguous_balanced_and_complete(parts):
    chunks = [(0, 3), (3, 6), (6, 9), (9, 12), (20, 23), (23, 24)]  # (a resumed stage: frames 12..19 were done)
    runs = work.split(chunks, parts)
    frames = [f for run in runs for a, b in run for f in range(a, b)]
    assert frames == [f for a, b in chunks for f in range(a, b)] and all(runs)  # every frame once, in order
    assert all(a < b and any(c <= a and b <= d for c, d in chunks) for run in runs for a, b in run)  # pieces of chunks
    counts = [sum(b - a for a, b in run) for run in runs]
    assert len(runs) == min(parts, 16) and max(counts) - min(counts) <= 1  # equal shares, to a frame


def _digests(out):
    return {name: json.loads(stage_folder(out / "work", name).with_suffix(".json").read_text())["digest"] for name in STAGES}


def _pngs(result):
    folder = result.exports["eyes_png"]
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_two_processes_give_the_bytes_of_one_and_resume_alike(tmp_path):
    from tests.media import rendered_clip

    video, depth, _ = rendered_clip(tmp_path / "clip", frames=10)
    config = ConvertConfig(depth=DepthConfig(depth_from=depth), flow="dis", filler="classical", chunk_frames=3,
                           exports=ExportSettings(exports=("eyes_png",)))  # fmt: skip
    one = convert.convert(video, tmp_path / "one", config)
    events = Recorder()
    two = convert.convert(video, tmp_path / "two", config, devices=("cpu", "cpu"), progress=events)
    assert _digests(tmp_path / "two") == _digests(tmp_path / "one")
    assert events.steps["depth"] == events.steps["filled"] == [1] * 10  # the workers' frames, as they do them
    assert _pngs(two) == _pngs(one) and len(_pngs(one)) == 20
    assert {s.name for s in two.stages if s.ran} >= set(STAGES)

    # interrupted in the fill (the parent records the workers' chunks), then resumed over two processes again
    class Stop(Exception):
        pass

    def stop_in_fill(stage, first, count):
        if stage == "filled":
            raise Stop

    with pytest.raises(Stop):
        convert.convert(video, tmp_path / "three", config, devices=("cpu", "cpu"), on_chunk=stop_in_fill)
    record = json.loads(stage_folder(tmp_path / "three" / "work", "filled").with_suffix(".json").read_text())
    assert 1 <= len(record["chunks"]) < 4 and not record["complete"]
    three = convert.convert(video, tmp_path / "three", config, devices=("cpu", "cpu"))
    assert three.stage("filled").resumed_from is not None and not three.stage("depth").ran
    assert _digests(tmp_path / "three") == _digests(tmp_path / "one") and _pngs(three) == _pngs(one)


def test_the_fill_over_two_processes_runs_beside_the_export(tmp_path):
    """With the stages at once, the spread fill runs beside the export (``spread.Beside``): the export takes the fill's
    first chunk while the workers still fill (the run waits there, in the fill's first record, until the export has
    taken a frame: one after the other, it never would), and the bytes are those of one process."""
    import threading

    from tests.media import rendered_clip

    video, depth, _ = rendered_clip(tmp_path / "clip", frames=10)
    config = ConvertConfig(depth=DepthConfig(depth_from=depth), flow="dis", filler="classical", chunk_frames=3, concurrent_stages=True,
                           exports=ExportSettings(exports=("eyes_png",)))  # fmt: skip
    one = convert.convert(video, tmp_path / "one", config)
    exported, waited = threading.Event(), []

    def progress(desc, total, initial=0):
        return (lambda n: exported.set()) if desc == "export" else (lambda n: None), lambda: None

    def first_fill_chunk(stage, first, count):
        if stage == "filled" and first == 0:
            waited.append(exported.wait(60))

    two = convert.convert(video, tmp_path / "two", config, devices=("cpu", "cpu"), progress=progress, on_chunk=first_fill_chunk)
    assert waited == [True]
    assert _digests(tmp_path / "two") == _digests(tmp_path / "one") and _pngs(two) == _pngs(one)
    assert two.stage("filled").ran and two.stage("export").ran


def test_a_failing_worker_stops_the_run_in_one_line(tmp_path):
    from tests.media import rendered_clip

    video, depth, _ = rendered_clip(tmp_path / "clip", frames=6)
    sorted(depth.iterdir())[3].write_bytes(b"not an image")  # frame 3: one the depth checks do not sample
    config = ConvertConfig(depth=DepthConfig(depth_from=depth), flow="dis", filler="classical", chunk_frames=3,
                           exports=ExportSettings(exports=("eyes_png",)))  # fmt: skip
    with pytest.raises((InputError, RuntimeError)) as e:
        convert.convert(video, tmp_path / "out", config, devices=("cpu", "cpu"))
    assert "\n" not in str(e.value) and "00003.npy: cannot read depth map" in str(e.value)
    record = tmp_path / "out" / "work" / "depth.json"  # (absent when the failing worker was the first to answer)
    assert not record.exists() or not json.loads(record.read_text())["complete"]
    assert not list((tmp_path / "out" / "work").glob(f"{store_name('filled', '*')}.json"))


def test_device_counts_are_checked(monkeypatch):
    cpu = torch.device("cpu")
    assert spread.gpu_devices(None, cpu) == ("cpu",) and spread.gpu_devices(1, cpu) == ("cpu",)
    with pytest.raises(InputError, match="--gpus 2: the run is on the CPU"):
        spread.gpu_devices(2, cpu)
    with pytest.raises(InputError, match="--processes-per-gpu 2: the run is on the CPU"):
        spread.gpu_devices(None, cpu, per_gpu=2)
    with pytest.raises(InputError, match="gpus 0: must be >= 1"):
        ConvertConfig(gpus=0)
    with pytest.raises(InputError, match="processes_per_gpu 0: must be >= 1"):
        ConvertConfig(processes_per_gpu=0)
    # a machine with two GPUs (counted, not used): each GPU's processes together, so a GPU gets contiguous chunks
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cuda = torch.device("cuda")
    assert spread.gpu_devices(None, cuda, per_gpu=2) == ("cuda:0", "cuda:0", "cuda:1", "cuda:1")
    assert spread.gpu_devices(1, cuda, per_gpu=3) == ("cuda",) * 3
    assert spread.gpu_devices(None, torch.device("cuda:1")) == ("cuda:1",)
    with pytest.raises(InputError, match="--gpus 3: this machine has 2 CUDA device"):
        spread.gpu_devices(3, cuda, per_gpu=2)
