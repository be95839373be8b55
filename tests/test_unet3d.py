"""Our UNet3D forward (``svg3d.unet3d``) against diffusers' ``UNet3DConditionModel``, and the loop's switch.

Tolerance: both compute the same sums in float32 in another order (channels-last convolutions, fused q/k/v, the
clip's frames as one cross-attention query sequence, GroupNorm statistics in another reduction order). Each
reordered sum of n terms moves its result by about n * 2^-24 relative to the terms' magnitude; through the ~30
layers of the tiny UNet (and the ~150 of zeroscope's) with O(1) activations that stays near 1e-6 of the output's
scale (measured: 1e-6 tiny, 3e-6 full-size; Intel or AMD change only which sums round which way). 1e-4 of the
output's largest magnitude leaves a factor 30 and still fails on any real mistake: a frame or channel mix-up,
a missing residual or a wrong head split moves the output by O(1) (``test_a_wrong_frame_order_is_caught``).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from svg3d import attention, denoise, unet3d
from svg3d.checks import InputError
from svg3d.denoise import DenoiseConfig
from svg3d.tiny_models import FULL_UNET, TINY_UNET, random_unet
from svg3d.unet3d import UNet3D

pytestmark = pytest.mark.usefixtures("flush_denormals")

REL = 1e-4  # see the module docstring
# The schedule's three UNet pass shapes on a 3-view x 4-frame matrix (the view with holes: 2 columns), CFG doubled:
# a temporal pass over the views with holes, a pass along the views (4 rows of 3 views), the target view alone;
# plus latents whose sides do not halve evenly (the upsampler then follows the skip's size, as diffusers).
PASS_SHAPES = {
    "temporal, views": (4, 4, 8, 12),
    "rows": (8, 3, 8, 12),
    "temporal, target": (2, 4, 8, 12),
    "odd latents": (2, 3, 9, 11),
}


@pytest.fixture(scope="module")
def tiny_unet():
    return random_unet(TINY_UNET)  # every weight random: no layer starts as an identity


def _inputs(batch: int, frames: int, h: int, w: int, dim: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, frames, h, w, generator=g)
    half = torch.randn(batch // 2 or 1, 77, dim, generator=g)
    context = torch.cat([half, torch.randn_like(half)]) if batch > 1 else half  # CFG: [negatives, prompts]
    return x, context


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


@torch.no_grad()
@pytest.mark.parametrize("shape", list(PASS_SHAPES.values()), ids=list(PASS_SHAPES))
@pytest.mark.parametrize("temporal_conv", unet3d.TEMPORAL_CONV)
@pytest.mark.parametrize("group_norm", unet3d.GROUP_NORM)
def test_ours_equals_diffusers_on_the_tiny_config(tiny_unet, shape, temporal_conv, group_norm):
    x, context = _inputs(*shape, dim=TINY_UNET["cross_attention_dim"])
    t = torch.tensor(501)
    ref = tiny_unet(x, t, encoder_hidden_states=context).sample
    ours = UNet3D.from_diffusers(tiny_unet, temporal_conv=temporal_conv, group_norm=group_norm)
    out = ours(x, t, context).sample
    assert out.shape == ref.shape == x.shape
    assert _rel(out, ref) <= REL
    assert ours(x, t, context, return_dict=False)[0].shape == x.shape


@pytest.mark.parametrize("frames", [1, 4])
@pytest.mark.parametrize("silu", [False, True])
def test_grouped_norm_equals_torchs(frames, silu):
    """The "grouped" GroupNorm (statistics of the NHWC view, one multiply-add) in float32 against torch's in float64,
    with a mean 16 standard deviations from zero, where a sum-of-squares variance cancels: within 1e-5 of the output's
    scale, and no farther than torch's own float32 kernel (on a CPU it is the one that cancels: 3.5e-4 seen, ours
    3.5e-6)."""
    g = torch.Generator().manual_seed(3)
    x = 8 + 0.5 * torch.randn(8, 6, 10, 64, generator=g)
    w, b = torch.randn(64, generator=g), torch.randn(64, generator=g)
    ref = unet3d.group_norm(x.double(), 32, w.double(), b.double(), 1e-6, frames=frames, silu=silu, impl="torch")
    out = unet3d.group_norm(x, 32, w, b, 1e-6, frames=frames, silu=silu, impl="grouped")
    torch_32 = unet3d.group_norm(x, 32, w, b, 1e-6, frames=frames, silu=silu, impl="torch")
    assert out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous() and x.mean() > 7  # x itself untouched
    error = (out.double() - ref).abs().max().item()
    assert error <= 1e-5 * ref.abs().max().item() and error <= (torch_32.double() - ref).abs().max().item()


@torch.no_grad()
def test_a_wrong_frame_order_is_caught(tiny_unet):
    """The temporal layers couple the frames: feeding them in another order changes the output by far more than
    the tolerance (so the equality above would catch a frame mix-up); every layer reads diffusers' own weights."""
    x, context = _inputs(*PASS_SHAPES["temporal, views"], dim=TINY_UNET["cross_attention_dim"])
    t = torch.tensor(501)
    ours = UNet3D.from_diffusers(tiny_unet)
    out = ours(x, t, context).sample
    shuffled = ours(x[:, :, [1, 0, 3, 2]], t, context).sample[:, :, [1, 0, 3, 2]]
    assert _rel(shuffled, out) > 100 * REL  # a per-frame network would give back the same frames
    other = copy.deepcopy(tiny_unet)
    other.down_blocks[0].temp_convs[0].conv4[-1].weight.mul_(2)  # the layer diffusers initialises to zero
    assert _rel(UNet3D.from_diffusers(other)(x, t, context).sample, out) > 100 * REL


@torch.no_grad()
def test_timestep_forms_and_bad_shapes(tiny_unet):
    x, context = _inputs(2, 3, 8, 12, dim=TINY_UNET["cross_attention_dim"])
    ours = UNet3D.from_diffusers(tiny_unet)
    ref = ours(x, torch.tensor(301), context).sample
    for t in (301, torch.tensor([301]), torch.tensor([301, 301])):
        assert torch.equal(ours(x, t, context).sample, ref)
    assert not torch.allclose(ours(x, torch.tensor([301, 701]), context).sample, ref)  # per-item timesteps
    with pytest.raises(ValueError, match="timestep"):
        ours(x, torch.tensor([1, 2, 3]), context)
    with pytest.raises(ValueError, match="sample"):
        ours(x[0], 301, context)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        ours(x, 301, context[:1])


def test_unsupported_variants_are_one_line(tiny_unet):
    sliced = copy.deepcopy(tiny_unet)
    sliced.set_attention_slice(1)  # diffusers' sliced attention: another processor than plain SDPA
    with pytest.raises(InputError, match="--unet ours does not support attention processor SlicedAttnProcessor"):
        UNet3D.from_diffusers(sliced)
    with pytest.raises(ValueError, match="temporal_conv"):
        UNet3D.from_diffusers(tiny_unet, temporal_conv="fft")
    with pytest.raises(InputError, match="^unet mine: expected one of diffusers, ours"):
        DenoiseConfig(unet="mine")


def test_unet_for_builds_once_and_follows_the_dtype(tiny_unet):
    unet = copy.deepcopy(tiny_unet)
    assert unet3d.unet_for(unet, "diffusers") is unet
    ours = unet3d.unet_for(unet, "ours")
    assert unet3d.unet_for(unet, "ours") is ours
    unet.double()
    again = unet3d.unet_for(unet, "ours")
    assert again is not ours and again.dtype == torch.float64
    x, context = _inputs(2, 3, 8, 12, dim=TINY_UNET["cross_attention_dim"])
    with torch.no_grad():
        ref = unet(x.double(), 401, encoder_hidden_states=context.double()).sample
        assert _rel(again(x.double(), 401, context.double()).sample, ref) <= 1e-10  # float64: rounding 2^-53


@pytest.mark.slow  # drawing 1.4 B random weights takes ~10 s on 2 cores, the six calls ~15 s
@torch.no_grad()
def test_ours_equals_diffusers_on_the_full_zeroscope_config():
    """zeroscope_v2_576w's architecture (random weights) at 8x8 latents: every level, 320-1280 channels, 5-20
    heads of 64; the three pass shapes of the default schedule with fewer frames/views."""
    unet = random_unet(FULL_UNET)
    ours = UNet3D.from_diffusers(unet)
    assert ours.extra_bytes < 0.05 * sum(p.numel() * p.element_size() for p in unet.parameters())
    t = torch.tensor(981)
    for batch, frames in ((4, 3), (6, 2), (2, 3)):
        x, context = _inputs(batch, frames, 8, 8, dim=FULL_UNET["cross_attention_dim"])
        assert _rel(ours(x, t, context).sample, unet(x, t, encoder_hidden_states=context).sample) <= REL


@pytest.mark.gpu
@torch.no_grad()
def test_fp16_on_cuda_is_within_fp16_noise():
    """fp16 on CUDA: our error against the fp32 result is at most twice diffusers' own fp16 error (both round
    every activation to 11 bits; ours in another order), at every pass shape, for the tiny and the full config,
    with each GroupNorm (torch's, and the grouped one whose scale and shift are rounded to fp16), and through
    DeepCache's calls (``forward_deep``: the whole network, and the outer level around its own deep feature).

    The tiny config runs at 8x16 latents: its 1-channel attention heads send diffusers' fp16 temporal attention
    at 40x72 (batch x heads x pixels = 14 x 8 x 2880 sequences) to an SDPA kernel whose grid refuses that many
    ("CUDA error: invalid argument", seen on an H200 with torch 2.11); ours splits such calls (unet3d)."""
    cuda = torch.device("cuda")
    for config, (h, w) in ((TINY_UNET, (8, 16)), (FULL_UNET, (40, 72))):
        unet = random_unet(config, device=cuda)
        ref32 = copy.deepcopy(unet)
        unet.half()
        ours = UNet3D.from_diffusers(unet)
        for batch, frames in ((14, 16), (32, 8), (2, 16)):
            x, context = _inputs(batch, frames, h, w, dim=config["cross_attention_dim"])
            x, context = x.to(cuda), context.to(cuda)
            truth = ref32(x, 501, encoder_hidden_states=context).sample
            bound = 2 * _rel(unet(x.half(), 501, encoder_hidden_states=context.half()).sample, truth) + 1e-3
            for impl in unet3d.GROUP_NORM:
                ours.set_group_norm(impl)
                mine = ours(x.half(), 501, context.half()).sample
                assert mine.isfinite().all()
                assert _rel(mine, truth) <= bound, impl
            whole, deep = ours.forward_deep(x.half(), 501, context.half())
            shallow, _ = ours.forward_deep(x.half(), 501, context.half(), deep)
            assert _rel(whole, truth) <= bound and _rel(shallow, truth) <= bound


# --------------------------------------------------------------------------------------------------
# the loop with --unet ours


def test_the_loop_with_ours_equals_the_loop_with_diffusers(model):
    from tests.test_denoise import make_matrix

    fm = make_matrix(3, 4)
    config = DenoiseConfig(num_inference_steps=3, resample=4)  # temporal, rows, reversed rows, re-injection
    theirs = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "a red car", replace(config, unet="diffusers"))
    ours = denoise.denoise_frame_matrix(model, fm.images, fm.masks, "a red car", replace(config, unet="ours"))
    assert ours.stats.unet_frames == theirs.stats.unet_frames
    scale = theirs.latents.abs().max()
    # Each UNet call agrees to ~1e-6 relative; 3 steps x 6 passes, the VAE round trips and CFG's 7.5x amplify it.
    assert (ours.latents - theirs.latents).abs().max() <= 1e-4 * scale
    for view, video in theirs.videos.items():
        assert (ours.videos[view] - video).abs().max() <= 1e-4
    assert unet3d.unet_for(model.unet, "ours") is not model.unet


def test_compile_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("SVG3D_COMPILE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert unet3d.compile_cache_dir() == tmp_path / "svg3d" / "compile" / f"torch-{torch.__version__}"
    monkeypatch.setenv("SVG3D_COMPILE_CACHE", str(tmp_path / "mine"))
    assert unet3d.compile_cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # the user's own choice wins
    assert unet3d.use_compile_cache() == tmp_path / "inductor"
    (tmp_path / "inductor" / "a").mkdir(parents=True)
    (tmp_path / "inductor" / "a" / "k.so").write_bytes(b"x" * 10)
    assert unet3d.folder_bytes(tmp_path / "inductor") == 10


def test_flop_count_of_a_frame_evaluation():
    """zeroscope at 576x320 (40x72 latents): the issue's ~0.89 TFLOP per UNet frame-evaluation, from the config;
    the tiny UNet's count follows the same formula for one conv by hand (conv_in: 2 * 9 * 4 * 8 per pixel)."""
    per_frame = unet3d.unet_flops(FULL_UNET, 2, 16, 40, 72) / 32
    assert 0.88e12 < per_frame < 0.90e12
    assert unet3d.unet_flops(FULL_UNET, 4, 16, 40, 72) == 2 * unet3d.unet_flops(FULL_UNET, 2, 16, 40, 72)
    tiny = unet3d.unet_flops(TINY_UNET, 1, 1, 8, 8)
    assert tiny > 2 * 9 * 4 * 8 * 64  # at least conv_in's multiply-adds


@torch.no_grad()
def test_temporal_attention_in_chunks_equals_one_call(tiny_unet, monkeypatch):
    """Frames so large that (pixels x heads) exceed MAX_SDPA_HEADS go through SDPA in several calls."""
    x, context = _inputs(*PASS_SHAPES["temporal, views"], dim=TINY_UNET["cross_attention_dim"])
    ours = UNet3D.from_diffusers(tiny_unet).set_temporal_attention("sdpa")
    whole = ours(x, 501, context).sample
    monkeypatch.setattr(attention, "MAX_SDPA_HEADS", 7)  # 8 x 12 pixels x 8 heads: 14 chunks, the last short
    assert _rel(ours(x, 501, context).sample, whole) <= 1e-6


@torch.no_grad()
def test_deep_feature_of_the_same_input_gives_the_exact_output(tiny_unet):
    """DeepCache's two calls (``forward_deep``): without a feature it is the network itself (bit for bit) and
    returns its inner-level feature; the outer level around the feature of the same input gives that output again
    (bit for bit); around the feature of another timestep's call it gives something else (the inner levels are
    really skipped, not recomputed)."""
    x, context = _inputs(*PASS_SHAPES["temporal, views"], dim=TINY_UNET["cross_attention_dim"])
    ours = UNet3D.from_diffusers(tiny_unet)
    out, deep = ours.forward_deep(x, 501, context)
    assert torch.equal(out, ours(x, 501, context).sample)
    assert deep.shape[0] == x.shape[0] * x.shape[2]  # one feature per frame, (B*F, h', w', C')
    again, same = ours.forward_deep(x, 501, context, deep)
    assert torch.equal(again, out) and same is deep
    _, other = ours.forward_deep(x, 901, context)
    assert _rel(ours.forward_deep(x, 501, context, other)[0], out) > 100 * REL


def test_resnets_of_one_shape_share_their_guards(tiny_unet):
    """diffusers gives the mid block's resnets ``output_scale_factor`` int 1 and the others float 1.0; a compiled
    region guards on the attribute's type, so the mid block's resnets took a graph of their own (37 graphs for the
    full config's three pass shapes instead of 36, seen on an H100). Ours keeps every scale a float."""
    assert {type(b.output_scale_factor) for b in tiny_unet.mid_block.resnets} == {int}  # what diffusers builds
    ours = UNet3D.from_diffusers(tiny_unet)
    scales = [m.scale for m in ours.modules() if isinstance(m, unet3d._Resnet)]
    assert scales and all(type(s) is float and s == 1.0 for s in scales)
