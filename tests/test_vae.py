"""Our forward of the SD VAE (svg3d.vae) against diffusers' AutoencoderKL, and the loop's use of it."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from svg3d import denoise, vae
from svg3d.checks import InputError
from svg3d.denoise import DenoiseConfig
from svg3d.tiny_models import TINY_VAE, randomize_weights_

pytestmark = pytest.mark.usefixtures("flush_denormals")


def _autoencoder(attention: bool, dtype=torch.float32):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return randomize_weights_(AutoencoderKL(**{**TINY_VAE, "mid_block_add_attention": attention})).to(dtype).eval()


def _max(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


@pytest.mark.parametrize("group_norm", ["torch", "grouped"])
@pytest.mark.parametrize("attention", [False, True])
def test_ours_computes_what_autoencoder_kl_computes(attention, group_norm):
    """fp32 on the CPU, against diffusers in float64: our error is at most a few times diffusers' own fp32 error
    (both are float32 rounding; the sums run in another order), for the posterior and the decoded frames."""
    theirs = _autoencoder(attention)
    exact = copy.deepcopy(theirs).double()
    ours = vae.VAE.from_diffusers(theirs, group_norm=group_norm)  # makes theirs channels-last in place: same values
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 48, 64, generator=g) * 2 - 1  # latents 6 x 8: unequal sides catch a swapped h/w
    z = torch.randn(3, 4, 6, 8, generator=g)
    with torch.no_grad():
        truth, fp32 = exact.encode(x.double()).latent_dist, theirs.encode(x).latent_dist
        mean, std = ours.encode(x)
        frames, frames32, frames64 = ours.decode(z), theirs.decode(z).sample, exact.decode(z.double()).sample
    assert mean.dtype == std.dtype == torch.float32 and mean.shape == std.shape == (3, 4, 6, 8)
    assert frames.shape == (3, 3, 48, 64)
    for mine, reference, exact_value in (
        (mean, fp32.mean, truth.mean),
        (std, fp32.std, truth.std),
        (frames, frames32, frames64),
    ):
        floor = 1e-6 * exact_value.abs().max().item()  # float32's resolution at the output's scale
        assert _max(mine, exact_value) <= 4 * max(_max(reference, exact_value), floor)


def test_vae_for_covers_autoencoder_kl_only(tmp_path):
    from diffusers import AutoencoderKLTemporalDecoder

    from svg3d.tiny_models import save_tiny_svd_vae

    kl = _autoencoder(False)
    assert vae.vae_for(kl, "diffusers") is None
    ours = vae.vae_for(kl, "ours")
    assert isinstance(ours, vae.VAE) and vae.vae_for(kl, "ours") is ours  # built once
    svd = AutoencoderKLTemporalDecoder.from_pretrained(save_tiny_svd_vae(tmp_path), subfolder="vae")
    assert vae.vae_for(svd, "ours") is None  # the temporal decoder keeps diffusers' forward
    with pytest.raises(ValueError, match="vae_forward 'mine'"):
        vae.vae_for(kl, "mine")
    with pytest.raises(InputError, match="vae_forward mine: expected one of diffusers, ours"):
        DenoiseConfig(vae_forward="mine")
    assert DenoiseConfig(unet="ours").vae_kind == "ours" and DenoiseConfig(unet="diffusers").vae_kind == "diffusers"
    assert DenoiseConfig(unet="ours", vae_forward="diffusers").vae_kind == "diffusers"


def test_a_compiled_vae_moved_to_another_device_is_compiled_again(monkeypatch):
    """``--offload`` moves the VAE to the CPU and back for every use: ``vae_for`` builds our forward over the moved
    weights, compiled as the one before was (its regions given ``torch.compile`` again, here recorded)."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compiled.append(kw["mode"]) or fn)
    kl = _autoencoder(False)
    first = vae.vae_for(kl, "ours").compile("max-autotune-no-cudagraphs")
    regions = len(compiled)
    assert regions > 0 and first.compile_mode == "max-autotune-no-cudagraphs"
    kl.to(torch.float64)  # (a move: the test's stand-in for the device)
    moved = vae.vae_for(kl, "ours")
    assert moved is not first and moved.dtype == torch.float64
    assert moved.compile_mode == "max-autotune-no-cudagraphs" and compiled == ["max-autotune-no-cudagraphs"] * (2 * regions)
    uncompiled = _autoencoder(False)
    vae.vae_for(uncompiled, "ours")
    uncompiled.to(torch.float64)
    assert vae.vae_for(uncompiled, "ours").compile_mode is None and len(compiled) == 2 * regions


def test_the_loop_with_our_vae_equals_the_loop_with_diffusers(model):
    from tests.test_denoise import make_matrix

    fm = make_matrix(3, 4)
    config = DenoiseConfig(num_inference_steps=3, resample=4, unet="diffusers")  # re-injection at every step
    theirs = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "x", replace(config, vae_forward="diffusers"))
    ours = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "x", replace(config, vae_forward="ours"))
    scale = theirs.latents.abs().max()
    # Each VAE call agrees to ~1e-6 relative (above); 3 steps of round trips and CFG's 7.5x amplify it.
    assert (ours.known_latents - theirs.known_latents).abs().max() <= 1e-4 * scale
    assert (ours.latents - theirs.latents).abs().max() <= 1e-4 * scale
    for view, video in theirs.videos.items():
        assert (ours.videos[view] - video).abs().max() <= 1e-4


def test_reinjection_decodes_and_encodes_only_cells_with_unknown_pixels(model, monkeypatch):
    """A cell known in every pixel of a view the re-injection updates composites to its masked frame: it is neither
    decoded nor re-encoded, and its S is a sample of the posterior kept from step 2 (here the mean: vae_sample off)."""
    from tests.test_denoise import make_matrix

    fm = make_matrix(3, 4)
    masks = fm.masks.clone()
    masks[1, 2] = True  # view 1 (holes elsewhere) has one frame known in every pixel
    config = DenoiseConfig(num_inference_steps=3, vae_sample=False, frame_matrix_end=0)  # multi-view: every view active
    ours = vae.vae_for(model.vae, "ours")
    counts = {"decode": 0, "encode": 0}

    def counting(name: str):
        call = getattr(ours, name)

        def counted(x):
            counts[name] += x.shape[0]
            return call(x)

        return counted

    for name in counts:
        monkeypatch.setattr(ours, name, counting(name))
    out = denoise.denoise_frame_matrix(model, fm.images, masks, "x", config)
    pixel, mask = denoise.known_masks(masks, model.vae_scale_factor, config)
    whole = pixel.flatten(2).all(dim=2)
    some = mask.flatten(2).amax(dim=2) > 0
    assert whole[1, 2] and not whole[1].all() and not whole[2].any() and whole[0].all()  # view 0: the input view
    redo = int((some & ~whole)[1:].sum())  # views 1 and 2, the cells with both known and unknown pixels
    assert counts["encode"] == int(some.sum()) + 3 * redo  # step 2, then every step's re-injection
    assert counts["decode"] == 3 * redo + 3 * 4  # every step's re-injection, then the three views' output
    with torch.no_grad():  # step 2's encode: the masked frames of every cell with known latents, in one batch
        kept = denoise.vae_posterior(model, (fm.images * pixel)[some])[0]
    index = int(some.flatten()[: 1 * 4 + 2].sum())  # cell (1, 2) among them
    assert torch.equal(out.known_latents[1, 2], kept[index] * model.vae.config.scaling_factor)


@pytest.mark.slow  # Inductor builds C++ for each block shape: ~1 minute on 2 cores
def test_compiled_regions_equal_eager_for_any_batch(tmp_path, monkeypatch):
    """``VAE.compile``: resnets and the mid attention compiled on their own, equal to eager within 1e-4 relative
    (fp32; fused and reordered sums), and a second batch size reuses the graphs (the batch is dynamic)."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    torch._dynamo.reset()
    theirs = _autoencoder(True)
    eager = vae.VAE.from_diffusers(copy.deepcopy(theirs))
    assert vae.compile_ours(theirs, cache=False) == 1
    compiled = vae.vae_for(theirs, "ours")
    graphs = None
    with torch.no_grad():
        for batch in (2, 3):
            x = torch.rand(batch, 3, 32, 48, generator=torch.Generator().manual_seed(batch)) * 2 - 1
            mean, ref = compiled.encode(x)[0], eager.encode(x)[0]
            frames, ref_frames = compiled.decode(mean), eager.decode(ref)
            for out, expected in ((mean, ref), (frames, ref_frames)):
                assert _max(out, expected) <= 1e-4 * expected.abs().max().item()
            graphs = counters["stats"]["unique_graphs"] if graphs is None else graphs
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.gpu
def test_ours_in_fp16_on_cuda_errs_like_diffusers_fp16():
    """SD's VAE at 576x320 in fp16 on CUDA (the grouped GroupNorm, SDPA), against diffusers' in fp32: our error is
    within twice diffusers' own fp16 error, for the posterior mean and the decoded frames."""
    from diffusers import AutoencoderKL

    from svg3d.tiny_models import FULL_VAE

    cuda = torch.device("cuda")
    torch.manual_seed(0)
    exact = randomize_weights_(AutoencoderKL(**FULL_VAE)).to(cuda).eval()
    half = copy.deepcopy(exact).half()
    ours = vae.VAE.from_diffusers(copy.deepcopy(half))
    assert ours.encoder.norm_out.impl == "grouped"
    g = torch.Generator(cuda).manual_seed(1)
    x = torch.rand(4, 3, 320, 576, device=cuda, generator=g) * 2 - 1
    with torch.no_grad():
        truth = exact.encode(x).latent_dist.mean
        theirs, mine = half.encode(x.half()).latent_dist.mean, ours.encode(x.half())[0]
        frames = exact.decode(truth).sample
        theirs_frames, my_frames = half.decode(truth.half()).sample, ours.decode(truth.half())
    for mine_, theirs_, exact_ in ((mine, theirs, truth), (my_frames, theirs_frames, frames)):
        assert mine_.isfinite().all()
        floor = 1e-3 * exact_.abs().max().item()  # fp16's resolution at the output's scale
        assert _max(mine_, exact_) <= 2 * max(_max(theirs_, exact_), floor)
