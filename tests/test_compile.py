"""Regional compilation (``svg3d.models.compile_blocks``): which modules it wraps, and that compiled
blocks compute what the eager ones do for any batch without recompiling."""

from __future__ import annotations

import copy

import pytest
import torch

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
    config = DenoiseConfig(num_inference_steps=3, resample=2)  # temporal and row passes, re-injection
    fm = make_matrix(3, 4, height=64, width=96)
    eager = denoise_frame_matrix(load_zeroscope(str(model_dir), device=cuda), fm.images, fm.masks, "x", config)
    model = load_zeroscope(str(model_dir), device=cuda)
    assert compile_zeroscope(model) > 0
    compiled = denoise_frame_matrix(model, fm.images, fm.masks, "x", config)
    scale = eager.latents.abs().max()
    assert (compiled.latents - eager.latents).abs().max() <= 1e-2 * scale  # fp16 rounding of fused kernels
    for view, video in eager.videos.items():
        assert (compiled.videos[view] - video).abs().max() <= 4 / 255
