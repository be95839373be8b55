"""Camera layouts, depth normalisation, the frame matrix on disk, and create_frame_matrix.py."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import create_frame_matrix
from svg3d import camera, io, scene
from svg3d.checks import InputError
from svg3d.config import MatrixConfig
from svg3d.source import read_clip
from svg3d.stages import matrix


def test_view_layouts():
    assert np.allclose(camera.view_baselines(8, 0.07, "left2right"), np.arange(8) * 0.01)
    assert np.allclose(camera.view_baselines(8, 0.07, "right2left"), -np.arange(8) * 0.01)
    mid = camera.view_baselines(5, 0.08, "middle2leftright")
    assert np.allclose(mid, [-0.04, -0.02, 0, 0.02, 0.04])
    assert camera.reference_view(5, "middle2leftright") == 2 and mid[2] == 0
    assert camera.eye_views(8, "right2left") == (7, 0)
    even = camera.view_baselines(8, 0.07, "middle2leftright")  # the reference's layout, kept
    assert even[4] == 0 and even[0] == -0.035 and even[-1] == 0.035


def test_depth_normalisation_is_clip_wide():
    disp = torch.stack([torch.full((2, 2), 1.0), torch.tensor([[2.0, 3.0], [4.0, 5.0]])])
    z = camera.disparity_to_depth(disp)
    assert z.max().item() == pytest.approx(10.0, rel=1e-4)  # farthest = 1 / (0 + 1/10)
    assert z.min().item() == pytest.approx(1 / 1.1, rel=1e-4)  # nearest = 1 / (1 + 1/10)
    assert torch.allclose(z[0], torch.full((2, 2), 10.0), rtol=1e-4)  # frame 0 is all far: not re-normalised
    assert camera.disparity_to_depth(torch.full((3, 3), 0.5)).allclose(torch.full((3, 3), 10.0), rtol=1e-4)
    metric = camera.disparity_to_depth(torch.tensor([0.5, 0.25]), metric=True)
    assert torch.allclose(metric, torch.tensor([2.0, 4.0]), rtol=1e-4)


def make_matrix(lossless: bool) -> matrix.FrameMatrix:
    s = scene.make_scene(4, num_frames=3, height=24, width=40)
    rgb, z = scene.render(s)
    frames = (rgb.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    config = matrix.MatrixConfig(num_views=3, max_baseline=0.1, lossless=lossless, metric_depth=True)
    return matrix.frame_matrix_from_clip(frames, 1 / z.numpy(), config, frame_names=("a", "b", "c"), fps=10)


@pytest.mark.parametrize("lossless", [True, False])
def test_save_load_round_trip(tmp_path, lossless):
    fm = make_matrix(lossless)
    matrix.save_frame_matrix(fm, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == f"00000_baseline_0.1_000{'.png' if lossless else '.jpg'}"
    assert names[1] == "00000_baseline_0.1_000_mask.png" and "manifest.json" in names
    back = matrix.load_frame_matrix(tmp_path, num_views=3)
    assert back.info == fm.info
    assert torch.equal(back.masks, fm.masks)
    err = (back.images - fm.images).abs()
    if lossless:
        assert err.max() <= 0.5 / 255 + 1e-6  # 8-bit quantisation only
    else:
        assert err.mean() < 0.05  # JPEG
    part = matrix.load_frame_matrix(tmp_path, num_frames=2, start_frame=1)
    assert torch.equal(part.masks, fm.masks[:, 1:]) and part.info.frame_names == ("b", "c")


def test_reference_folder_without_manifest_loads(tmp_path):
    fm = make_matrix(lossless=False)
    matrix.save_frame_matrix(fm, tmp_path)
    (tmp_path / "manifest.json").unlink()
    back = matrix.load_frame_matrix(tmp_path)
    assert (back.info.num_views, back.info.num_frames, back.info.max_baseline) == (3, 3, 0.1)
    assert torch.equal(back.masks, fm.masks)


def test_missing_cell_and_wrong_counts(tmp_path):
    matrix.save_frame_matrix(make_matrix(lossless=True), tmp_path)
    with pytest.raises(InputError, match="holds 3 views, but --num_views is 8"):
        matrix.load_frame_matrix(tmp_path, num_views=8)
    with pytest.raises(InputError, match="holds 3 frames, but frames 0..15"):
        matrix.load_frame_matrix(tmp_path, num_frames=16)
    (tmp_path / "00002_baseline_0.1_001_mask.png").unlink()
    with pytest.raises(InputError, match=r"00002_baseline_0\.1_001_mask\.png: no such image file"):
        matrix.load_frame_matrix(tmp_path)


def test_unreadable_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(InputError, match="manifest.json: unreadable manifest"):
        matrix.load_frame_matrix(tmp_path)


def write_clip(root: Path, frames: int = 4, h: int = 32, w: int = 48, refined: bool = True) -> scene.Scene:
    s = scene.make_scene(6, num_frames=frames, height=h, width=w)
    rgb, z = scene.render(s)
    for t in range(frames):
        io.write_image(root / "images" / f"{t:05d}.png", (rgb[t].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        io.write_depth(root / ("depths_refined" if refined else "depths") / f"{t:05d}_depth.npy", 1 / z[t].numpy())
    return s


def test_cli_seed_command_runs(tmp_path):
    clip = tmp_path / "Videos" / "clip"
    s = write_clip(clip)
    out = tmp_path / "fm"
    argv = [f"--img_path={clip}/", f"--depth_path={clip}/", f"--output_path={out}/", "--num_frames", "4",
            "--width", "48", "--height", "32", "--max_baseline", "0.07", "--num_training_views", "4",
            "--left2right", "--use_metric_depth", "--device", "cpu", "--quiet", "--lossless"]  # fmt: skip
    assert create_frame_matrix.main(argv) == 0
    info = json.loads((out / "manifest.json").read_text())
    assert info["num_views"] == 4 and info["layout"] == "left2right"
    assert info["focal"] == pytest.approx(camera.default_focal(48))
    fm = matrix.load_frame_matrix(out)
    # view 0 is the input itself; the far right view has disocclusions
    truth = torch.from_numpy(read_clip(clip).frames).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(fm.images[0], truth) and fm.masks[0].all()
    assert not fm.masks[3].all()
    assert s.focal == pytest.approx(camera.default_focal(48))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--num_training_views", "1"], "--num_training_views 1: need at least 2"),
        (["--width", "48"], "--width and --height go together"),
        (["--num_frames", "9"], "--num_frames 9: the clip has 4 frames, so from frame 0 at most 4"),
        (["--use_refined_depth", "0"], "has depths_refined/ but no depths/"),
        (["--device", "cuda:7"], "--device cuda:7"),
        (["--max_baseline", "-1"], "--max_baseline -1.0: must be a finite number > 0"),
        (["--max_baseline", "inf"], "--max_baseline inf: must be a finite number > 0"),
        (["--focal", "inf"], "--focal inf: must be a finite number > 0"),
        (["--nearest_depth", "5", "--farest_depth", "1"], "--nearest_depth 5.0 must be smaller than --farest_depth 1.0"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, extra, message):
    clip = tmp_path / "clip"
    write_clip(clip)
    code = create_frame_matrix.main([f"--img_path={clip}", f"--output_path={tmp_path / 'fm'}", "--quiet", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "fm" / "manifest.json").exists()


def test_cli_depth_count_mismatch(tmp_path, capsys):
    clip = tmp_path / "clip"
    write_clip(clip)
    (clip / "depths_refined" / "00003_depth.npy").unlink()
    assert create_frame_matrix.main([f"--img_path={clip}", f"--output_path={tmp_path / 'fm'}", "--quiet"]) == 2
    assert "3 depth maps for 4 frames" in capsys.readouterr().err


@pytest.mark.parametrize("layout", ["left2right", "middle2leftright"])
def test_cli_writes_the_frame_matrix_the_library_computes(tmp_path, layout):
    """create_frame_matrix.py (chunks of 3 frames, depth normalised over the clip from the folder's maps) writes the
    cells ``frame_matrix_from_clip`` computes from the whole clip in one go, bit for bit (lossless), and the holes'
    share it reports."""
    clip = tmp_path / "clip"
    write_clip(clip, frames=7, refined=False)
    out = tmp_path / "fm"
    argv = [f"--img_path={clip}", f"--output_path={out}", "--num_frames", "-1", "--use_refined_depth", "0", "--num_training_views", "4",
            f"--{layout}", "--lossless", "--chunk_frames", "3", "--device", "cpu", "--quiet"]  # fmt: skip
    assert create_frame_matrix.main(argv) == 0
    fm = matrix.load_frame_matrix(out)
    frames = read_clip(clip).frames
    disparity = np.stack([io.read_depth(p) for p in io.list_depths(clip / "depths")])
    config = MatrixConfig(num_views=4, layout=camera.Layout(layout), lossless=True)
    want = matrix.frame_matrix_from_clip(frames, disparity, config)
    assert torch.equal(fm.masks, want.masks)
    assert torch.equal((fm.images * 255).round(), (want.images * 255).round())
    assert fm.info == replace(want.info, frame_names=fm.info.frame_names)
