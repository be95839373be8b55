"""The web UI (``svg3d.ui``, ``svg3d.jobs``): settings from the convert parser, safe unpacking, the job queue, and
a real server driven through ``gradio_client``, raw HTTP and headless Chromium (Debian's ``chromium``).

The server runs as ``python -m svg3d ui`` in a subprocess, as a user starts it, over a jobs folder in a temporary
folder, with a 1 MB upload limit (the clips here are ~30 KB). Browser tests skip when ``/usr/bin/chromium`` is
missing (``.ci/run`` and ``run.sh`` install it). ``SVG3D_UI_SCREENSHOT=1`` also writes the browser test's
screenshot to ``docs/ui.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gradio")

from svg3d import io, jobs, ui  # noqa: E402
from svg3d.checks import InputError  # noqa: E402
from svg3d.stages.export import EXPORTS  # noqa: E402
from tests.media import probe, rendered_clip, stage_folder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]  # fmt: skip
FAST = "--flow dis --fill classical"  # weight-free stages
LIMIT_MB = 8  # the depth zips: the short clip's ~0.9 MB, the long clip's ~7 MB
LONG_FRAMES = 64


# --------------------------------------------------------------------------------------------------
# settings: the convert parser as controls


def test_every_convert_flag_is_a_control_with_a_plain_label_and_the_parsers_default():
    parser = jobs.convert_parser()
    flags = {o for a in parser._actions for o in a.option_strings if not o.startswith("--no-")}
    specs = ui.controls()
    assert {c.option for c in specs} == flags - {"--work-dir", "--progress-log", "--depth-from", "--depth-model", "--quiet"}
    # the 3D controls first, in the page's order, then the clip trimming, then the rest
    assert [c.dest for c in specs[: len(ui.MAIN)]] == list(ui.MAIN) and {c.section for c in specs[: len(ui.MAIN)]} == {ui.MAIN_TITLE}
    titles = ui.section_titles(specs)
    assert titles[:2] == [ui.MAIN_TITLE, ui.SECTIONS["clip"]] and len(titles) == len(set(titles))
    # people read labels, not flags; the flag is in the info line
    for c in specs:
        assert c.label and "--" not in c.label and c.label != c.dest, c
    by_dest = {c.dest: c for c in specs}
    assert by_dest["strength"].section == ui.MAIN_TITLE and by_dest["exports"].section == ui.SECTIONS["outputs"]
    assert by_dest["flow"].default == parser.get_default("flow") and by_dest["flow"].choices == ("auto", "raft", "raft_small", "dis", "torch")
    assert by_dest["exports"].default == ("sbs", "hsbs", "anaglyph")
    assert by_dest["stabilise"].kind == "toggle" and by_dest["stabilise"].option == "--stabilise"
    # the sliders start at the value convert takes without the flag, so they give no flag there
    assert (by_dest["strength"].kind, by_dest["strength"].default) == ("slider", jobs.parse_flags([]).matrix.strength)
    assert by_dest["convergence"].default == jobs.parse_flags([]).matrix.convergence
    # every control at its default gives no flag; a changed one gives exactly its flag, which the parser reads back
    defaults = [c.default for c in specs]
    assert ui.flags_of(specs, defaults) == []
    changed = {"strength": 4.5, "num_frames": "6", "stabilise": False, "layout": "right2left", "exports": ["sbs", "depth"],
               "chunk_frames": 4.0, "metric_depth": False}  # fmt: skip
    values = [changed.get(c.dest, c.default) for c in specs]
    flags = ui.flags_of(specs, values)
    assert sorted(flags) == sorted(["--strength", "4.5", "--num-frames", "6", "--no-stabilise", "--layout", "right2left",
                                    "--exports", "sbs,depth", "--chunk-frames", "4"])  # fmt: skip
    config = jobs.parse_flags(flags)
    assert config.matrix.strength == 4.5 and config.clip.num_frames == 6 and config.stabilise is None
    assert config.exports.exports == ("sbs", "depth") and config.chunk_frames == 4
    for bad, message in (("six", "not a number"), ("nan", "not a finite number"), ("inf", "not a finite number")):
        with pytest.raises(InputError, match=rf"--num-frames '{bad}': {message}"):
            ui.flags_of(specs, [{"num_frames": bad}.get(c.dest, c.default) for c in specs])


def test_flag_checks_are_the_clis_and_land_in_the_section_of_their_flag():
    specs = ui.controls()
    groups = ui.flag_sections(specs)
    cases = [
        (["--strength", "3", "--baseline", "0.1"], "--strength and --baseline both set the 3D effect", ui.MAIN_TITLE),
        (["--num-views", "1"], "--num-views 1: need at least 2", ui.SECTIONS["views"]),
        (["--width", "64"], "--width and --height go together", ui.SECTIONS["clip"]),
        (["--fill", "magic"], "argument --fill: invalid choice", ui.MAIN_TITLE),
        (["--exports", "sbs,nonsense"], "nonsense", ui.SECTIONS["outputs"]),
        (["--near", "0.5", "--far", "0.2"], "--near", ui.SECTIONS["3D effect"]),
    ]
    for flags, message, group in cases:
        with pytest.raises(InputError) as e:
            jobs.parse_flags(flags)
        assert message in str(e.value), (flags, str(e.value))
        assert ui.message_group(str(e.value), groups) == group, str(e.value)
    # flags naming paths are the UI's; model flags take hub ids only
    for flags in (["--work-dir", "/etc"], ["--progress-log=/tmp/x"], ["--depth-from", "/etc"], ["-o", "x"], ["--help"]):
        with pytest.raises(InputError, match="set by the web UI"):
            jobs.parse_flags(flags)
    for model in ("/etc", "../../models/x", "./local", "a/b/c", "a/.."):
        with pytest.raises(InputError, match="hub id"):
            jobs.parse_flags(["--depth-model", model])
    assert jobs.parse_flags(["--depth-model", "depth-anything/Depth-Anything-V2-Base-hf"]).depth.model.endswith("Base-hf")


def test_ui_flags_max_upload_mb_finite_and_positive_models_dir_a_folder(tmp_path):
    from svg3d.config import UISettings

    assert UISettings(max_upload_mb=1.5).max_upload_mb == 1.5 and UISettings().max_upload_mb == 2048
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for value in (-1, float("-inf"), 0, 1e-9, "many"):
        with pytest.raises(InputError, match="max_upload_mb"):
            UISettings(max_upload_mb=value)
    # through the command, as a user types them; all at once (each start imports torch: seconds on a busy machine)
    cases = {
        "nan": (["--max-upload-mb=nan"], "error: --max-upload-mb nan: must be a finite number of megabytes > 0"),
        "inf": (["--max-upload-mb=inf"], "error: --max-upload-mb inf: must be a finite number of megabytes > 0"),
        "models": (["--models-dir", str(tmp_path / "nowhere")], f"error: --models-dir {tmp_path / 'nowhere'}: no such folder"),
    }
    runs = {name: subprocess.Popen([sys.executable, "-m", "svg3d", "ui", "--jobs-dir", str(tmp_path / f"jobs-{name}"), *args],
                                   cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name, (args, _) in cases.items()}  # fmt: skip
    for name, proc in runs.items():
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 2 and stderr.splitlines() == [cases[name][1]], (name, stderr)
        assert not (tmp_path / f"jobs-{name}").exists()


# --------------------------------------------------------------------------------------------------
# inputs


def _zip(path: Path, members: dict[str, bytes], *, links: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # a symbolic link
            zf.writestr(info, "/etc/passwd")
    return path


def test_unpack_zip_is_flat_bounded_and_refuses_escapes(tmp_path):
    png = (tmp_path / "f.png")
    io.write_image(png, np.zeros((16, 16, 3), np.uint8))
    data = png.read_bytes()
    ok = _zip(tmp_path / "ok.zip", {"clip/frames/10.png": data, "clip/frames/2.png": data, "clip/notes.txt": b"x",
                                    "__MACOSX/._2.png": b"junk", "clip/.hidden.png": data})  # fmt: skip
    got = jobs.unpack_zip(ok, tmp_path / "ok", suffixes=io.IMAGE_SUFFIXES, max_bytes=10**6, what="ok.zip")
    assert sorted(p.name for p in got) == ["10.png", "2.png"] and [p.name for p in io.list_images(tmp_path / "ok")] == ["2.png", "10.png"]
    refused = {
        "dotdot": ({"../evil.png": data}, (), "points outside"),
        "nested-dotdot": ({"a/../../evil.png": data}, (), "points outside"),
        "absolute": ({"/tmp/evil.png": data}, (), "points outside"),
        "drive": ({"C:/evil.png": data}, (), "points outside"),
        "link": ({}, ("frames/link.png",), "is a link"),
        "duplicate": ({"a/1.png": data, "b/1.png": data}, (), "two members"),
        "empty": ({"readme.txt": b"hello"}, (), "no .jpg/.jpeg/.png files"),
    }
    for name, (members, links, message) in refused.items():
        with pytest.raises(InputError, match=message):
            jobs.unpack_zip(_zip(tmp_path / f"{name}.zip", members, links=links), tmp_path / name, suffixes=io.IMAGE_SUFFIXES,
                            max_bytes=10**6, what=name)  # fmt: skip
        assert not (tmp_path / name).exists(), name  # nothing of a refused zip is kept
    assert not (tmp_path / "evil.png").exists() and not Path("/tmp/evil.png").exists()
    # a zip bomb: 64 MB of zeros deflate to ~64 KB; unpacking stops at the limit, counted, not read from the headers
    bomb = _zip(tmp_path / "bomb.zip", {"big.png": bytes(64 * 2**20)})
    assert bomb.stat().st_size < 2**20
    with pytest.raises(InputError, match="unpacks to more than 8 MB"):
        jobs.unpack_zip(bomb, tmp_path / "bomb", suffixes=io.IMAGE_SUFFIXES, max_bytes=8 * 2**20, what="bomb.zip")
    assert not (tmp_path / "bomb").exists()
    (tmp_path / "not.zip").write_bytes(b"PK\x03\x04 this is no zip")
    with pytest.raises(InputError, match="not a readable zip"):
        jobs.unpack_zip(tmp_path / "not.zip", tmp_path / "not", suffixes=io.IMAGE_SUFFIXES, max_bytes=10**6, what="not.zip")
    assert jobs.safe_name("../../etc/passwd") == "passwd" and jobs.safe_name("..\\x y.mp4") == "x_y.mp4" and jobs.safe_name("...") == "input"


def test_read_progress_counts_this_runs_rate(tmp_path):
    log = tmp_path / "progress.jsonl"
    lines = [
        {"stage": "depth", "done": 0, "total": 10, "time": 100.0},
        {"stage": "depth", "done": 10, "total": 10, "time": 101.0},
        {"stage": "filled", "done": 0, "total": 10, "time": 101.0},
        {"stage": "filled", "done": 4, "total": 10, "time": 105.0},  # the first run: 1 frame/s, then killed
        {"stage": "filled", "done": 4, "total": 10, "time": 200.0},  # resumed at frame 4
        {"stage": "filled", "done": 7, "total": 10, "time": 201.0},  # this run: 3 frames/s
    ]
    log.write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"stage": "fil')  # a torn last line
    first, second = jobs.read_progress(log, since=200.0)
    assert (first.stage, first.done, first.eta) == ("depth", 10, 0.0)
    assert (second.stage, second.done, second.total) == ("filled", 7, 10) and second.eta == pytest.approx(1.0)
    assert jobs.read_progress(log, since=0.0)[1].eta == pytest.approx(3 / ((7 - 0) / 100.0))
    assert jobs.read_progress(tmp_path / "missing.jsonl") == []


def test_overall_progress_counts_every_stage_and_estimates_those_to_come():
    S = jobs.StageProgress
    expected = jobs.expected_stages([])
    assert expected == ("depth", "stabilised", "filled", "export") and jobs.expected_stages(["--no-stabilise"]) == ("depth", "filled", "export")
    # depth done; stabilised at 4 of 10 frames, 2 frames/s: 3 s left, and 5 s for each stage to come (0.5 s a frame)
    stages = [S("depth", 10, 10, 0.0, 5.0), S("stabilised", 4, 10, 3.0, 2.0)]
    o = jobs.overall_progress(stages, expected)
    assert (o.stage, o.stages, o.done, o.total) == (2, 4, 14, 40)
    assert o.eta == pytest.approx(3.0 + 2 * 10 * (1 / 5.0 + 1 / 2.0) / 2)
    assert jobs.overall_progress([S("depth", 2, 10, None, None)], expected).eta is None  # no rate yet: unknown
    # a filler's own pre-pass joins where it starts; all done: the last stage, nothing left
    done = [S(n, 10, 10, 0.0, 1.0) for n in ("depth", "stabilised", "denoised", "filled", "export")]
    o = jobs.overall_progress(done, expected)
    assert (o.stage, o.stages, o.done, o.total, o.eta) == (5, 5, 50, 50, 0.0)


def test_preview_is_the_pair_convert_makes_of_that_frame(tmp_path):
    """The preview's pair equals, pixel for pixel, the eyes convert writes for a one-frame clip with the same
    settings and depth (the same warp and fill code); a filler that is not quick is previewed by classical."""
    from dataclasses import replace

    from svg3d import convert, preview

    _, depth_dir, frames = rendered_clip(tmp_path / "clip", frames=1, height=64, width=96, audio=False)
    io.write_image(tmp_path / "frames" / "00000.png", frames[0])
    disparity = io.read_depth(depth_dir / "00000.npy")
    for flags in (["--fill", "classical", "--strength", "4"], ["--fill", "telea", "--convergence", "0.2", "--layout", "right2left"]):
        config = jobs.parse_flags([*flags, "--no-stabilise", "--exports", "eyes_png", "--no-preview"])
        result = convert.convert(tmp_path / "frames", tmp_path / "out", replace(config, depth=replace(config.depth, depth_from=depth_dir)))
        eyes = result.exports["eyes_png"]
        pair = preview.stereo_pair(frames[0], disparity, config)
        assert pair.filler == config.filler and 0 < pair.holes < 0.5
        np.testing.assert_array_equal(pair.left, io.read_image(eyes / "left" / "000000.png"), err_msg=str(flags))
        np.testing.assert_array_equal(pair.right, io.read_image(eyes / "right" / "000000.png"), err_msg=str(flags))
        input_eye = pair.right if "right2left" in flags else pair.left
        np.testing.assert_array_equal(input_eye, frames[0])
    # stronger effect, more to fill; diffusion (minutes) is previewed with the classical filler
    weak, strong = (preview.stereo_pair(frames[0], disparity, jobs.parse_flags(["--strength", s])) for s in ("1", "6"))
    assert strong.holes > 2 * weak.holes
    assert preview.stereo_pair(frames[0], disparity, jobs.parse_flags(["--fill", "diffusion"])).filler == "classical"
    sbs = preview.side_by_side(strong)
    assert sbs.shape == (64, 192, 3) and (sbs[:, :96] == strong.left).all() and (sbs[:, 96:] == strong.right).all()
    gif = preview.write_wiggle(tmp_path / "w.gif", strong)
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames == 2 and im.size == (96, 64) and im.info["loop"] == 0
    # a frame wider than the preview's width: downscaled with a given focal, so the effect looks the same
    small, cfg = preview.downscale(frames[0], jobs.parse_flags(["--baseline", "0.05", "--focal", "300"]), max_width=48)
    assert small.shape == (32, 48, 3) and cfg.matrix.focal == 150 and cfg.matrix.max_baseline == 0.05
    frame = frames[0]
    assert preview.downscale(frame, config, max_width=96)[0] is frame  # narrow enough: as it is
    # the cache: a key is computed once
    cache = preview.Previewer(cache_frames=2)
    for key in ("a", "a", "b", "a", "c", "b"):
        cache.get((key,), lambda k=key: np.array(k))
    assert cache.computed == 4  # a, b, c, then b again (pushed out by c; "a" was used more recently)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Rendered clips (mp4, no audio) with exact depth, and their depth maps zipped: "short", 8 frames of 224x128;
    "long", 64 frames of 224x128: a fill long enough (~5 s on 2 cores) for a cancel to land inside it."""
    root = tmp_path_factory.mktemp("clips")
    out = {}
    for name, frames, (h, w) in (("short", 8, (128, 224)), ("long", LONG_FRAMES, (128, 224))):
        video, depth, _ = rendered_clip(root / name, frames=frames, height=h, width=w, audio=False)
        archive = root / name / "depth.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for f in sorted(depth.iterdir()):
                zf.write(f, f"depth/{f.name}")
        out[name] = (video, archive)
    return out


def _fake_python(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_queue_runs_one_job_at_a_time_in_order_and_cancels_within_a_second(tmp_path, clips):
    """A stand-in for convert that ignores SIGTERM: cancel must fall back to SIGKILL after the grace period."""
    video, _ = clips["short"]
    root = tmp_path / "jobs"
    root.mkdir()
    shutil.copy(video, root / "upload.mp4")  # uploads are files inside the jobs folder
    shutil.copy(clips["short"][1], root / "depth.zip")
    queue = jobs.JobQueue(root, python=_fake_python(tmp_path, "trap '' TERM\necho started >> \"$PWD/../order\"\nsleep 30"))
    try:
        a, b, c = (queue.submit([], upload=root / "upload.mp4", depth_zip=root / "depth.zip", max_upload_bytes=2**20) for _ in range(3))
        deadline = time.monotonic() + 10
        while queue.position(a.id) != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [queue.position(j.id) for j in (a, b, c)] == [0, 1, 2]  # 0: running; 1: next
        assert a.command(queue.python)[3:] == ["convert", str(a.folder / "input/upload.mp4"), "-o", str(a.folder / "out"),
                                               "--progress-log", str(a.folder / "progress.jsonl"), "--quiet",
                                               "--depth-from", str(a.folder / "depth")]  # fmt: skip
        assert queue.cancel(b.id).state == "cancelled" and queue.position(c.id) == 1  # a queued job just leaves the queue
        time.sleep(0.3)  # let the stand-in install its trap
        started = time.monotonic()
        assert queue.cancel(a.id).state == "cancelled"
        assert time.monotonic() - started < jobs.CANCEL_GRACE + 1.0
        queue.wait(c.id, timeout=0.5)
        assert queue.position(c.id) == 0  # the next one runs
        assert queue.resume(b.id).state == "queued" and queue.position(b.id) == 1
    finally:
        queue.close()
    assert (root / "order").read_text().count("started") == 2
    # a restarted server lists the jobs again; those that were queued or running are interrupted, resumable
    again = jobs.JobQueue(root, python=_fake_python(tmp_path, "exit 0"))
    try:
        states = {j.id: j.state for j in again.jobs.values()}
        assert states == {a.id: "cancelled", b.id: "interrupted", c.id: "interrupted"}
        assert again.wait(again.resume(c.id).id, timeout=10).state == "done"
    finally:
        again.close()


def test_submit_refuses_bad_uploads_and_keeps_nothing_of_them(tmp_path, clips, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    video, depth_zip = clips["short"]
    root = tmp_path / "jobs"
    root.mkdir()
    queue = jobs.JobQueue(root, python=_fake_python(tmp_path, "exit 0"))
    try:
        (root / "notes.mp4").write_text("not a video at all")
        (root / "cut.mp4").write_bytes(video.read_bytes()[: video.stat().st_size // 2])
        (root / "notes.txt").write_text("hello")
        shutil.copy(video, root / "clip.mp4")
        shutil.copy(depth_zip, root / "depth.zip")
        cases = [
            (dict(upload=root / "notes.mp4"), "notes.mp4: cannot read as a video"),
            (dict(upload=root / "cut.mp4"), "cut.mp4:"),
            (dict(upload=root / "notes.txt"), "notes.txt: not a video or a zip of frames"),
            (dict(upload=root / "clip.mp4", flags=["--start-frame", "50"]), "--start-frame 50: the clip has 8 frames"),
            (dict(upload=root / "clip.mp4", flags=["--num-views", "1"]), "--num-views 1"),
            (dict(upload=video), "upload: not a file uploaded to this server"),  # outside the jobs folder
            (dict(upload=root / "clip.mp4", depth_zip=video), "depth maps: not a file uploaded"),
            (dict(), "give a video"),
            (dict(upload=root / "clip.mp4", depth_zip=None, flags=["--depth-model", "nobody/no-such-depth"]),
             "depth model nobody/no-such-depth: not on this server (not in the Hugging Face cache)"),
        ]
        for kwargs, message in cases:
            flags = kwargs.pop("flags", [])
            if "upload" in kwargs:
                kwargs.setdefault("depth_zip", root / "depth.zip")
            with pytest.raises(InputError) as e:
                queue.submit(flags, max_upload_bytes=2**20, **kwargs)
            assert message in str(e.value), (kwargs, str(e.value))
            assert str(root) not in str(e.value)  # names as the user gave them, not server paths
        assert queue.jobs == {} and not [p for p in root.iterdir() if jobs.JOB_ID.match(p.name)]
        job = queue.submit(["--num-frames", "4"], upload=root / "clip.mp4", depth_zip=root / "depth.zip", max_upload_bytes=2**20)
        assert job.depth == "depth" and len(io.list_depths(job.folder / "depth")) == 8
        assert job.command()[-2:] == ["--depth-from", str(job.folder / "depth")]
    finally:
        queue.close()


def test_depth_models_are_the_servers_folders_and_the_known_ids_and_jobs_use_them(tmp_path, clips, monkeypatch):
    from svg3d import models
    from svg3d.tiny_models import save_tiny_depth_anything

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tiny = save_tiny_depth_anything(tmp_path / "models" / "tiny").resolve()
    io.write_text(tmp_path / "models" / "text" / "config.json", json.dumps({"architectures": ["CLIPTextModel"]}))
    found = jobs.depth_models([tmp_path / "models"])
    folders = [c for c in found if c.name.startswith(str(tmp_path))]
    assert [(c.name, c.label, c.missing) for c in folders] == [(str(tiny), "tiny (folder on the server)", None)]  # not "text"
    known = {n for n, info in models.KNOWN_MODELS.items() if info.kind == "depth"}
    assert known <= {c.name for c in found}
    for c in found:  # the hub's, each with its availability here (in the cache or not: this machine's)
        assert c.missing == models.missing_reason(c.name) and ("not on this server" in c.label) == (c.missing is not None)
    assert [c.missing is None for c in found] == sorted((c.missing is None for c in found), reverse=True)  # usable first
    jobs.check_depth_model(str(tiny))
    with pytest.raises(InputError, match=r"depth model nobody/none: not on this server \(not in the Hugging Face cache\)"):
        jobs.check_depth_model("nobody/none")
    # a job with the server's model gets it as --depth-model; nothing of a refused one is kept
    root = tmp_path / "jobs"
    root.mkdir()
    shutil.copy(clips["short"][0], root / "clip.mp4")
    shutil.copy(clips["short"][1], root / "depth.zip")
    queue = jobs.JobQueue(root, python=_fake_python(tmp_path, "exit 0"))
    try:
        job = queue.submit([], upload=root / "clip.mp4", depth_model=str(tiny), max_upload_bytes=2**20)
        assert job.command()[-2:] == ["--depth-model", str(tiny)] and jobs.Job.load(job.folder).depth_model == str(tiny)
        for kwargs, message in ((dict(flags=["--depth-model", "a/b"]), "chosen twice"), (dict(depth_zip=root / "depth.zip"), "both given")):
            with pytest.raises(InputError, match=message):
                queue.submit(kwargs.pop("flags", []), upload=root / "clip.mp4", depth_model=str(tiny), max_upload_bytes=2**20, **kwargs)
        assert list(queue.jobs) == [job.id]
    finally:
        queue.close()


# --------------------------------------------------------------------------------------------------
# the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m svg3d ui`` in a subprocess; ``url``; ``stop()`` sends SIGTERM as a user's ``kill`` would."""

    def __init__(self, jobs_dir: Path, *extra: str, wrapper: tuple[str, ...] = (), host: str = "127.0.0.1") -> None:
        self.jobs_dir, self.port = jobs_dir, _free_port()
        self.url = f"http://{host}:{self.port}/"
        self.log = jobs_dir.parent / f"server-{self.port}.log"
        # offline, with an empty Hugging Face cache: the hub's depth models are missing, the tiny one of --models-dir is here
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False",
               "HF_HUB_OFFLINE": "1", "HF_HOME": str(jobs_dir.parent / "hf")}  # fmt: skip
        argv = [*wrapper, sys.executable, "-m", "svg3d", "ui", "--jobs-dir", str(jobs_dir), "--port", str(self.port),
                "--max-upload-mb", str(LIMIT_MB), *extra]  # fmt: skip
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 90) -> Server:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the UI server exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"the UI server did not answer in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


TINY_DEPTH = "tiny-depth"  # the folder name of the server's tiny depth model, which the page shows


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from svg3d.tiny_models import save_tiny_depth_anything

    root = tmp_path_factory.mktemp("ui")
    save_tiny_depth_anything(root / "models" / TINY_DEPTH)
    s = Server(root / "jobs", "--models-dir", str(root / "models")).wait_ready()
    yield s
    s.stop()


def _client(server, tmp_path):
    from gradio_client import Client

    return Client(server.url, verbose=False, download_files=str(tmp_path / "downloads"))


def _zip_names(path: str) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()


@pytest.fixture(scope="module")
def demo_job(server, tmp_path_factory):
    """The demo clip converted through the API into every export: (job id, status, downloaded files)."""
    client = _client(server, tmp_path_factory.mktemp("api"))
    job_id, message = client.predict(None, None, True, f"--num-frames 6 --num-views 4 --exports all {FAST}", api_name="/submit")
    assert jobs.JOB_ID.match(job_id), message
    status, files = client.predict(job_id, api_name="/wait")
    return job_id, status, files


def test_api_converts_the_demo_clip_into_every_export(server, demo_job):
    job_id, status, files = demo_job
    assert status["state"] == "done", status
    assert set(status["exports"]) == set(EXPORTS) | {"preview", "report", "report_json"}  # the 3D report (svg3d.report) beside them
    assert [s["stage"] for s in status["stages"]] == ["depth", "stabilised", "filled", "export"]
    assert all(s["done"] == s["total"] == 6 for s in status["stages"])
    got = {Path(f).name: Path(f) for f in files}
    served = server.jobs_dir / job_id / "out"
    h, w = jobs.DEMO_SIZE
    sizes = {"_SBS_LR": (2 * w, h), "_HSBS_LR": (w, h), "_FTB": (w, 2 * h), "_HTB": (w, h), "_cross_RL": (2 * w, h),
             "_anaglyph": (w, h), "_left": (w, h), "_right": (w, h), "_RGBD": (2 * w, h), "_depth": (w, h)}  # fmt: skip
    for name in status["exports"].values():
        if (served / name).is_dir():
            name += ".zip"
            members = _zip_names(got[name])
            assert members and all(m.endswith(".png") for m in members)
        original = served / name if (served / name).is_file() else server.jobs_dir / job_id / "downloads" / name
        assert got[name].stat().st_size > 0 and got[name].read_bytes() == original.read_bytes(), name
        if name.endswith(".mp4"):
            p = probe(got[name])
            assert p.frames == 6, name
            suffix = name[len("demo"):-len(".mp4")]
            if suffix in sizes:
                assert (p.width, p.height) == sizes[suffix], name
    views = _zip_names(got["demo_views.zip"])
    assert sorted({m.split("/")[1] for m in views}) == [f"view_{v:03d}" for v in range(4)] and len(views) == 4 * 6
    assert len(_zip_names(got["demo_depth16.zip"])) == 6 and len(_zip_names(got["demo_eyes.zip"])) == 2 * 6
    assert "export     done" in got["convert.log"].read_text()
    # the files came through Gradio's cache, inside the jobs folder
    assert list((server.jobs_dir / ui.CACHE_DIR).rglob("demo_SBS_LR.mp4"))


def test_api_refuses_what_the_cli_refuses_with_its_message(server, clips, tmp_path):
    from gradio_client import handle_file

    client = _client(server, tmp_path)
    before = sorted(p.name for p in server.jobs_dir.iterdir())
    (tmp_path / "fake.mp4").write_text("this is text, not a video")
    depth_zip = clips["short"][1]
    cases = [
        ((None, None, True, "--strength 3 --baseline 0.1"), "--strength and --baseline both set the 3D effect"),
        ((None, None, True, "--work-dir /etc"), "--work-dir: set by the web UI"),
        ((None, None, True, "--depth-model /etc"), "give a hub id"),
        ((None, None, True, "--prompt 'unclosed"), "flags: No closing quotation"),
        ((handle_file(str(tmp_path / "fake.mp4")), handle_file(str(depth_zip)), False, FAST), "fake.mp4: cannot read as a video"),
        ((None, None, False, FAST), "give a video"),
        # no depth maps: the model must be on this server, which is offline with an empty cache
        ((handle_file(str(tmp_path / "fake.mp4")), None, False, FAST),
         "depth model depth-anything/Depth-Anything-V2-Small-hf: not on this server (not in the Hugging Face cache)"),
        ((None, None, True, "--depth-model depth-anything/Depth-Anything-V2-Base-hf"), "Base-hf: not on this server"),
    ]
    for args, expected in cases:
        job_id, message = client.predict(*args, api_name="/submit")
        assert job_id == "" and expected in message, (args, message)
        assert "Traceback" not in message and str(server.jobs_dir) not in message
    assert sorted(p.name for p in server.jobs_dir.iterdir() if p.name != ui.CACHE_DIR) == [n for n in before if n != ui.CACHE_DIR]
    assert client.predict("../../etc", api_name="/status") == {"error": "'../../etc': no such job"}


def test_file_routes_serve_nothing_outside_gradios_cache(server, demo_job):
    import httpx

    job_id, status, _ = demo_job
    assert status["state"] == "done", status
    job = server.jobs_dir / job_id
    # a positive control: the file the API handed out is served, from the cache
    sbs = (job / "out" / "demo_SBS_LR.mp4").read_bytes()
    cached = next(p for p in (server.jobs_dir / ui.CACHE_DIR).rglob("demo_SBS_LR.mp4") if p.read_bytes() == sbs)
    ok = httpx.get(f"{server.url}gradio_api/file={cached}")
    assert ok.status_code == 200 and ok.content == sbs
    secret = b"root:"
    escapes = [
        "/etc/passwd", "%2Fetc%2Fpasswd", "%252Fetc%252Fpasswd", "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        f"{cached.parent}/../../../../../../etc/passwd", f"{cached.parent}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"{cached.parent}/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "file:///etc/passwd", "//etc/passwd",
    ]  # fmt: skip
    not_outputs = [  # inside the jobs folder but not in Gradio's cache; the working directory
        str(job / "job.json"), str(job / "out" / "demo_SBS_LR.mp4"), str(job / "out" / "work" / "convert.log"),
        f"{server.jobs_dir / ui.CACHE_DIR}/../{job_id}/job.json", str(ROOT / "README.md"), "README.md", "svg3d/ui.py",
    ]  # fmt: skip
    http = httpx.Client(base_url=server.url, follow_redirects=False)
    for route in ("gradio_api/file=", "gradio_api/file/"):  # the routes that serve files by path
        for target in escapes + not_outputs:
            r = http.get(route + target)
            assert r.status_code in (400, 403, 404) and secret not in r.content, (route, target, r.status_code)
    for route in ("file=", "static/", "assets/", "gradio_api/proxy="):  # Gradio's other routes that take a path
        for target in escapes[:5] + not_outputs[:1]:
            r = http.get(route + target)
            assert r.status_code != 200 or (secret not in r.content and b'"state"' not in r.content), (route, target, r.status_code)
    # ..: also raw, not normalised by the client
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /gradio_api/file=" + str(cached.parent).encode() + b"/../../../../../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b"".join(iter(lambda: s.recv(65536), b""))
    assert raw.split(b" ", 2)[1] in (b"403", b"404") and secret not in raw


def _files_under(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def test_an_oversize_upload_is_refused_before_it_is_stored(server, tmp_path):
    import httpx

    limit = LIMIT_MB * 2**20
    before = _files_under(server.jobs_dir)
    big = os.urandom(limit + 1)
    # with its length stated: refused before the body is read
    r = httpx.post(f"{server.url}gradio_api/upload", files={"files": ("big.mp4", big, "video/mp4")})
    assert r.status_code == 413 and "maximum allowed size" in r.text
    # streamed without a length (chunked): Gradio's parser stops at the limit and deletes what it had
    def chunks():
        yield b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.mp4\"\r\nContent-Type: video/mp4\r\n\r\n"
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]
        yield b"\r\n--b--\r\n"

    r = httpx.post(f"{server.url}gradio_api/upload", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413, r.text
    time.sleep(0.5)
    after = _files_under(server.jobs_dir)
    new = {p: n for p, n in after.items() if p not in before}
    assert not [p for p, n in new.items() if n >= 2**20], new  # no trace of the upload in the jobs folder
    assert not any(p.name == "big.mp4" for p in after)
    # just under the limit is accepted, and lands in Gradio's cache inside the jobs folder
    r = httpx.post(f"{server.url}gradio_api/upload", files={"files": ("ok.mp4", big[: limit - 1], "video/mp4")})
    assert r.status_code == 200, r.text
    (path,) = r.json()
    assert jobs.inside(path, server.jobs_dir / ui.CACHE_DIR) and Path(path).stat().st_size == limit - 1


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (/proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]) if len(address) == 8 else f"ipv6:{address}")
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="needs Linux /proc/net/tcp")
def test_the_server_listens_on_loopback_only(server):
    assert _listening_addresses(server.port) == {"127.0.0.1"}


NAMESPACE_PROBE = r"""
import socket, subprocess, sys, time
import httpx
port = int(sys.argv[1])
subprocess.run("ip link set lo up && ip link add v0 type veth peer name v1 && ip addr add 10.231.0.1/24 dev v0 "
               "&& ip link set v0 up && ip link set v1 up", shell=True, check=True)
server = subprocess.Popen(sys.argv[2:])
try:
    deadline = time.monotonic() + 90
    while True:
        try:
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline and server.poll() is None, "no server"
            time.sleep(0.3)
    try:
        socket.create_connection(("10.231.0.1", port), timeout=2).close()
        print("OTHER-INTERFACE: reached")
    except OSError as e:
        print(f"OTHER-INTERFACE: refused ({e})")
    control = socket.create_server(("0.0.0.0", 0))  # the same address reaches a socket bound to every interface
    socket.create_connection(("10.231.0.1", control.getsockname()[1]), timeout=2).close()
    print("CONTROL: reached")
finally:
    server.terminate()
    server.wait(15)
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"),
                    reason="needs root, unshare and ip to make a network namespace with a second interface")  # fmt: skip
def test_the_server_is_not_reachable_on_another_interface(tmp_path):
    """In a network namespace of its own (nothing leaves it) with a veth interface at 10.231.0.1: the server's
    default binding refuses a connection there, while a socket bound to every interface is reached."""
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -n is not permitted here")
    port = _free_port()
    (tmp_path / "probe.py").write_text(NAMESPACE_PROBE)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False"}
    server = [sys.executable, "-m", "svg3d", "ui", "--jobs-dir", str(tmp_path / "jobs"), "--port", str(port)]
    done = subprocess.run(["unshare", "-n", sys.executable, str(tmp_path / "probe.py"), str(port), *server], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=150)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "OTHER-INTERFACE: refused" in done.stdout and "CONTROL: reached" in done.stdout, done.stdout


# --------------------------------------------------------------------------------------------------
# a real browser


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run and run.sh install it as root)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _page(browser, server):
    page = browser.new_page(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(60_000)
    page.goto(server.url)
    page.wait_for_selector("#svg3d-start")
    return page


def _upload(page, elem_id: str, path: Path) -> None:
    """Choose ``path`` in a file control and wait until Gradio lists it. A file chosen while the page is still
    wiring its components up can be dropped (seen under load): choose it again then."""
    for attempt in range(3):
        page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))
        try:
            page.locator(f"#{elem_id} td.filename[aria-label='{path.name}']").wait_for(timeout=20_000)
            return
        except Exception:
            page.screenshot(path=str(path.parent / f"upload-miss-{elem_id}-{attempt}.png"))
    raise AssertionError(f"{path.name} never showed as uploaded in #{elem_id}")


def _open_group(page, title: str) -> None:
    slug = "".join(ch for ch in title if ch.isalnum() or ch == "_")
    page.locator(f"#svg3d-group-{slug} > button.label-wrap").click()


def _field(page, dest: str):
    """The text field of a flag's control (a number input, a slider's number box, or the text box of a flag unset
    by default)."""
    return page.locator(f"#svg3d-flag-{dest} input:not([type=range]), #svg3d-flag-{dest} textarea").first


def _choose(page, elem_id: str, option: str) -> None:
    """Pick ``option`` (its label) in a dropdown."""
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option, exact=True).click()


def _wait_state(page, state: str, timeout: float = 90) -> None:
    page.locator("#svg3d-status").get_by_text(state, exact=True).wait_for(timeout=timeout * 1000)


def _enabled(page, elem_id: str) -> bool:
    return page.locator(f"#{elem_id}").is_enabled()


def _buttons(page) -> tuple[bool, bool, bool]:
    """(Cancel, Resume, Download) enabled."""
    return _enabled(page, "svg3d-cancel"), _enabled(page, "svg3d-resume"), _enabled(page, "svg3d-download")


def _wait_buttons(page, want: tuple[bool, bool, bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while _buttons(page) != want:
        assert time.monotonic() < deadline, f"buttons {_buttons(page)}, expected {want}"
        time.sleep(0.2)


def _screenshot(page, tmp_path: Path, name: str) -> Path:
    """A screenshot of the page; with ``SVG3D_UI_SCREENSHOT=1`` also ``docs/<name>`` in 256 colours (a third of the size)."""
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000
    if os.environ.get("SVG3D_UI_SCREENSHOT") == "1":
        from PIL import Image

        Image.open(shot).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(ROOT / "docs" / name, optimize=True)
    return shot


def _scroll_to(page, elem_id: str) -> None:
    """Scroll so that the element is at the top of the window (the screenshots' framing)."""
    page.evaluate(f"() => document.querySelector('#{elem_id}').scrollIntoView({{block: 'start'}})")


def _preview_message(page, *parts: str, timeout: float = 60) -> str:
    """Wait until the preview's line holds every one of ``parts``; return it."""
    where = page.locator("#svg3d-preview-message")
    deadline = time.monotonic() + timeout
    while not all(p in (text := where.inner_text()) for p in parts):
        assert time.monotonic() < deadline, f"the preview says {text!r}, not {parts}"
        time.sleep(0.1)
    return text


def _img_src(page, elem_id: str) -> str:
    return page.evaluate(f"() => {{ const i = document.querySelector('#{elem_id} img'); return i ? i.src : ''; }}")


def test_browser_preview_follows_the_settings_and_keeps_the_frames_depth(browser, server, clips, tmp_path):
    """The preview of a chosen frame with the server's tiny depth model: the depth of a frame is computed once,
    then every setting re-warps only; anaglyph, side by side, wiggle and depth show; a refused source says why."""
    import httpx
    from PIL import Image

    video, depth_zip = clips["short"]
    page = _page(browser, server)
    # the server's models: the tiny one (usable, chosen) first, the hub's (offline, empty cache) marked missing
    assert page.locator("#svg3d-depth-source input").first.input_value() == f"{TINY_DEPTH} (folder on the server)"
    # the 3D controls come first, open, with plain labels; the flag is in the info line
    order = page.eval_on_selector_all("[id^=svg3d-group-]", "els => els.map(e => e.id)")
    assert order[:2] == ["svg3d-group-3Deffect", "svg3d-group-Cliptrimandresize"]
    assert page.locator("#svg3d-flag-strength").get_by_text("3D strength (% of the picture width)").is_visible()
    assert page.locator("#svg3d-flag-strength").get_by_text("--strength", exact=False).is_visible()
    assert not page.locator("#svg3d-flag-start_frame").is_visible()  # clip trimming: folded, after
    _upload(page, "svg3d-upload", video)
    first = _preview_message(page, "frame 0:", "depth computed")
    assert "classical fill" in first
    anaglyph = _img_src(page, "svg3d-preview-anaglyph")
    assert anaglyph
    # the strength slider: a new warp of the same depth
    _field(page, "strength").fill("6")
    _field(page, "strength").press("Enter")
    stronger = _preview_message(page, "frame 0:", "depth kept from before")
    page.wait_for_function(f"() => document.querySelector('#svg3d-preview-anaglyph img').src !== {json.dumps(anaglyph)}")
    share = lambda text: float(text.split("; ")[1].split("%")[0])  # noqa: E731 (the line's "x.y% of the other eye")
    assert share(stronger) > share(first)
    # the filler: telea previews as itself
    _choose(page, "svg3d-flag-fill", "telea")
    _preview_message(page, "telea fill", "depth kept from before")
    page.locator("#svg3d-tab-sbs-button").click()
    page.wait_for_function("() => { const i = document.querySelector('#svg3d-preview-sbs img'); return i && i.naturalWidth === 2 * 224; }")
    page.locator("#svg3d-tab-wiggle-button").click()
    page.wait_for_function("() => { const i = document.querySelector('#svg3d-preview-wiggle img'); return i && i.naturalWidth === 224; }")
    gif = tmp_path / "wiggle.gif"
    gif.write_bytes(httpx.get(_img_src(page, "svg3d-preview-wiggle")).content)
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 2
    _screenshot(page, tmp_path, "ui-preview.png")
    # another frame: its depth is computed, once
    frame_box = page.locator("#svg3d-preview-frame input[type=number]")
    frame_box.fill("5")
    frame_box.press("Enter")
    _preview_message(page, "frame 5:", "depth computed")
    # the depth source: the user's maps (no zip yet: said so), then with them
    _choose(page, "svg3d-depth-source", "My depth maps (a zip I upload)")
    _preview_message(page, "upload the depth maps")
    _upload(page, "svg3d-depth", depth_zip)
    _preview_message(page, "frame 5:", "depth computed")
    page.locator("#svg3d-tab-depth-button").click()
    page.wait_for_function("() => { const i = document.querySelector('#svg3d-preview-depth img'); return i && i.naturalWidth === 224; }")
    page.close()


def test_browser_refuses_a_missing_depth_model_before_queueing(browser, server, clips, tmp_path):
    video, _ = clips["short"]
    page = _page(browser, server)
    before = sorted(p.name for p in server.jobs_dir.iterdir())
    _upload(page, "svg3d-upload", video)
    missing = "depth-anything/Depth-Anything-V2-Small-hf"
    _choose(page, "svg3d-depth-source", f"{missing} (not on this server)")
    page.locator("#svg3d-depth-note").get_by_text(f"⚠ depth model {missing}: not on this server").wait_for()  # said at once
    _preview_message(page, f"depth model {missing}: not on this server")
    _scroll_to(page, "svg3d-source")
    _screenshot(page, tmp_path, "ui-missing-model.png")
    page.locator("#svg3d-start").click()
    refusal = page.locator("#svg3d-message").get_by_text(f"⚠ depth model {missing}: not on this server (not in the Hugging Face cache)")
    refusal.wait_for()
    assert "upload depth maps" in refusal.inner_text()
    assert sorted(p.name for p in server.jobs_dir.iterdir()) == before  # nothing queued, nothing kept
    assert _buttons(page) == (False, False, False)
    page.close()


def test_browser_upload_convert_play_and_download(browser, server, clips, tmp_path):
    import httpx

    video, depth_zip = clips["short"]
    page = _page(browser, server)
    assert _buttons(page) == (False, False, False)  # no job: nothing to cancel, resume or download
    _upload(page, "svg3d-upload", video)
    _choose(page, "svg3d-depth-source", "My depth maps (a zip I upload)")
    _upload(page, "svg3d-depth", depth_zip)
    # an invalid combination shows the CLI's message in the section of its flag, and the flags follow the controls
    _open_group(page, ui.SECTIONS["3D effect"])
    _field(page, "strength").fill("3")
    _field(page, "strength").press("Enter")
    _field(page, "baseline").fill("0.1")
    page.locator("#svg3d-error-3Deffect").get_by_text("--strength and --baseline both set the 3D effect").wait_for()
    _field(page, "baseline").fill("")
    _field(page, "strength").fill("2.5")
    _field(page, "strength").press("Enter")
    _open_group(page, ui.SECTIONS["depth"])
    _choose(page, "svg3d-flag-flow", "dis")
    _open_group(page, ui.SECTIONS["views"])
    _field(page, "num_views").fill("3")
    _open_group(page, ui.SECTIONS["outputs"])
    page.locator("#svg3d-flag-exports").get_by_text("views_png", exact=True).click()
    want = "--flow dis --num-views 3 --exports sbs,hsbs,anaglyph,views_png"  # the flags follow the controls
    page.wait_for_function(f"() => document.querySelector('#svg3d-command textarea').value === {json.dumps(want)}")
    # no error under the 3D controls (waited for: while its check runs, Gradio shows a timer such as "0.1s" there)
    page.wait_for_function("() => document.querySelector('#svg3d-error-3Deffect').innerText.trim() === ''")
    page.locator("#svg3d-start").click()
    _wait_state(page, "done")
    progress = page.locator("#svg3d-progress .svg3d-stage")
    assert progress.count() == 4
    for i in range(4):
        stage = progress.nth(i)
        assert stage.get_attribute("data-done") == stage.get_attribute("data-total") == "8"
    overall = page.locator("#svg3d-progress .svg3d-overall")
    assert (overall.get_attribute("data-stage"), overall.get_attribute("data-stages")) == ("4", "4")
    assert overall.get_attribute("data-done") == overall.get_attribute("data-total") == "32" and "done" in overall.inner_text()
    _wait_buttons(page, (False, False, True))  # done: only Download applies
    player = page.locator("#svg3d-video video")
    player.wait_for()
    page.wait_for_function("() => { const v = document.querySelector('#svg3d-video video'); return v && v.readyState >= 2; }")
    size = page.evaluate("() => { const v = document.querySelector('#svg3d-video video'); return [v.videoWidth, v.videoHeight]; }")
    assert size == [2 * 224, 128]  # the SBS export
    page.evaluate("() => { const v = document.querySelector('#svg3d-video video'); v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.querySelector('#svg3d-video video').currentTime > 0.2", timeout=20_000)
    for preview in ("#svg3d-anaglyph img", "#svg3d-depth-preview img"):
        page.locator(preview).scroll_into_view_if_needed()
        page.wait_for_function(f"() => document.querySelector('{preview}').naturalWidth === 224")  # the input's width
    page.locator("#svg3d-report img").scroll_into_view_if_needed()  # the 3D report is shown on the page
    page.wait_for_function("() => document.querySelector('#svg3d-report img').naturalWidth > 500")
    # the slider walks the views: view 0 is the input itself, the others are warped and filled
    view_src = "() => document.querySelector('#svg3d-view-image img').src"
    page.locator("#svg3d-view-image img").wait_for()
    first = page.evaluate(view_src)
    slider = page.locator("#svg3d-view input[type=range]")
    assert slider.get_attribute("max") == "2"
    slider.fill("2")
    page.wait_for_function(f"() => ({view_src})() !== {json.dumps(first)}")
    job_id = page.locator("#svg3d-status code").first.inner_text()
    views = server.jobs_dir / job_id / "out" / "clip_views"
    assert httpx.get(first).content == (views / "view_000" / "000000.png").read_bytes()
    assert httpx.get(page.evaluate(view_src)).content == (views / "view_002" / "000000.png").read_bytes()
    _scroll_to(page, "svg3d-job")
    _screenshot(page, tmp_path, "ui.png")
    with page.expect_download() as download:
        page.locator("#svg3d-download").click()
    saved = tmp_path / "downloaded.mp4"
    download.value.save_as(saved)
    assert saved.read_bytes() == (server.jobs_dir / job_id / "out" / "clip_SBS_LR.mp4").read_bytes()
    p = probe(saved)
    assert (p.frames, p.width, p.height) == (8, 2 * 224, 128)
    names = page.eval_on_selector_all("#svg3d-downloads a[download]", "links => links.map(a => a.download)")
    assert sorted(names) == ["clip_3d_report.json", "clip_3d_report.png", "clip_HSBS_LR.mp4", "clip_SBS_LR.mp4", "clip_anaglyph.mp4",
                             "clip_preview.png", "clip_views.zip", "convert.log"]  # fmt: skip
    page.close()


def test_browser_cancel_keeps_chunks_and_resume_continues(browser, server, clips, tmp_path):
    video, depth_zip = clips["long"]
    page = _page(browser, server)
    _upload(page, "svg3d-upload", video)
    _choose(page, "svg3d-depth-source", "My depth maps (a zip I upload)")
    _upload(page, "svg3d-depth", depth_zip)
    _open_group(page, ui.SECTIONS["run"])
    _field(page, "chunk_frames").fill("2")
    _open_group(page, ui.SECTIONS["views"])
    _field(page, "num_views").fill("4")
    _field(page, "num_views").press("Tab")
    page.wait_for_function("() => document.querySelector('#svg3d-command textarea, #svg3d-command input').value.includes('--chunk-frames 2')")
    page.locator("#svg3d-start").click()
    _wait_state(page, "running")
    _wait_buttons(page, (True, False, False))  # running: only Cancel applies
    job_id = page.locator("#svg3d-status code").first.inner_text()
    job = server.jobs_dir / job_id
    # wait until the fill stage has committed a chunk or two, then cancel
    page.wait_for_selector(".svg3d-stage[data-stage=filled]:not([data-done='0'])", timeout=90_000)
    overall = page.locator("#svg3d-progress .svg3d-overall")
    assert overall.get_attribute("data-stage") == "3" and overall.get_attribute("data-stages") == "4"
    assert "ETA" in overall.inner_text()
    _scroll_to(page, "svg3d-job")
    _screenshot(page, tmp_path, "ui-progress.png")
    record = stage_folder(job / "out" / "work", "filled").with_suffix(".json")
    assert json.loads(record.read_text())["chunks"]
    page.locator("#svg3d-cancel").click()
    started = time.monotonic()
    _wait_state(page, "cancelled", timeout=10)
    assert time.monotonic() - started < 4.0  # the kill itself: <= CANCEL_GRACE; the rest is the page's polling
    _wait_buttons(page, (False, True, False))  # cancelled: only Resume applies
    kept = json.loads(record.read_text())["chunks"]
    assert kept and not json.loads(record.read_text())["complete"]
    assert sum(c["count"] for c in kept) < LONG_FRAMES
    page.locator("#svg3d-resume").click()
    _wait_state(page, "done", timeout=120)
    log_text = (job / "out" / "work" / "convert.log").read_text()
    assert "filled     resumed at frame" in log_text
    assert json.loads(record.read_text())["complete"]
    assert probe(job / "out" / "clip_SBS_LR.mp4").frames == LONG_FRAMES
    page.close()


def test_browser_bad_uploads_give_a_message_on_the_page(browser, server, tmp_path):
    page = _page(browser, server)
    before = _files_under(server.jobs_dir)
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(LIMIT_MB * 2**20 + 1))
    page.locator("#svg3d-upload input[type=file]").set_input_files(str(big))
    page.get_by_text(f'exceed the maximum allowed size of {LIMIT_MB:.1f} Mb: "big.mp4"').wait_for()  # refused in the page
    fake = tmp_path / "holiday.mp4"
    fake.write_text("not a video")
    _upload(page, "svg3d-upload", fake)
    page.locator("#svg3d-start").click()
    page.locator("#svg3d-message").get_by_text("⚠ holiday.mp4: cannot read as a video").wait_for()
    after = _files_under(server.jobs_dir)
    assert not [p for p in after if p not in before and p.stat().st_size > 2**20]  # the big one never arrived
    assert not [p for p in after if p not in before and jobs.JOB_ID.match(p.relative_to(server.jobs_dir).parts[0])]
    page.close()
