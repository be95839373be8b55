"""Regional compilation (``svg3d.models.compile_blocks``): which modules it wraps, and that compiled
blocks compute what the eager ones do for any batch without recompiling."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from svg3d.graphs import CudaGraphs
from svg3d.models import COMPILED_BLOCKS, compile_blocks
from svg3d.tiny_models import TINY_VAE

pytestmark = pytest.mark.slow  # Inductor generates and builds C++ on the CPU: about 30 s


def test_compile_blocks_wraps_the_outermost_blocks_and_matches_eager():
    from diffusers import AutoencoderKL
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    vae = AutoencoderKL(**{**TINY_VAE, "mid_block_add_attention": True}).eval()
    eager = copy.deepcopy(vae)
    count = compile_blocks(vae)

    wrapped = [name for name, m in vae.named_modules() if getattr(m, "_compiled_call_impl", None) is not None]
    assert count == len(wrapped) > 0
    assert not any(b.startswith(a + ".") for a in wrapped for b in wrapped)  # nothing compiled twice
    blocks = [name for name, m in vae.named_modules() if type(m).__name__ in COMPILED_BLOCKS]
    assert all(any(b == w or b.startswith(w + ".") for w in wrapped) for b in blocks)  # every block covered
    assert any(type(vae.get_submodule(w)).__name__ == "UNetMidBlock2D" for w in wrapped)  # not its inner resnets

    graphs = None
    with torch.no_grad():
        for batch in (2, 3):  # the second batch size reuses the dynamic-shape graphs
            x = torch.rand(batch, 3, 32, 48, generator=torch.Generator().manual_seed(batch)) * 2 - 1
            out = vae.decode(vae.encode(x).latent_dist.mean).sample
            ref = eager.decode(eager.encode(x).latent_dist.mean).sample
            torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
            if graphs is None:
                graphs = counters["stats"]["unique_graphs"]
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.gpu
def test_compiled_zeroscope_denoises_like_eager_on_cuda(model_dir):
    from svg3d.denoise import DenoiseConfig, denoise_frame_matrix
    from svg3d.models import compile_zeroscope, load_zeroscope
    from tests.test_denoise import make_matrix

    cuda = torch.device("cuda")
    # temporal and row passes, re-injection; diffusers' forwards, whose blocks compile_zeroscope() compiles
    config = DenoiseConfig(num_inference_steps=3, resample=2, unet="diffusers", vae_forward="diffusers")
    fm = make_matrix(3, 4, height=64, width=96)
    eager = denoise_frame_matrix(load_zeroscope(str(model_dir), device=cuda), fm.images, fm.masks, "x", config)
    model = load_zeroscope(str(model_dir), device=cuda)
    assert compile_zeroscope(model) > 0
    compiled = denoise_frame_matrix(model, fm.images, fm.masks, "x", config)
    scale = eager.latents.abs().max()
    assert (compiled.latents - eager.latents).abs().max() <= 1e-2 * scale  # fp16 rounding of fused kernels
    for view, video in eager.videos.items():
        assert (compiled.videos[view] - video).abs().max() <= 4 / 255


# --------------------------------------------------------------------------------------------------
# our UNet3D forward compiled whole (static shapes), and the VAE compiled whole


def _cache_in(tmp_path, monkeypatch):
    """Point the compile cache at a fresh folder for this test (torch's own default does not count as a choice)."""
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("SVG3D_COMPILE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow  # Inductor builds C++ for each shape: ~60 s on 2 cores
def test_compiled_ours_equals_eager_per_shape_and_fills_the_cache(tmp_path, monkeypatch):
    """One graph per input shape (about 70-100 s of C++ builds for the tiny UNet on 2 cores): compiled equals eager
    within 1e-4 relative (Inductor fuses and reorders float32 sums, the same argument as tests/test_unet3d.py), a
    second call of the shape with another timestep and input reuses the graph, and the kernels land in the cache."""
    from torch._dynamo.utils import counters

    from svg3d import unet3d
    from svg3d.tiny_models import TINY_UNET, random_unet

    cache = _cache_in(tmp_path, monkeypatch)
    unet = random_unet(TINY_UNET)
    eager = unet3d.UNet3D.from_diffusers(copy.deepcopy(unet))
    compiled = unet3d.compile_unet(unet, scope="whole")
    assert compiled is unet3d.unet_for(unet, "ours")  # the loop's --unet ours now runs the compiled graph
    g = torch.Generator().manual_seed(0)
    graphs = None
    with torch.no_grad():
        for t in (981, 501):
            x, context = torch.randn(4, 4, 4, 8, 12, generator=g), torch.randn(4, 77, 32, generator=g)
            ref = eager(x, t, context).sample
            out = compiled(x, t, context).sample
            assert ((out - ref).abs().max() / ref.abs().max()).item() <= 1e-4
            graphs = counters["stats"]["unique_graphs"] if graphs is None else graphs
    assert counters["stats"]["unique_graphs"] == graphs  # the timestep is a tensor input: no recompile per step
    assert unet3d.use_compile_cache() == cache and unet3d.folder_bytes(cache) > 0


@pytest.mark.slow  # ~30 s of Inductor C++ builds on 2 cores
def test_compiled_channels_last_vae_round_trip_equals_eager(tmp_path, monkeypatch):
    """The VAE's encoder and decoder compiled whole, channels-last (~50 s on 2 cores): encode and decode equal
    eager within 1e-4 relative (fp32; fused and reordered sums), and the frames are fed channels-last."""
    from diffusers import AutoencoderKL

    from svg3d.models import channels_last_input, compile_vae
    from svg3d.tiny_models import randomize_weights_

    _cache_in(tmp_path, monkeypatch)
    torch.manual_seed(0)
    vae = randomize_weights_(AutoencoderKL(**TINY_VAE)).eval()
    eager = copy.deepcopy(vae)
    assert compile_vae(vae, channels_last=True) == 2
    x = torch.rand(4, 3, 64, 96, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert channels_last_input(vae, x).is_contiguous(memory_format=torch.channels_last)
    assert channels_last_input(eager, x) is x
    with torch.no_grad():
        latents, ref_latents = vae.encode(x).latent_dist.mean, eager.encode(x).latent_dist.mean
        frames, ref_frames = vae.decode(latents).sample, eager.decode(ref_latents).sample
    for out, ref in ((latents, ref_latents), (frames, ref_frames)):
        assert ((out - ref).abs().max() / ref.abs().max()).item() <= 1e-4


@pytest.mark.gpu
def test_compiled_ours_denoises_like_eager_diffusers_on_cuda(model_dir, tmp_path, monkeypatch):
    """--unet ours --compile on CUDA (regional compile, whole calls as CUDA graphs, the VAE compiled) against diffusers'
    eager loop (diffusers' VAE too): the same fp16 rounding bounds as the regional-compile test above."""
    from svg3d.denoise import DenoiseConfig, denoise_frame_matrix
    from svg3d.models import compile_zeroscope, load_zeroscope
    from tests.test_denoise import make_matrix

    _cache_in(tmp_path, monkeypatch)
    cuda = torch.device("cuda")
    config = DenoiseConfig(num_inference_steps=3, resample=2)
    fm = make_matrix(3, 4, height=64, width=96)
    eager = denoise_frame_matrix(
        load_zeroscope(str(model_dir), device=cuda), fm.images, fm.masks, "x", replace(config, unet="diffusers", vae_forward="diffusers")
    )
    model = load_zeroscope(str(model_dir), device=cuda)
    assert compile_zeroscope(model, unet="ours") == 2  # our UNet3D and our VAE forward, by regions
    ours = replace(config, unet="ours")
    compiled = denoise_frame_matrix(model, fm.images, fm.masks, "x", ours)
    again = denoise_frame_matrix(model, fm.images, fm.masks, "x", ours)  # CUDA graphs replayed: outputs kept
    scale = eager.latents.abs().max()
    assert (again.latents - compiled.latents).abs().max() <= 1e-3 * scale  # an overwritten output would be O(1)
    assert (compiled.latents - eager.latents).abs().max() <= 1e-2 * scale
    for view, video in eager.videos.items():
        assert (compiled.videos[view] - video).abs().max() <= 4 / 255


# --------------------------------------------------------------------------------------------------
# our UNet3D forward compiled by regions (issue 22): the repeated blocks, dynamic batch, whole calls as CUDA graphs


@pytest.mark.slow  # Inductor builds C++ for each block shape: minutes on 2 cores
def test_regional_compile_equals_eager_and_shares_graphs_between_blocks_and_pass_shapes(tmp_path, monkeypatch):
    """Blocks compiled on their own (``scope="blocks"``): equal to eager within 1e-4 relative (fp32, fused and
    reordered sums); blocks of the same shape share a graph (fewer graphs than compiled blocks); a shape seen
    before compiles nothing (the timestep is a tensor input); another batch of clips of as many frames compiles
    nothing either (the batch is dynamic), and another frame count (a row pass) only the temporal layers'."""
    from torch._dynamo.utils import counters

    from svg3d import unet3d
    from svg3d.tiny_models import TINY_UNET, random_unet

    _cache_in(tmp_path, monkeypatch)
    unet = random_unet(TINY_UNET)
    eager = unet3d.UNet3D.from_diffusers(copy.deepcopy(unet))
    compiled = unet3d.compile_unet(unet, scope="blocks")
    assert compiled._compiled == compiled.run  # no CUDA graphs on a CPU
    regions = [m for m in compiled.modules() if isinstance(m, unet3d._Region)]
    assert regions and all(m._compiled is not None for m in regions)
    temporal = {(type(m), tuple(p.shape for p in m.parameters())) for m in regions if not m.per_image}
    g = torch.Generator().manual_seed(0)
    new_graphs = []
    with torch.no_grad():
        # columns of 4 frames (4 clips, twice), columns again (6 clips), rows of 3 views (8 clips). Every batch has
        # at least 16 images: on a CPU the graphs guard on it (Dynamo asks oneDNN's convolution heuristic, which
        # looks at the batch from 16 on); on CUDA the next test counts the full config's graphs.
        for t, (batch, frames) in zip((801, 301, 501, 501), ((4, 4), (4, 4), (6, 4), (8, 3)), strict=True):
            before = counters["stats"]["unique_graphs"]
            x, context = torch.randn(batch, 4, frames, 8, 12, generator=g), torch.randn(batch, 77, 32, generator=g)
            ref = eager(x, t, context).sample
            out = compiled(x, t, context).sample
            assert ((out - ref).abs().max() / ref.abs().max()).item() <= 1e-4
            new_graphs.append(counters["stats"]["unique_graphs"] - before)
    assert 0 < new_graphs[0] < len(regions)
    assert new_graphs[1:] == [0, 0, len(temporal)]


@pytest.mark.gpu
@torch.no_grad()
def test_regional_compile_with_pass_graphs_on_the_full_config_is_within_fp16_noise(tmp_path, monkeypatch):
    """zeroscope's full config in fp16 on CUDA, compiled by regions with every call replayed as a CUDA graph: at
    each pass shape of the default schedule its error against the fp32 result is at most twice diffusers' own
    eager fp16 error (+1e-3), a replay with new inputs is as good (static buffers refilled, not stale), the
    output of one call survives the next call's replay (it is a copy), and the three pass shapes took 36 graphs
    (27 block shapes with a dynamic batch, the 9 temporal ones again for the rows' frame count)."""
    from torch._dynamo.utils import counters

    from svg3d import unet3d
    from svg3d.tiny_models import FULL_UNET, random_unet

    _cache_in(tmp_path, monkeypatch)
    cuda = torch.device("cuda")
    unet = random_unet(FULL_UNET, device=cuda)
    ref32 = copy.deepcopy(unet)
    unet.half()
    ours = unet3d.compile_unet(unet, scope="blocks")
    assert isinstance(ours._compiled, CudaGraphs)
    g = torch.Generator(cuda).manual_seed(0)
    kept = []
    before = counters["stats"]["unique_graphs"]
    for batch, frames in ((14, 16), (32, 8), (2, 16), (2, 16)):
        x = torch.randn(batch, 4, frames, 40, 72, device=cuda, generator=g)
        context = torch.randn(batch, 77, FULL_UNET["cross_attention_dim"], device=cuda, generator=g)
        truth = ref32(x, 501, encoder_hidden_states=context).sample
        theirs = unet(x.half(), 501, encoder_hidden_states=context.half()).sample
        mine = ours(x.half(), 501, context.half()).sample
        rel = lambda a, b: ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()  # noqa: E731
        assert mine.isfinite().all() and rel(mine, truth) <= 2 * rel(theirs, truth) + 1e-3
        kept.append((mine, mine.clone()))
    assert all(torch.equal(a, b) for a, b in kept)  # later replays did not overwrite earlier outputs
    assert len(ours._compiled.graphs) == 3
    assert counters["stats"]["unique_graphs"] - before == 36
