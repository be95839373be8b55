"""``python -m svg3d batch``: a folder in-process and on a local Ray cluster, a worker killed mid-unit, a long clip split
at its cuts and joined, reruns that skip, failures in the summary.

What "the same outputs" means here: the eye frames (``eyes_png``, lossless PNG) are compared file by file, byte for
byte; the side-by-side mp4 is encoded losslessly (``--crf 0``), so its *decoded* frames are compared exactly. The mp4
files' bytes are not compared: x264's multithreaded output is not repeatable under load (seen in test_convert), so
two runs may pack the same pixels into different bitstreams.
"""

from __future__ import annotations

import contextlib
import io as stdio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from svg3d import batch, cli, convert, io, join, scene
from svg3d.__main__ import main
from svg3d.batch import BatchSettings, Unit
from svg3d.config import ClipConfig, ConvertConfig, DepthConfig
from svg3d.demo import write_tone
from svg3d.encode import EncoderSettings, StereoTag, VideoEncoder
from svg3d.source import read_clip
from svg3d.stages.export import ExportSettings
from tests.media import audio_seconds, probe
from tests.test_export import mp4_boxes

ROOT = Path(__file__).resolve().parents[1]
FPS = 8
SHOT = 8  # frames per shot of the long clip
# tiny and weight-free: given depth, DIS flow, the classical filler; lossless eyes and a lossless mp4 (module docstring)
FLAGS = ["--flow", "dis", "--fill", "classical", "--exports", "sbs,eyes_png", "--crf", "0", "--chunk-frames", "4",
         "--segment-frames", "6", "--device", "cpu", "--quiet"]  # fmt: skip
CLIPS = ("a", "b", "long")


def render(seed: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """A scene of ``svg3d.scene``: frames ``uint8 (T, 64, 96, 3)`` and inverse depth ``float32 (T, 64, 96)``."""
    rgb, z = scene.render(scene.make_scene(seed, num_frames=frames, height=64, width=96))
    return (rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy(), (1.0 / z.numpy()).astype(np.float32)  # T 3 H W -> T H W 3


def write_clip(root: Path, name: str, shots: list[tuple[int, int]]) -> Path:
    """``root/in/<name>.mp4`` (with a tone) of the scenes ``[(seed, frames), ...]`` one after the other, and its depth
    maps in ``root/depth/<name>/`` (batch's layout: one folder per input, at its relative path)."""
    parts = [render(seed, n) for seed, n in shots]
    frames, depth = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    tone = write_tone(root / f"{name}.m4a", len(frames) / FPS)
    video = root / "in" / f"{name}.mp4"
    video.parent.mkdir(parents=True, exist_ok=True)
    io.write_video(video, frames, FPS, audio_from=tone)
    for t, d in enumerate(depth):
        io.write_depth(root / "depth" / name / f"{t:05d}.npy", d)
    return video


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """``in/``: a.mp4 (8 frames), b.mp4 (10), long.mp4 (three scenes of 8: cuts at 8 and 16) and bad.mp4 (garbage
    after an mp4 header); ``depth/``: their depth maps."""
    root = tmp_path_factory.mktemp("batch")
    write_clip(root, "a", [(1, 8)])
    write_clip(root, "b", [(2, 10)])
    write_clip(root, "long", [(0, SHOT), (8, SHOT), (9, SHOT)])  # seeds whose colours differ enough to be cuts
    (root / "in" / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    return root


@contextlib.contextmanager
def kept_logging():
    """A CLI ``main`` points the root logger at its streams; give the handlers back afterwards (module fixtures)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for h in root.handlers:
            if h not in handlers:
                h.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def run_main(argv: list[str]) -> tuple[int, str]:
    """``python -m svg3d`` in this process: (exit status, stdout)."""
    out = stdio.StringIO()
    with kept_logging(), contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def batch_argv(media: Path, out: Path, *extra: str, folder: Path | None = None) -> list[str]:
    return ["batch", str(folder or media / "in"), "-o", str(out), "--depth-from", str(media / "depth"), *FLAGS, *extra]


@pytest.fixture(scope="module")
def in_process(media, tmp_path_factory) -> tuple[Path, int, str]:
    """The folder converted in this process with --skip-error: (output folder, exit status, summary)."""
    out = tmp_path_factory.mktemp("in_process") / "out"
    code, table = run_main(batch_argv(media, out, "--skip-error"))
    return out, code, table


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of this test process: two 1-CPU workers' room, no dashboard, a small object store.
    Ray binds the node to this machine's own address even when asked for 127.0.0.1 (``resolve_ip_for_localhost``),
    so the address handed to the CLI is 127.0.0.1 with the cluster's port: a local connection all the same."""
    import ray

    batch.connect(None, num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 * 1024, _node_ip_address="127.0.0.1")
    port = ray.get_runtime_context().gcs_address.rsplit(":", 1)[1]
    yield f"127.0.0.1:{port}"
    ray.shutdown()


def assert_same_outputs(x: Path, y: Path, name: str) -> None:
    """Input ``name``'s exports in two output folders are the same (module docstring)."""
    eyes_x, eyes_y = x / name / f"{name}_eyes", y / name / f"{name}_eyes"
    files = sorted(p.relative_to(eyes_x) for p in eyes_x.rglob("*.png"))
    assert files and files == sorted(p.relative_to(eyes_y) for p in eyes_y.rglob("*.png")), name
    for f in files:
        assert (eyes_x / f).read_bytes() == (eyes_y / f).read_bytes(), f"{name}: {f}"
    sbs_x, sbs_y = (read_clip(o / name / f"{name}_SBS_LR.mp4").frames for o in (x, y))
    assert sbs_x.shape == sbs_y.shape and np.array_equal(sbs_x, sbs_y), name


def rows(table: str) -> dict[str, list[str]]:
    """The summary's rows: input -> [status, segments, seconds, error...]."""
    return {line.split()[0]: line.split(maxsplit=1)[1].split(maxsplit=3) for line in table.splitlines()[1:-1]}


# --------------------------------------------------------------------------------------------------
# in-process and on Ray


def test_in_process_batch_converts_the_folder_and_reports_the_corrupt_file(in_process):
    out, code, table = in_process
    assert code == 1, table  # something failed: non-zero, although --skip-error went on
    r = rows(table)
    assert [r[f"{c}.mp4"][0] for c in CLIPS] == ["done"] * 3 and r["bad.mp4"][0] == "failed", table
    assert "bad.mp4: cannot read as a video" in r["bad.mp4"][3], table
    assert [r[f"{c}.mp4"][1] for c in CLIPS] == ["1", "1", "3"], table  # only the long clip is split
    assert table.splitlines()[-1].startswith("3 done, 0 skipped, 1 failed")
    for name, frames in (("a", 8), ("b", 10), ("long", 3 * SHOT)):
        p = probe(out / name / f"{name}_SBS_LR.mp4")
        assert (p.frames, p.width, p.height) == (frames, 2 * 96, 64), name
        assert len(io.list_images(out / name / f"{name}_eyes" / "right")) == frames
    assert not (out / "bad" / "bad_SBS_LR.mp4").exists()


def test_ray_batch_equals_the_in_process_run(media, in_process, ray_cluster, tmp_path):
    """The CLI as another process, a driver of its own connecting to the test's cluster by address."""
    ref, _, _ = in_process
    out = tmp_path / "out"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "svg3d", *batch_argv(media, out, "--skip-error", "--ray", ray_cluster)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 1, res.stderr[-3000:]
    r = rows(res.stdout)
    assert [r[f"{c}.mp4"][0] for c in CLIPS] == ["done"] * 3 and r["bad.mp4"][0] == "failed", res.stdout
    assert "cannot read as a video" in r["bad.mp4"][3]
    for name in CLIPS:
        assert_same_outputs(ref, out, name)


def test_a_worker_killed_in_the_middle_of_a_unit_is_restarted_and_the_outputs_equal_an_undisturbed_run(media, in_process, ray_cluster, tmp_path):
    ref, _, _ = in_process
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "long.mp4").symlink_to(media / "in" / "long.mp4")
    out = tmp_path / "out"
    marker = tmp_path / "killed"

    def kill_once(stage: str, first: int, count: int) -> None:
        """In a Ray worker, after the first committed chunk of a fill stage: SIGKILL this very process, once."""
        if stage == "filled":
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)

    args = cli.create_parser().parse_args(batch_argv(media, out, folder=folder))
    settings = BatchSettings(segment_frames=6, ray="auto", retries=2)
    report = batch.run_batch(folder, out, cli.config_from_args(args), settings=settings, device="cpu", on_chunk=kill_once)
    assert marker.exists(), "no worker was killed"
    assert report.ok and report.rows[0].status == "done" and report.rows[0].segments == 3, report.table()
    # the retried unit resumed from the chunk its killed attempt had committed: frames 0-3 or, where the fill computes
    # two chunks at once (threads.ThreadPlan.fill_workers) and the second committed first, frames 4-7
    logs = [p.read_text() for p in (out / "long" / "work" / "segments").glob("*/work/convert.log")]
    assert sum(re.search(r"filled     resumed at frame [04]: 4 of 8 frames were done", text) is not None for text in logs) == 1, logs
    assert_same_outputs(ref, out, "long")


# --------------------------------------------------------------------------------------------------
# a long clip split at its cuts


def test_the_long_clip_splits_at_its_two_cuts_and_the_join_equals_the_segments_converted_one_by_one(media, in_process, tmp_path):
    out, _, _ = in_process
    work_dir = out / "long" / "work"
    assert json.loads((work_dir / batch.PLAN_RECORD).read_text())["segments"] == [[0, SHOT], [SHOT, SHOT], [2 * SHOT, SHOT]]
    assert not any((work_dir / "segments").glob("*/out")), "the segments' own exports are deleted once joined"
    args = cli.create_parser().parse_args(batch_argv(media, out))
    config = cli.config_from_args(args)
    eyes, sbs = [], []
    for k, first in enumerate((0, SHOT, 2 * SHOT)):
        cfg = replace(config, clip=ClipConfig(start_frame=first, num_frames=SHOT), depth=DepthConfig(depth_from=media / "depth" / "long"))
        result = convert.convert(media / "in" / "long.mp4", tmp_path / f"segment{k}", cfg)
        eyes.append(sorted(result.exports["eyes_png"].rglob("*.png")))
        sbs.append(read_clip(result.exports["sbs"]).frames)
    joined = out / "long" / "long_eyes"
    for side in ("left", "right"):
        files = io.list_images(joined / side)
        parts = [f for segment in eyes for f in segment if f.parent.name == side]
        assert len(files) == len(parts) == 3 * SHOT
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files, parts, strict=True)), side
    video = out / "long" / "long_SBS_LR.mp4"
    assert np.array_equal(read_clip(video).frames, np.concatenate(sbs))
    # exact frame count, consecutive timestamps, the original's audio over the whole span, the stereo box kept
    import av

    with av.open(str(video)) as c:
        s = c.streams.video[0]
        pts = sorted(p.pts for p in c.demux(s) if p.size)
        assert [round(t * Fraction(s.time_base) * FPS) for t in pts] == list(range(3 * SHOT))
    p = probe(video)
    assert p.frames == 3 * SHOT and p.fps == pytest.approx(FPS)
    assert p.audio_seconds == pytest.approx(audio_seconds(media / "in" / "long.mp4"), abs=1e-3)
    assert [k for k in mp4_boxes(video) if k.endswith("/st3d")], "the joined SBS lost its stereo metadata"


def test_split_at_cuts_keeps_every_segment_at_least_the_minimum():
    assert batch.split_at_cuts(100, 24, [3, 8, 10, 20], 5) == ((100, 8), (108, 16))  # 3: too soon, 10: too close to 8, 20: to the end
    assert batch.split_at_cuts(0, 24, [8, 16], 8) == ((0, 8), (8, 8), (16, 8))
    assert batch.split_at_cuts(0, 24, [], 8) == ((0, 24),)


def make_segment(path: Path, frames: int, *, width: int = 96, seed: int = 0, fps: Fraction = Fraction(FPS), audio: Path | None = None,
                 codec: str = "libx264") -> Path:  # fmt: skip
    rng = np.random.default_rng(seed)
    settings = EncoderSettings(codec=codec, container="mkv" if path.suffix == ".mkv" else "mp4")
    with VideoEncoder(path, settings, fps=fps, width=width, height=64, stereo=StereoTag("sbs"), audio=audio) as v:
        v.write((rng.random((frames, 64, width, 3)) * 255).astype(np.uint8))
    return path


def test_join_in_matroska_at_the_ntsc_rate_with_audio(tmp_path):
    """Matroska keeps millisecond timestamps (29.97 fps frames are 33 or 34 ms), no decode timestamps for the first
    B-frames, and shifts every stream by the AAC priming: the joined frames are still the segments' frames."""
    fps = Fraction(30000, 1001)
    tone = write_tone(tmp_path / "tone.m4a", 23 / float(fps))
    segments = [make_segment(tmp_path / f"s{k}.mkv", n, seed=k, fps=fps, audio=tone) for k, n in enumerate((7, 11, 5))]
    joined = tmp_path / "joined.mkv"
    join.join_videos(segments, [7, 11, 5], joined, fps=fps, container="mkv", audio=tone, stereo=StereoTag("sbs"))
    assert np.array_equal(read_clip(joined).frames, np.concatenate([read_clip(s).frames for s in segments]))
    import av

    with av.open(str(joined)) as c:
        assert c.streams.video[0].metadata.get("stereo_mode") == "left_right" and c.streams.audio


def test_join_refuses_segments_that_do_not_fit(tmp_path):
    a, b = make_segment(tmp_path / "a.mp4", 5), make_segment(tmp_path / "b.mp4", 4, seed=1)
    join.join_videos([a, b], [5, 4], tmp_path / "ab.mp4", fps=Fraction(FPS), container="mp4", stereo=StereoTag("sbs"))
    assert probe(tmp_path / "ab.mp4").frames == 9 and mp4_boxes(tmp_path / "ab.mp4")
    with pytest.raises(join.JoinError, match="expected 0..5"):  # a segment with fewer frames than its plan says
        join.join_videos([a, b], [6, 3], tmp_path / "x.mp4", fps=Fraction(FPS), container="mp4")
    wide = make_segment(tmp_path / "wide.mp4", 4, width=128)
    with pytest.raises(join.JoinError, match="width"):  # another stream: no joining without re-encoding
        join.join_videos([a, wide], [5, 4], tmp_path / "y.mp4", fps=Fraction(FPS), container="mp4")


# --------------------------------------------------------------------------------------------------
# reruns, failures, the worker


def test_a_rerun_skips_finished_inputs_without_opening_them_and_redoes_only_a_missing_output(media, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.mp4").symlink_to(media / "in" / "a.mp4")
    out = tmp_path / "out"
    assert run_main(batch_argv(media, out, folder=folder))[0] == 0
    real = convert.convert

    def refuse(*args, **kwargs):
        raise AssertionError("convert ran for a finished input")

    monkeypatch.setattr(convert, "convert", refuse)
    code, table = run_main(batch_argv(media, out, folder=folder))
    assert code == 0 and rows(table)["a.mp4"][0] == "skipped", table
    results = []
    monkeypatch.setattr(convert, "convert", lambda *a, **k: results.append(real(*a, **k)) or results[-1])
    (out / "a" / "a_SBS_LR.mp4").unlink()
    code, table = run_main(batch_argv(media, out, folder=folder))
    assert code == 0 and rows(table)["a.mp4"][0] == "done", table
    assert [s.name for s in results[0].stages if s.ran] == ["export"]  # the stages were kept: only the export again
    assert probe(out / "a" / "a_SBS_LR.mp4").frames == 8


def test_without_skip_error_the_first_failure_stops_the_batch(media, tmp_path):
    code, table = run_main(batch_argv(media, tmp_path / "out", "--segment-frames", "0"))
    r = rows(table)
    assert code == 1 and r["a.mp4"][0] == r["b.mp4"][0] == "done" and r["bad.mp4"][0] == "failed", table
    assert r["long.mp4"][0] == "not", table  # "not run": inputs are taken in natural order, long.mp4 after bad.mp4
    assert not (tmp_path / "out" / "long").exists()


def test_bad_batch_arguments_are_one_line(media, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, message in (
        (["batch", str(tmp_path / "nowhere"), "-o", str(tmp_path / "o")], "no such folder"),
        (["batch", str(empty), "-o", str(tmp_path / "o")], "no videos"),
        (["batch", str(media / "in"), "-o", str(tmp_path / "o"), "--segment-frames", "-1"], "--segment-frames -1: must be >= 0"),
        (["batch", str(media / "in"), "-o", str(tmp_path / "o"), "--codec", "nope"], "--codec nope"),
    ):
        with kept_logging():
            assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err


def test_inputs_are_found_in_natural_order_with_their_own_folders(tmp_path):
    src = tmp_path / "src"
    for f in ("x10.mp4", "x2.mp4", "clip.mp4", "clip.mkv", "notes.txt", "sub/y.mov", "sub/deeper/z.mp4", "frames/images/0.png",
              "seq/1.jpg", ".hidden.mp4", "out/old_SBS_LR.mp4"):  # fmt: skip
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        (src / f).write_bytes(b"")
    (src / "sub" / "loop").symlink_to(src)  # a link back up the tree: followed once, not forever
    flat = batch.find_inputs(src, exclude=(src / "out",))
    assert [p.relative_to(src).as_posix() for p in flat] == ["clip.mkv", "clip.mp4", "frames", "seq", "x2.mp4", "x10.mp4"]
    deep = batch.find_inputs(src, recursive=True, exclude=(src / "out",))
    assert [p.relative_to(src).as_posix() for p in deep] == [
        "clip.mkv", "clip.mp4", "frames", "seq", "sub/deeper/z.mp4", "sub/y.mov", "x2.mp4", "x10.mp4",
    ]  # fmt: skip
    names = batch.output_names(deep, src)
    assert names[src / "clip.mp4"] == "clip.mp4" and names[src / "clip.mkv"] == "clip.mkv"  # would share OUT/clip/
    assert names[src / "x2.mp4"] == "x2" and names[src / "sub/deeper/z.mp4"] == "sub/deeper/z" and names[src / "frames"] == "frames"


def test_a_worker_keeps_its_models_loaded_between_units(tmp_path):
    from svg3d import models
    from svg3d.tiny_models import save_tiny_depth_anything

    model = save_tiny_depth_anything(tmp_path / "depth-model")
    for name, seed in (("p", 3), ("q", 4)):
        frames, _ = render(seed, 4)
        io.write_video(tmp_path / "in" / f"{name}.mp4", frames, FPS)
    config = ConvertConfig(depth=DepthConfig(model=str(model)), flow="dis", filler="classical", exports=ExportSettings(exports=("eyes_png",)))
    jobs = batch.make_jobs(tmp_path / "in", tmp_path / "out", config, BatchSettings())
    worker = batch.Worker("cpu")
    for job in jobs:
        plan = worker.run(Unit("plan", job, segment_frames=0)).value
        outcome = worker.run(Unit("convert", job, plan=plan))
        assert outcome.error is None, outcome.error
    assert worker.models.loads["depth"] == 1  # two inputs through the depth model, loaded once
    assert models._KEPT is None  # outside a unit nothing is kept: other callers load as usual
    fresh = convert.convert(jobs[1].input, tmp_path / "fresh", config)  # a model loaded for it alone gives the same frames
    for side in ("left", "right"):
        got = io.read_frames(io.list_images(tmp_path / "out" / "q" / "q_eyes" / side))
        assert np.array_equal(got, io.read_frames(io.list_images(fresh.exports["eyes_png"] / side)))


def test_a_joined_hevc_mp4_keeps_its_sample_entry_tag_and_colour(tmp_path):
    """Remuxing resets the codec tag: HEVC must stay hvc1 (what Apple players take), with the segments' colour tags."""
    import av

    segments = [make_segment(tmp_path / f"h{k}.mp4", n, seed=k, codec="libx265") for k, n in enumerate((4, 3))]
    joined = tmp_path / "joined.mp4"
    join.join_videos(segments, [4, 3], joined, fps=Fraction(FPS), container="mp4", stereo=StereoTag("sbs"))
    facts = []
    for path in (segments[0], joined):
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            facts.append((s.codec_tag, s.codec_context.color_primaries, s.codec_context.color_trc, s.codec_context.colorspace,
                          s.codec_context.color_range))  # fmt: skip
    assert facts[0][0] == "hvc1" and facts[1] == facts[0]
    assert np.array_equal(read_clip(joined).frames, np.concatenate([read_clip(s).frames for s in segments]))


def test_a_ray_address_where_no_cluster_listens_gives_up_at_once_in_one_line(tmp_path):
    """``--ray 127.0.0.1:1`` (a closed port on loopback): Ray alone retries for minutes; batch says so in one line."""
    folder = tmp_path / "in"
    write_clip(tmp_path, "a", [(1, 4)])
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "svg3d", "batch", str(folder), "-o", str(tmp_path / "out"), "--depth-from",
                          str(tmp_path / "depth"), *FLAGS, "--ray", "127.0.0.1:1"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    seconds = time.monotonic() - started
    assert res.returncode != 0 and seconds < 30, (res.returncode, seconds)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and re.search(r"ray 127\.0\.0\.1:1: no Ray cluster answers there \(Connection refused\)", lines[0]), res.stderr
    assert "Traceback" not in res.stderr
