"""Any length and any size (issue 6): sliding windows over time, frames that are not multiples of 8."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from svg3d import io
from svg3d.__main__ import main
from svg3d.checks import InputError
from svg3d.config import ConvertConfig, DepthConfig, DiffusionConfig
from svg3d.convert import convert
from svg3d.denoise import (
    DenoiseConfig,
    denoise_frame_matrix,
    denoise_long,
    pad_to_multiple,
    window_seed,
    window_starts,
)
from svg3d.models import load_zeroscope
from svg3d.stages.export import ExportSettings
from svg3d.stages.matrix import save_frame_matrix
from tests.media import probe, rendered_clip
from tests.test_denoise import make_matrix

CPU = torch.device("cpu")
SMALL = dict(height=32, width=48)  # latents 4 x 6: forty frames stay fast on two cores
FAST = DenoiseConfig(num_inference_steps=2, resample=1)  # one re-injection and one resampling pass per step


pytestmark = pytest.mark.usefixtures("flush_denormals")




def test_window_starts_step_by_window_minus_overlap_and_end_at_the_clip_end():
    assert window_starts(40, 16, 4) == [0, 12, 24]
    assert window_starts(30, 16, 4) == [0, 12, 14]  # the last window is aligned to the end
    assert window_starts(17, 16, 0) == [0, 1]
    assert window_starts(16, 16, 4) == [0] and window_starts(5, 16, 4) == [0]
    for window, overlap in ((16, 16), (4, 9), (8, -1)):
        with pytest.raises(ValueError, match=rf"overlap {overlap} must be >= 0 and smaller than the window \({window}"):
            window_starts(40, window, overlap)
    assert window_seed(7, 0) == 7 and len({window_seed(7, k) for k in range(5)}) == 5


@pytest.mark.parametrize("multiview", [False, True], ids=["stereo", "multiview"])
def test_forty_frames_in_windows_give_forty_frames_per_view(model, multiview):
    fm = make_matrix(3, 40, **SMALL)
    config = replace(FAST, frame_matrix_end=0) if multiview else FAST
    ticks = []
    result = denoise_long(model, fm.images, fm.masks, "x", config, window=16, overlap=4, progress=ticks.append)
    views = (0, 1, 2) if multiview else (0, 2)
    assert sorted(result.videos) == list(views)
    for v in views:
        assert result.videos[v].shape == (40, 3, 32, 48) and torch.isfinite(result.videos[v]).all()
    assert result.latents.shape == (3, 40, 4, 4, 6) and result.latent_mask.shape == (3, 40, 1, 4, 6)
    assert len(ticks) == 3 * FAST.num_inference_steps == len(result.stats.calls_per_step)  # windows at 0, 12, 24


def test_overlap_frames_are_the_previous_windows_latents_exactly(model):
    """The seam: in the second window the output views' overlap latents are the first window's final ones,
    bit for bit, and decode to the same frames; ``denoise_long`` is these two windows stitched."""
    fm = make_matrix(3, 20, **SMALL)
    first = denoise_frame_matrix(model, fm.images[:, :12], fm.masks[:, :12], "x", FAST)
    fixed_cells = torch.zeros(3, 12, dtype=torch.bool)
    fixed_cells[[0, 2], :4] = True
    fixed_latents = torch.zeros_like(first.latents)
    fixed_latents[:, :4] = first.latents[:, 8:]
    second = denoise_frame_matrix(
        model,
        fm.images[:, 8:],
        fm.masks[:, 8:],
        "x",
        replace(FAST, seed=window_seed(FAST.seed, 1)),
        fixed_latents=fixed_latents,
        fixed_cells=fixed_cells,
    )
    assert torch.equal(second.latents[[0, 2], :4], first.latents[[0, 2], 8:])
    assert not torch.equal(second.latents[1, :4], first.latents[1, 8:])  # a view nobody sees is not fixed
    for v in (0, 2):
        torch.testing.assert_close(second.videos[v][:4], first.videos[v][8:], atol=1e-5, rtol=0)
        assert not torch.equal(second.videos[v][4:], first.videos[v][:8])  # the window is not a copy

    long = denoise_long(model, fm.images, fm.masks, "x", FAST, window=12, overlap=4)
    assert torch.equal(long.latents, torch.cat([first.latents, second.latents[:, 4:]], dim=1))
    for v in (0, 2):
        assert torch.equal(long.videos[v], torch.cat([first.videos[v], second.videos[v][4:]]))


@pytest.mark.parametrize("window", [8, 16])
def test_one_window_is_the_unwindowed_loop(model, window):
    fm = make_matrix(3, 8, **SMALL)
    plain = denoise_frame_matrix(model, fm.images, fm.masks, "x", FAST)
    long = denoise_long(model, fm.images, fm.masks, "x", FAST, window=window, overlap=4)
    assert torch.equal(long.latents, plain.latents) and torch.equal(long.known_latents, plain.known_latents)
    assert all(torch.equal(long.videos[v], plain.videos[v]) for v in (0, 2))
    assert long.stats.unet_frames == plain.stats.unet_frames


def test_reflect_padding_to_multiples_of_8():
    x = torch.arange(15.0).reshape(1, 1, 1, 3, 5)
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (1, 1, 1, 4, 8)
    assert padded[0, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 3, 2, 1]  # reflected about the last column
    assert padded[0, 0, 0, 3].tolist() == padded[0, 0, 0, 1].tolist()  # and about the last row
    mask = torch.zeros(1, 1, 1, 3, 5, dtype=torch.bool)
    mask[..., 4] = True
    assert pad_to_multiple(mask, 4).dtype == torch.bool and pad_to_multiple(mask, 4)[0, 0, 0, 0, 4:].tolist() == [
        True,
        False,
        False,
        False,
    ]
    assert pad_to_multiple(x, 1) is x
    tiny = pad_to_multiple(torch.ones(1, 1, 1, 2, 2), 8)  # sides shorter than the padding repeat the edge
    assert tiny.shape == (1, 1, 1, 8, 8) and bool((tiny == 1).all())


def test_any_size_denoises_padded_and_crops_back(model):
    fm = make_matrix(3, 4, height=60, width=100)
    result = denoise_frame_matrix(model, fm.images, fm.masks, "x", FAST)
    assert result.latents.shape[-2:] == (8, 13)  # ceil(60 / 8), ceil(100 / 8)
    assert all(x.shape == (4, 3, 60, 100) for x in result.videos.values())


def test_svg_cli_100x60_matrix_in_windows(model, model_dir, tmp_path):
    """svg.py (the denoised stage's window loop, reading the folder window by window) writes the views that
    ``denoise_long`` gives for the whole matrix loaded at once, through the same JPEG encoding, and its UNet work."""
    import json
    from dataclasses import asdict

    import svg
    from svg3d.stages.matrix import load_frame_matrix

    save_frame_matrix(make_matrix(3, 10, height=60, width=100), tmp_path / "fm")
    argv = ["--prompt", "x", "--init_image", str(tmp_path / "fm"), "--output_root", str(tmp_path / "out"),
            "--num_frames", "6", "--overlap", "2", "--width", "100", "--height", "60", "--latent_w", "13",
            "--num_inference_steps", "1", "--model_path", str(model_dir), "--device", "cpu", "--quiet"]  # fmt: skip
    assert svg.main(argv) == 0
    fm, config = load_frame_matrix(tmp_path / "fm"), DenoiseConfig(num_inference_steps=1)
    want = denoise_long(model, fm.images, fm.masks, "x", config, window=6, overlap=2)
    for v in (0, 2):
        frames = sorted((tmp_path / "out").glob(f"view{v:03d}_*.jpg"))
        assert len(frames) == 10
        for t, path in enumerate(frames):
            io.write_image(tmp_path / "want.jpg", (want.videos[v][t].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())
            assert np.array_equal(io.read_image(path), io.read_image(tmp_path / "want.jpg")), path
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["frames"], manifest["window"], manifest["overlap"]) == (10, 6, 2)
    assert manifest["config"] == json.loads(json.dumps(asdict(config)))
    assert (manifest["unet_calls"], manifest["unet_frame_evaluations"]) == (want.stats.unet_calls, want.stats.unet_frames)
    assert probe(tmp_path / "out" / "results3d.mp4").frames == 10


def test_convert_100x60_clip_in_windows_round_trips_its_size(model_dir, tmp_path):
    video, depth, frames = rendered_clip(tmp_path, frames=10, height=60, width=100, audio=False)
    config = ConvertConfig(
        depth=DepthConfig(depth_from=depth), flow="dis", filler="diffusion",
        diffusion=DiffusionConfig(model=str(model_dir), steps=1, window=6, overlap=2, size=(32, 48)),
        matrix=replace(ConvertConfig().matrix, num_views=3), exports=ExportSettings(exports=("sbs", "left", "right")),
    )  # fmt: skip
    result = convert(video, tmp_path / "out", config)
    assert result.filler == "diffusion"
    for name, width in (("sbs", 200), ("left", 100), ("right", 100)):
        p = probe(result.exports[name])
        assert (p.width, p.height, p.frames) == (width, 60, 10), (name, p)


def test_convert_rejects_an_overlap_as_long_as_the_window(tmp_path, capsys):
    with pytest.raises(InputError, match="overlap 8: must be >= 0 and smaller than window 8"):
        DiffusionConfig(window=8, overlap=8)
    rc = main(["convert", str(tmp_path / "x.mp4"), "-o", str(tmp_path / "out"), "--window", "4", "--overlap", "5"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == "error: --overlap 5: must be >= 0 and smaller than --window 4", err
    assert DiffusionConfig(window=3).window_overlap == 2 and DiffusionConfig().window_overlap == 4
    assert not (tmp_path / "out").exists()


@pytest.mark.gpu
def test_offload_keeps_idle_models_on_the_cpu_and_changes_no_result(model_dir):
    cuda = torch.device("cuda")
    model = load_zeroscope(str(model_dir), device=cuda)
    fm = make_matrix(3, 4, **SMALL)
    plain = denoise_frame_matrix(model, fm.images, fm.masks, "x", FAST)
    offloaded = denoise_frame_matrix(model, fm.images, fm.masks, "x", replace(FAST, offload=True))
    assert model.text_encoder.device.type == "cpu" and next(model.vae.parameters()).device.type == "cpu"
    assert next(model.unet.parameters()).device.type == "cuda"
    torch.testing.assert_close(offloaded.latents, plain.latents)
    again = denoise_frame_matrix(model, fm.images, fm.masks, "x", FAST)  # an offloaded model still works without
    torch.testing.assert_close(again.latents, plain.latents)
