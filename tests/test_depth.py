"""Stage 1: input sizing, a tiny random Depth Anything through the real loader and CLI, clear errors."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub: tests never download

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from svg3d import io
from svg3d.checks import InputError
from svg3d.models import SEED_ENCODERS, depth_model_name, load_depth_model
from svg3d.stages.depth import ModelDepth, network_size, predict_disparity, preprocess
from svg3d.tiny_models import TINY_DEPTH_INPUT, save_tiny_depth_anything

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "third_party" / "Depth-Anything" / "svg_run.py"
CPU = torch.device("cpu")


def load_cli():
    spec = importlib.util.spec_from_file_location("svg_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_depth_anything(tmp_path_factory.mktemp("tiny_depth_anything"))


def write_frames(folder: Path, count: int = 5, h: int = 64, w: int = 96) -> np.ndarray:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (count, h, w, 3), dtype=np.uint8)
    for t, f in enumerate(frames):
        io.write_image(folder / f"{t:05d}.png", f)
    return frames


# --------------------------------------------------------------------------------------------------
# pure functions


def test_network_size_as_depth_anything():
    assert network_size(320, 576) == (518, 938)  # the paper's clips
    assert network_size(576, 320) == (938, 518)
    assert network_size(518, 518) == (518, 518)
    for h, w in [(240, 427), (1080, 1920), (100, 100), (333, 517)]:
        nh, nw = network_size(h, w)
        assert nh % 14 == 0 and nw % 14 == 0 and min(nh, nw) >= 518
        assert abs(nw / nh - w / h) < 0.03 * w / h  # aspect kept up to the rounding to 14


def test_preprocess_normalises_and_resizes():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    frames = torch.tensor(mean).view(1, 3, 1, 1).expand(2, 3, 32, 48).contiguous()
    x = preprocess(frames, (70, 98), mean=mean, std=std)
    assert x.shape == (2, 3, 70, 98)
    assert x.abs().max() < 1e-5  # the mean colour maps to 0
    ones = preprocess(torch.ones(1, 3, 32, 48), (70, 98), mean=mean, std=std)
    torch.testing.assert_close(ones[0, :, 5, 5], (1 - torch.tensor(mean)) / torch.tensor(std))


def test_model_name_choice():
    assert depth_model_name() == "depth-anything/Depth-Anything-V2-Small-hf"
    assert depth_model_name(encoder="vitl") == SEED_ENCODERS["vitl"] == "LiheYoung/depth-anything-large-hf"
    assert depth_model_name(model="/some/folder") == "/some/folder"
    with pytest.raises(InputError, match="give one"):
        depth_model_name(model="x/y", encoder="vits")


# --------------------------------------------------------------------------------------------------
# a tiny random model through the real loader


def network_atol(prediction: np.ndarray) -> float:
    """What float32 arithmetic can change in a prediction when the batch layout changes.

    Another batch size (or another CPU: AVX2 vs AVX-512 kernels, Intel vs AMD) sums the same products in
    another order. Each sum then differs by a few ulps of its *terms*, not of its result, so the error
    is on the scale of the activations: near the output ReLU's zero a value of 1e-9 can move by 3e-7.
    float32's unit roundoff (6e-8) times the ~10^3-term dot products of a ~20-layer network bounds it at
    about 1e-4 of the map's largest value. A bug that mixed frames of a batch would move values by
    their own size, three orders of magnitude more.
    """
    return 1e-4 * float(np.abs(prediction).max())


def test_loader_reads_the_processor_config(tiny_model_dir):
    model = load_depth_model(str(tiny_model_dir), device=CPU)
    assert model.input_size == TINY_DEPTH_INPUT and model.multiple == 14
    assert model.dtype == torch.float32 and not model.net.training


def test_prediction_shape_range_and_batch_independence(tiny_model_dir):
    model = load_depth_model(str(tiny_model_dir), device=CPU)
    frames = np.random.default_rng(1).integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    together = ModelDepth(model, batch_size=3)(frames, 0, (40, 60))
    one_by_one = ModelDepth(model, batch_size=1)(frames, 0, (40, 60))
    assert together.shape == (3, 40, 60) and together.dtype == np.float32
    assert (together >= 0).all() and together.max() > 0 and together.std() > 0
    np.testing.assert_allclose(one_by_one, together, rtol=0, atol=network_atol(together))


def test_model_depth_on_cpu_is_the_float32_prediction(tiny_model_dir):
    # The CPU path is unchanged by the GPU's (uint8 frames to the device once, maps back once): the same float32
    # maths as predict_disparity on the frames in [0, 1], to the bit when the batch is the same.
    model = load_depth_model(str(tiny_model_dir), device=CPU)
    frames = np.random.default_rng(3).integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    rgb = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255  # (T, H, W, 3) uint8 -> (T, 3, H, W) [0, 1]
    expected = predict_disparity(model, rgb, size=(20, 30)).numpy()
    got = ModelDepth(model, batch_size=3)(frames, 0, (20, 30))
    assert got.dtype == np.float32 and got.shape == (3, 20, 30)
    np.testing.assert_array_equal(got, expected)


def test_depth_stage_cli_writes_npy_and_previews(tiny_model_dir, tmp_path, capsys):
    frames = write_frames(tmp_path / "clip" / "images")
    out = tmp_path / "clip" / "depths"
    argv = ["--img-path", str(tmp_path / "clip" / "images"), "--outdir", str(out), "--model", str(tiny_model_dir)]
    rc = load_cli().main([*argv, "--device", "cpu", "--batch-size", "2"])
    assert rc == 0, capsys.readouterr().err
    files = io.list_depths(out)  # strict: only depth maps at the top level
    assert [f.name for f in files] == [f"{t:05d}_depth.npy" for t in range(5)]
    depths = io.read_depths(out)
    assert depths.shape == (5, 64, 96) and depths.dtype == np.float32 and (depths >= 0).all()
    previews = sorted((out / "preview").iterdir())
    assert [p.name for p in previews] == [f"{t:05d}_depth.png" for t in range(5)]
    assert io.read_image(previews[0]).shape == (64, 96, 3)
    # The files hold the model's raw prediction for those frames.
    model = load_depth_model(str(tiny_model_dir), device=CPU)
    expected = predict_disparity(model, torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255).numpy()
    np.testing.assert_allclose(depths, expected, rtol=0, atol=network_atol(expected))


# --------------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model", "nobody/no-such-depth-model"], "'nobody/no-such-depth-model'"),
        (["--model", "./no/such/folder"], "no such folder"),
        (["--model", "x/y", "--encoder", "vits"], "give one"),
        (["--batch-size", "0"], "--batch-size 0"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, flags, message):
    write_frames(tmp_path / "images", count=2)
    rc = load_cli().main(["--img-path", str(tmp_path / "images"), "--outdir", str(tmp_path / "d"), *flags])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    if "nobody" in message:
        assert "--model DIR" in err  # says how to provide the model offline


def test_cli_bad_clip_fails_before_loading_a_model(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = load_cli().main(["--img-path", str(tmp_path / "empty"), "--outdir", str(tmp_path / "d")])
    assert rc == 2 and "no .jpg or .png frames" in capsys.readouterr().err


def test_seed_command_offline_says_which_model_and_how(tmp_path):
    """The README's command, unchanged, from inside third_party/Depth-Anything, with no weights on disk."""
    clip = tmp_path / "Videos" / "clip"
    write_frames(clip / "images", count=2)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    cmd = [
        sys.executable,
        "svg_run.py",
        "--encoder",
        "vitl",
        "--img-path",
        f"{clip}/images/",
        "--outdir",
        f"{clip}/depths/",
    ]
    res = subprocess.run(cmd, cwd=SCRIPT.parent, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "LiheYoung/depth-anything-large-hf" in lines[0] and "--model" in lines[0], res.stderr


@pytest.mark.gpu
def test_fp16_on_cuda_matches_cpu(tiny_model_dir):
    frames = np.random.default_rng(2).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    cpu = ModelDepth(load_depth_model(str(tiny_model_dir), device=CPU))(frames, 0, (48, 64))
    model = load_depth_model(str(tiny_model_dir), device=torch.device("cuda"))
    assert model.dtype == torch.float16
    gpu = ModelDepth(model)(frames, 0, (48, 64))
    np.testing.assert_allclose(gpu, cpu, atol=0.05 * cpu.max())


@pytest.mark.gpu
@pytest.mark.parametrize("h, w", [(1080, 1920), (270, 480)])  # shrunk (antialiased) and enlarged to 518 px
def test_preprocess_on_cuda_matches_cpu(h, w):
    # The resize to multiples of 14 and the normalisation run on the GPU in float32: the same numbers as on a CPU
    # up to float32 rounding: the antialiased bicubic weights are computed and summed in another order (seen on an
    # H100: 2.3e-5 on the 0-1 scale at 1080p, ~200 ulps of 1.0 over ~20 taps a side), so 1e-4 on the 0-1 scale, which
    # the normalisation multiplies by 1/std.
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    frames = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (2, h, w, 3), dtype=np.uint8))
    frames = frames.permute(0, 3, 1, 2).float() / 255.0
    size = network_size(h, w)
    cpu = preprocess(frames, size, mean=mean, std=std)
    gpu = preprocess(frames.cuda(), size, mean=mean, std=std)
    assert gpu.device.type == "cuda" and gpu.shape == cpu.shape == (2, 3, *size)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-4 / min(std))
