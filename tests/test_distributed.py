"""One clip across processes (``svg3d.distributed``): two gloo processes on the CPU denoise like one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from svg3d import denoise
from svg3d.checks import InputError
from svg3d.denoise import DenoiseConfig
from svg3d.distributed import Ranks

pytestmark = pytest.mark.usefixtures("flush_denormals")

# Temporal and row passes, re-injection, t <= E steps; one column or row (with its CFG pair) per UNet call, so
# the calls show how the work was shared.
CONFIG = DenoiseConfig(num_inference_steps=3, resample=4, max_unet_frames=8)


def test_shares_cover_every_item_once():
    for n in (0, 1, 2, 7, 14, 16, 32):
        for world in (1, 2, 3, 8):
            shares = [list(Ranks(r, world).share(n)) for r in range(world)]
            assert sorted(i for s in shares for i in s) == list(range(n))
            assert max(len(s) for s in shares) == -(-n // world)  # no rank waits for more than its block
    # The target view's single column (2 items: its CFG pair) still goes to two GPUs.
    assert [list(Ranks(r, 8).share(2)) for r in range(3)] == [[0], [1], []]
    with pytest.raises(ValueError):
        Ranks(2, 2)


def _denoise_on_rank(ranks, device, model_dir: str, out: str, config: DenoiseConfig, fail: bool) -> None:
    """Runs in each spawned process: the tiny model, the test matrix, this rank's share."""
    from svg3d.models import load_zeroscope
    from tests.test_denoise import make_matrix

    torch.set_flush_denormal(True)  # as the parent test (flush_denormals): the same float behaviour
    if fail and ranks.rank == 1:
        raise InputError("rank 1 could not read its input")
    model = load_zeroscope(model_dir, device=device)
    fm = make_matrix(3, 4)
    result = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "a red car", config, workers=ranks)
    torch.save(
        dict(
            latents=result.latents, videos=result.videos, calls=result.stats.unet_calls, frames=result.stats.unet_frames
        ),
        Path(out) / f"rank{ranks.rank}.pt",
    )


@pytest.mark.slow  # two fresh processes import torch and diffusers: ~15 s on 2 cores
def test_two_gloo_processes_equal_one(model, model_dir, tmp_path):
    from svg3d import distributed
    from tests.test_denoise import make_matrix

    for unet in ("diffusers", "ours"):
        config = replace(CONFIG, unet=unet)
        out = tmp_path / unet
        out.mkdir()
        distributed.spawn(_denoise_on_rank, 2, (str(model_dir), str(out), config, False), device_type="cpu")
        fm = make_matrix(3, 4)
        single = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "a red car", config)
        ranks = [torch.load(out / f"rank{r}.pt") for r in range(2)]
        assert torch.equal(ranks[0]["latents"], ranks[1]["latents"])  # every rank holds the same matrix
        assert ranks[0]["frames"] == single.stats.unet_frames  # the whole schedule's work ...
        # ... shared out: each rank makes about half the calls (the target view alone is one call per CFG branch).
        assert 0 < min(r["calls"] for r in ranks) and max(r["calls"] for r in ranks) <= 0.65 * single.stats.unet_calls
        # Only the batch sizes per UNet/VAE call differ from the one-process run (as batched vs one call per
        # column in test_denoise): float32 rounding, 1e-5 of the latents' scale.
        scale = single.latents.abs().max()
        assert (ranks[0]["latents"] - single.latents).abs().max() <= 1e-5 * scale
        for view, video in single.videos.items():
            assert (ranks[0]["videos"][view] - video).abs().max() <= 1e-4


@pytest.mark.slow
def test_an_input_error_in_a_rank_is_one_input_error(model_dir, tmp_path):
    from svg3d import distributed

    with pytest.raises(InputError, match="rank 1 could not read its input"):
        distributed.spawn(_denoise_on_rank, 2, (str(model_dir), str(tmp_path), CONFIG, True), device_type="cpu")


@pytest.mark.slow  # two spawned processes: ~15 s
def test_svg_py_gpus_2_on_the_cpu_writes_what_one_process_writes(model_dir, tmp_path, capsys):
    import json

    import svg
    from svg3d.io import read_image
    from svg3d.stages.matrix import save_frame_matrix
    from tests.test_denoise import make_matrix

    save_frame_matrix(make_matrix(3, 4), tmp_path / "fm")
    argv = ["--prompt", "x", "--init_image", str(tmp_path / "fm"), "--num_frames", "4", "--num_inference_steps", "2"]
    argv += ["--model_path", str(model_dir), "--device", "cpu", "--unet", "ours", "--quiet"]
    assert svg.main(argv + ["--output_root", str(tmp_path / "one")]) == 0
    assert svg.main(argv + ["--output_root", str(tmp_path / "two"), "--gpus", "2"]) == 0
    one, two = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("one", "two"))
    assert (one["gpus"], two["gpus"], two["config"]["unet"]) == (1, 2, "ours")
    assert two["unet_frame_evaluations"] == one["unet_frame_evaluations"]
    for name in sorted(p.name for p in (tmp_path / "one").glob("view*.jpg")):
        a, b = (read_image(tmp_path / d / name).astype(int) for d in ("one", "two"))
        # float32 rounding of other batch sizes flips a few pixels by one level before JPEG, whose quantisation
        # can turn that into a few levels in the pixel's block: most pixels equal, none far off.
        assert abs(a - b).mean() < 0.05 and abs(a - b).max() <= 16
    bad = [("mine" if a == "ours" else a) for a in argv]
    with pytest.raises(SystemExit) as e:  # argparse: the choices are listed in --help and in its error
        svg.main(bad + ["--output_root", str(tmp_path / "bad")])
    assert e.value.code == 2 and "--unet: invalid choice: 'mine'" in capsys.readouterr().err


@pytest.mark.gpu
def test_two_gpus_equal_one(model, model_dir, tmp_path):
    """NCCL on two GPUs against one GPU, fp16: the batch sizes per call differ, so fp16 rounding (1e-2 of the
    latents' scale, as compiled vs eager in test_compile)."""
    from svg3d import distributed
    from svg3d.models import load_zeroscope
    from tests.test_denoise import make_matrix

    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    config = replace(CONFIG, unet="ours")
    distributed.spawn(_denoise_on_rank, 2, (str(model_dir), str(tmp_path), config, False), device_type="cuda")
    fm = make_matrix(3, 4)
    one = load_zeroscope(str(model_dir), device=torch.device("cuda"))
    single = denoise.denoise_frame_matrix(one, fm.images, fm.masks, "a red car", config)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert torch.equal(ranks[0]["latents"].cpu(), ranks[1]["latents"].cpu())
    scale = single.latents.abs().max().cpu()
    assert (ranks[0]["latents"].cpu() - single.latents.cpu()).abs().max() <= 1e-2 * scale
