"""End to end: ``python -m svg3d convert`` on tiny clips, resume after interruption, bad input, the demo."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from svg3d import __main__ as cli
from svg3d import export, io, pipeline
from svg3d.checks import InputError
from svg3d.demo import run_demo
from svg3d.pipeline import ConvertConfig
from tests.media import audio_seconds, pcm_video, probe, rendered_clip

STAGES = ("depth", "stabilised", "frame_matrix", "filled", "export")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 6-frame 96x64 rendered clip at 8 fps with audio, and its exact inverse depth."""
    folder = tmp_path_factory.mktemp("clip")
    video, depth, frames = rendered_clip(folder, frames=6)
    return video, depth, frames


def base_config(depth: Path, **kw) -> ConvertConfig:
    return ConvertConfig(depth_from=depth, metric_depth=True, flow="dis", fill="classical", **kw)


def digest_tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def decoded(path: Path) -> np.ndarray:
    return io.read_clip(path).frames


def test_convert_writes_every_export_with_size_frames_fps_and_audio(clip, tmp_path):
    video, depth, frames = clip
    t, h, w, _ = frames.shape
    # the exports this pipeline can hand whole-clip arrays to (ExportWriter's folders and quilts come with the streamed stages)
    names = ("sbs", "hsbs", "tb", "htb", "anaglyph", "left", "right", "grid", "depth")
    result = pipeline.convert(video, tmp_path / "out", base_config(depth, exports=names))
    assert result.fill == "classical"
    assert [s.name for s in result.stages] == list(STAGES) and all(s.ran for s in result.stages)
    cols, rows, ch, cw = export.grid_layout(8, h, w)  # 8 views, no empty cell
    sizes = {"sbs": (2 * w, h), "hsbs": (w, h), "tb": (w, 2 * h), "htb": (w, h), "anaglyph": (w, h), "left": (w, h), "right": (w, h), "grid": (cols * cw, rows * ch), "depth": (w, h)}
    audio = audio_seconds(video)
    assert audio is not None and audio > 0.5
    for name, size in sizes.items():
        p = probe(result.exports[name])
        assert (p.width, p.height) == size, name
        assert p.frames == t and p.fps == pytest.approx(8.0), (name, p)
        assert p.audio_seconds == pytest.approx(audio, abs=1e-3), name
    assert io.read_image(result.exports["preview"]).shape == (h, 2 * w, 3)
    # the grid needs every view: 8 views filled; every stage has a manifest listing its outputs
    assert len(list((result.work_dir / "filled").glob("view*_*.png"))) == 8 * t
    for stage in STAGES:
        manifest = json.loads((result.work_dir / f"{stage}.json").read_text())
        assert manifest["outputs"] and all(Path(o["path"]).is_file() for o in manifest["outputs"].values())


def test_left_eye_is_the_input_and_right_eye_differs(clip, tmp_path):
    video, depth, _ = clip
    result = pipeline.convert(video, tmp_path / "out", base_config(depth, exports=("left",)))
    filled = result.work_dir / "filled"
    src = decoded(video)
    left = io.read_frames(sorted(filled.glob("view000_*.png")))
    right = io.read_frames(sorted(filled.glob("view001_*.png")))
    assert np.array_equal(left, src)  # the reference view is the input, bit for bit
    assert np.abs(right.astype(int) - src).mean() > 1  # the other eye is a different view


def test_middle_layout_generates_both_eyes(clip, tmp_path):
    video, depth, _ = clip
    result = pipeline.convert(video, tmp_path / "out", base_config(depth, layout="middle2leftright", exports=("sbs",)))
    src = decoded(video).astype(int)
    filled = result.work_dir / "filled"
    left, right = (io.read_frames(sorted(filled.glob(f"view00{v}_*.png"))).astype(int) for v in (0, 2))
    assert np.abs(left - src).mean() > 1 and np.abs(right - src).mean() > 1
    assert not list(filled.glob("view001_*.png"))  # the input view needs no filling
    with pytest.raises(InputError, match="middle2leftright needs at least 3"):
        base_config(depth, layout="middle2leftright", num_views=2)


def test_trimmed_clip_keeps_its_span_of_audio(clip, tmp_path):
    video, depth, _ = clip
    result = pipeline.convert(video, tmp_path / "out", base_config(depth, start_frame=2, num_frames=3, exports=("sbs",)))
    p = probe(result.exports["sbs"])
    assert p.frames == 3
    assert p.audio_seconds == pytest.approx(3 / 8.0, abs=0.05)


def test_pcm_audio_of_a_camera_file_is_kept(clip, tmp_path):
    _, depth, frames = clip
    video = pcm_video(tmp_path / "camera.mkv", frames, 8.0)
    result = pipeline.convert(video, tmp_path / "out", base_config(depth, exports=("sbs",)))
    p = probe(result.exports["sbs"])
    assert p.frames == len(frames) and p.audio_seconds == pytest.approx(audio_seconds(video), abs=0.05)


def test_resume_after_interruption_gives_the_same_outputs(clip, tmp_path):
    video, depth, _ = clip
    config = base_config(depth, exports=("sbs", "anaglyph", "depth"))
    reference = pipeline.convert(video, tmp_path / "a", config)

    def interrupt(record: pipeline.StageRecord) -> None:
        if record.name == "frame_matrix":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline.convert(video, tmp_path / "b", config, on_stage=interrupt)
    work = tmp_path / "b" / "work"
    assert all((work / f"{s}.json").is_file() for s in ("depth", "stabilised", "frame_matrix"))
    assert not (work / "filled.json").exists() and not list((tmp_path / "b").glob("*.mp4"))

    resumed = pipeline.convert(video, tmp_path / "b", config)
    assert {s.name: s.ran for s in resumed.stages} == {"depth": False, "stabilised": False, "frame_matrix": False, "filled": True, "export": True}
    for stage in STAGES[:-1]:
        assert digest_tree(work / stage) == digest_tree(reference.work_dir / stage), stage
    for name in config.exports:
        # Same frames, same encoder settings; libx264 still now and then codes a few macroblocks of one of two
        # encodes in a process differently (seen: the bottom-right 32 x 19 px of the depth export, <= 13 levels).
        diff = np.abs(decoded(resumed.exports[name]).astype(int) - decoded(reference.exports[name]))
        assert diff.max() <= 16 and diff.mean() < 0.5, (name, diff.max(), diff.mean())
    again = pipeline.convert(video, tmp_path / "b", config)
    assert not any(s.ran for s in again.stages)


def test_interruption_inside_a_stage_leaves_no_partial_stage(clip, tmp_path):
    video, depth, _ = clip
    config = base_config(depth, exports=("sbs",))

    def bars(desc: str, total: int):
        def advance(n: int) -> None:
            if desc == "filled":
                raise KeyboardInterrupt  # after the first frames of the view were filled

        return advance, lambda: None

    with pytest.raises(KeyboardInterrupt):
        pipeline.convert(video, tmp_path / "out", config, progress=bars)
    work = tmp_path / "out" / "work"
    assert not (work / "filled").exists() and not (work / "filled.tmp").exists() and not (work / "filled.json").exists()
    resumed = pipeline.convert(video, tmp_path / "out", config)
    assert [s.name for s in resumed.stages if s.ran] == ["filled", "export"]
    # a stage whose output went missing is redone; identical outputs leave what follows up to date
    next((work / "frame_matrix").glob("*_mask.png")).unlink()
    redone = pipeline.convert(video, tmp_path / "out", config)
    assert [s.name for s in redone.stages if s.ran] == ["frame_matrix"]


def test_a_changed_setting_reruns_only_what_depends_on_it(clip, tmp_path):
    video, depth, _ = clip
    config = base_config(depth, exports=("sbs",))
    pipeline.convert(video, tmp_path / "out", config)
    stronger = pipeline.convert(video, tmp_path / "out", replace(config, baseline=0.1))
    assert [s.name for s in stronger.stages if s.ran] == ["frame_matrix", "filled", "export"]
    more = pipeline.convert(video, tmp_path / "out", replace(config, baseline=0.1, exports=("sbs", "tb")))
    assert [s.name for s in more.stages if s.ran] == ["export"]


def test_depth_from_the_model(clip, tmp_path):
    from tests.tiny_depth import save_tiny_depth_anything

    video, _, frames = clip
    model = save_tiny_depth_anything(tmp_path / "depth-model")
    config = ConvertConfig(depth_model=str(model), flow="dis", fill="classical", exports=("sbs",))
    result = pipeline.convert(video, tmp_path / "out", config)
    maps = io.read_depths(result.work_dir / "depth", suffix=".npy")
    assert maps.shape == frames.shape[:3] and np.isfinite(maps).all()
    assert probe(result.exports["sbs"]).frames == len(frames)


def test_missing_depth_model_names_the_convert_flag(clip, tmp_path, capsys):
    video, _, _ = clip
    err = run_bad(["convert", str(video), "-o", str(tmp_path / "out"), "--depth-model", str(tmp_path / "no-model")], capsys)
    assert "no-model" in err and "--depth-model" in err and not (tmp_path / "out").exists()  # refused before anything is written
    broken = tmp_path / "not-a-model"
    broken.mkdir()
    err = run_bad(["convert", str(video), "-o", str(tmp_path / "out"), "--depth-model", str(broken), "--quiet"], capsys)
    assert "not-a-model" in err and "give --depth-model a folder" in err


def test_diffusion_with_a_tiny_random_zeroscope(clip, tmp_path, model_dir):
    video, depth, frames = clip
    t, h, w, _ = frames.shape
    config = replace(base_config(depth), fill="diffusion", video_model=str(model_dir), steps=2, num_views=3, exports=("sbs", "htb", "grid"))
    result = pipeline.convert(video, tmp_path / "out", config)
    assert result.fill == "diffusion"
    for name, size in {"sbs": (2 * w, h), "htb": (w, h), "grid": (2 * w, 2 * h)}.items():
        p = probe(result.exports[name])
        assert (p.width, p.height) == size and p.frames == t and p.fps == pytest.approx(8.0), (name, p)
        assert p.audio_seconds == pytest.approx(audio_seconds(video), abs=1e-3)


def test_auto_fill_falls_back_to_classical_in_one_line(tmp_path, caplog):
    import torch

    with caplog.at_level(logging.INFO, logger="svg3d"):
        assert pipeline.resolve_fill(ConvertConfig(fill="auto"), torch.device("cpu")) == "classical"
    lines = [r.getMessage() for r in caplog.records if "fill:" in r.getMessage()]
    assert len(lines) == 1 and "no CUDA device" in lines[0]
    assert "no such folder" in pipeline.video_model_missing(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    assert "no unet/" in pipeline.video_model_missing(str(tmp_path / "empty"))
    (tmp_path / "empty" / "unet").mkdir()
    assert pipeline.video_model_missing(str(tmp_path / "empty")) is None
    # with CUDA (a device object is enough: nothing runs) auto takes diffusion when the model is here
    cuda = torch.device("cuda")
    assert pipeline.resolve_fill(ConvertConfig(fill="auto", video_model=str(tmp_path / "empty")), cuda) == "diffusion"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="svg3d"):
        assert pipeline.resolve_fill(ConvertConfig(fill="auto", video_model=str(tmp_path / "nothing")), cuda) == "classical"
    assert "no such folder" in caplog.text


def test_cli_convert(clip, tmp_path, capsys):
    video, depth, _ = clip
    out = tmp_path / "out"
    rc = cli.main(["convert", str(video), "-o", str(out), "--depth-from", str(depth), "--metric-depth", "--flow", "dis",
                   "--fill", "classical", "--exports", "sbs,anaglyph", "--device", "cpu", "--quiet"])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "clip_SBS_LR.mp4" in printed and "clip_anaglyph.mp4" in printed and "clip_preview.png" in printed
    log = (out / "work" / pipeline.LOG_FILE).read_text()
    assert all(f"{stage}" in log for stage in STAGES) and "done:" in log


# --------------------------------------------------------------------------------------------------
# bad input: one line, exit status 2, nothing written, the input untouched


def run_bad(argv: list[str], capsys) -> str:
    rc = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def snapshot(path: Path) -> dict[str, str]:
    return digest_tree(path) if path.is_dir() else {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}


def test_not_a_video(tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    before = snapshot(bad)
    err = run_bad(["convert", str(bad), "-o", str(tmp_path / "out"), "--fill", "classical"], capsys)
    assert "notes.mp4" in err and "cannot read as a video" in err
    assert snapshot(bad) == before and not (tmp_path / "out").exists()


def test_zero_frame_video(tmp_path, capsys, clip):
    import av

    empty = tmp_path / "empty.mp4"
    with av.open(str(empty), "w") as out:  # a container opened for video, closed before any frame
        s = out.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    err = run_bad(["convert", str(empty), "-o", str(tmp_path / "out")], capsys)
    assert "empty.mp4" in err and ("no video stream" in err or "no frames" in err)
    # a real video, but a frame range past its end: no frames either
    video, depth, _ = clip
    err = run_bad(["convert", str(video), "-o", str(tmp_path / "out"), "--start-frame", "99"], capsys)
    assert "no frames" in err
    assert not (tmp_path / "out").exists()


def test_output_inside_the_input_folder(tmp_path, capsys, clip):
    _, _, frames = clip
    folder = tmp_path / "frames"
    for t, f in enumerate(frames):
        io.write_image(folder / f"{t:05d}.png", f)
    before = snapshot(folder)
    for out in (folder / "out", folder):
        err = run_bad(["convert", str(folder), "-o", str(out)], capsys)
        assert "inside the input folder" in err
    err = run_bad(["convert", str(folder), "-o", str(tmp_path / "ok"), "--work-dir", str(folder / "w")], capsys)
    assert "--work-dir" in err
    assert snapshot(folder) == before


def test_inputs_inside_the_work_folder_are_refused(tmp_path, capsys, clip):
    """Reusing a previous run's depth maps from its work folder: the rerun would replace that folder."""
    video, depth, _ = clip
    out = tmp_path / "out"
    pipeline.convert(video, out, base_config(depth, exports=("sbs",)))
    own = out / "work" / "depth"
    before = snapshot(own)
    err = run_bad(["convert", str(video), "-o", str(out), "--depth-from", str(own), "--metric-depth"], capsys)
    assert "inside the work folder" in err and snapshot(own) == before


def test_unwritable_output(tmp_path, capsys, clip):
    import os

    video, depth, _ = clip
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    err = run_bad(["convert", str(video), "-o", str(blocker / "out"), "--depth-from", str(depth), "--metric-depth"], capsys)
    assert "is a file, not a folder" in err
    if os.geteuid() != 0:  # root writes anywhere: the permission case only means something for users
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        err = run_bad(["convert", str(video), "-o", str(locked / "out")], capsys)
        assert "permission denied" in err


def test_a_second_convert_on_a_busy_work_folder_is_refused(tmp_path, capsys, clip):
    video, depth, _ = clip
    out = tmp_path / "out"
    argv = ["convert", str(video), "-o", str(out), "--depth-from", str(depth), "--metric-depth", "--exports", "sbs"]
    work = pipeline.default_work_dir(out)
    with pipeline.work_lock(work):  # as a convert that is still running holds it
        err = run_bad(argv, capsys)
        assert err.startswith(f"error: {work}: another convert is using this work folder")
        assert not any(p.name.endswith(".json") for p in work.iterdir())  # no stage was touched
    assert cli.main(argv) == 0  # released: the folder is usable again
    assert export.output_path(out, "clip", "sbs").is_file()


def test_unknown_export(tmp_path, capsys, clip):
    video, _, _ = clip
    err = run_bad(["convert", str(video), "-o", str(tmp_path / "out"), "--exports", "sbs,hologram"], capsys)
    assert "--exports" in err and "hologram" in err and "anaglyph" in err
    assert not (tmp_path / "out").exists()


def test_bad_flags(tmp_path, capsys, clip):
    video, depth, _ = clip
    out = str(tmp_path / "out")
    assert "--baseline" in run_bad(["convert", str(video), "-o", out, "--baseline", "0"], capsys)
    assert "--width and --height" in run_bad(["convert", str(video), "-o", out, "--width", "64"], capsys)
    assert "--max-unet-frames 0: must be >= 1" in run_bad(["convert", str(video), "-o", out, "--max-unet-frames", "0"], capsys)
    assert "--vae-frames 0: must be >= 1" in run_bad(["convert", str(video), "-o", out, "--vae-frames", "0"], capsys)
    assert "--depth-from and --depth-model" in run_bad(["convert", str(video), "-o", out, "--depth-from", str(depth), "--depth-model", "x"], capsys)


# --------------------------------------------------------------------------------------------------
# the demo


def test_demo_report(tmp_path):
    report_path = run_demo(tmp_path / "demo", size=(64, 112), num_frames=6)
    report = json.loads(report_path.read_text())
    for method in ("classical", "telea_baseline"):
        scores = report[method]
        assert set(scores) == {"psnr_known", "psnr_disoccluded", "ssim_known", "ssim_disoccluded", "flicker_disoccluded"}
        assert all(isinstance(v, float) for v in scores.values()), scores
    assert report["classical"]["psnr_known"] > 20
    assert 0 < report["disoccluded_share"] < 0.2
    for name in ("sbs", "anaglyph", "preview"):
        assert Path(report["exports"][name]).is_file()
    assert probe(report["exports"]["sbs"]).audio_seconds is not None
