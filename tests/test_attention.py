"""The short-sequence attention kernel (svg3d.attention): Triton's interpreter runs it on the CPU here, so the kernel
itself is checked against SDPA without a GPU; the gpu-marked test runs it compiled for a card in fp16."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from svg3d import attention

ROOT = Path(__file__).resolve().parents[1]

# Shapes (clips, frames, sequences, channels): frames 16 (a column), 8 (a row of views), 1, 5 and 32 (padding,
# the largest the kernel takes), channels 64 (zeroscope), 5 and 40 (padded), a last program only partly full.
SHAPES = [(3, 16, 37, 64), (2, 8, 20, 64), (1, 1, 9, 64), (2, 5, 13, 5), (1, 32, 11, 40), (2, 16, 300, 16)]


def strided(shape, dtype=torch.float32, device="cpu", seed=0):
    """q, k, v as views into one (B, F, S, 3, d) tensor, as a fused projection's output: not contiguous."""
    g = torch.Generator(device).manual_seed(seed)
    qkv = torch.randn(*shape[:3], 3, shape[3], generator=g, device=device).to(dtype)
    return qkv[..., 0, :], qkv[..., 1, :], qkv[..., 2, :]


def reference(q, k, v):
    """Attention over dim 1 in float64, written out: softmax(q k^T / sqrt(d)) v per (clip, sequence)."""
    q, k, v = (x.double().transpose(1, 2) for x in (q, k, v))  # B S F d
    weights = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
    return (weights @ v).transpose(1, 2)


INTERPRETED = textwrap.dedent(
    """
    import json, sys, torch
    from svg3d import attention
    from tests.test_attention import SHAPES, reference, strided
    assert attention.INTERPRETED and attention.KERNEL is not None
    report = {}
    for shape in SHAPES:
        q, k, v = strided(shape)
        assert attention.default_impl(q) == "triton"
        out = attention.short_attention(q, k, v)
        sdpa = attention.short_attention(q, k, v, impl="sdpa")
        truth = reference(q, k, v)
        report[str(shape)] = dict(kernel=(out.double() - truth).abs().max().item(),
                                  sdpa=(sdpa.double() - truth).abs().max().item(),
                                  contiguous=out.is_contiguous(), shape=list(out.shape))
    # channels 2 apart: the kernel reads each head's channels as one run, so such inputs go to SDPA
    q, k, v = (torch.randn(2, 16, 9, 64, 2)[..., 0] for _ in range(3))
    report["scattered"] = torch.equal(attention.short_attention(q, k, v), attention.short_attention(q, k, v, impl="sdpa"))
    # the whole tiny UNet, its temporal attention by the kernel against SDPA
    from svg3d.tiny_models import TINY_UNET, random_unet
    from svg3d.unet3d import UNet3D
    unet = UNet3D.from_diffusers(random_unet(TINY_UNET))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 4, 8, 12, generator=g)
    context = torch.randn(2, 5, TINY_UNET["cross_attention_dim"], generator=g)
    with torch.no_grad():
        a = unet.set_temporal_attention(None)(x, 501, context).sample
        b = unet.set_temporal_attention("sdpa")(x, 501, context).sample
    report["unet"] = ((a - b).abs().max() / b.abs().max()).item()
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def interpreted():
    """Every check above run in one process under Triton's interpreter (it is chosen when Triton is imported)."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", INTERPRETED], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("shape", SHAPES)
def test_the_kernel_equals_attention_written_out(interpreted, shape):
    """float32 inputs (the kernel's products in IEEE float32 then): within float32 rounding of the float64 truth,
    and no farther than 4x SDPA's own float32 error (at least 1e-6: SDPA may be exact to the last bit)."""
    r = interpreted[str(shape)]
    assert r["shape"] == list(shape) and r["contiguous"]
    assert r["kernel"] <= max(4 * r["sdpa"], 1e-6), r


def test_inputs_whose_channels_are_not_contiguous_go_to_sdpa(interpreted):
    assert interpreted["scattered"]


def test_the_tiny_unet_with_the_kernel_equals_it_with_sdpa(interpreted):
    assert interpreted["unet"] <= 1e-5


def test_where_the_kernel_does_not_run():
    q, k, v = strided((2, 16, 9, 64))
    if not attention.INTERPRETED:
        assert attention.default_impl(q) == "sdpa"  # a CPU tensor: torch's SDPA
    assert attention.kernel_fits(16, 64) and attention.kernel_fits(32, 128)
    assert not attention.kernel_fits(33, 64) and not attention.kernel_fits(16, 256)
    out = attention.short_attention(q, k, v, impl="sdpa")
    assert out.is_contiguous() and (out.double() - reference(q, k, v)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="attention impl 'flash': expected one of triton, sdpa"):
        attention.short_attention(q, k, v, impl="flash")


def test_sdpa_in_chunks_equals_one_call(monkeypatch):
    """More sequences than MAX_SDPA_HEADS go through SDPA in several calls (CUDA's grid limit), the same values."""
    q, k, v = strided((2, 4, 45, 8))
    whole = attention.short_attention(q, k, v, impl="sdpa")
    monkeypatch.setattr(attention, "MAX_SDPA_HEADS", 7)  # 7 chunks, the last short
    assert torch.equal(attention.short_attention(q, k, v, impl="sdpa"), whole)


@pytest.mark.gpu
@torch.no_grad()
def test_fp16_kernel_on_cuda_eager_and_compiled():
    """fp16 on a card: the kernel within fp16 noise of the float64 truth (no farther than twice SDPA's error plus
    one fp16 step of the output's scale), eagerly and inside torch.compile with a dynamic batch (as the UNet's
    regional compile calls it)."""
    assert attention.KERNEL is not None
    compiled = torch.compile(lambda q, k, v: attention.short_attention(q, k, v) * 1.0, dynamic=True)
    for shape in [(14, 16, 2880 * 5, 64), (32, 8, 720 * 10, 64), (2, 16, 180 * 20, 64), (3, 5, 77, 40)]:
        q, k, v = strided(shape, torch.float16, "cuda")
        assert attention.default_impl(q) == "triton"
        truth = reference(q, k, v)
        sdpa = (attention.short_attention(q, k, v, impl="sdpa").double() - truth).abs().max().item()
        bound = 2 * sdpa + truth.abs().max().item() * 2**-10
        assert (attention.short_attention(q, k, v).double() - truth).abs().max().item() <= bound, shape
        assert (compiled(q, k, v).double() - truth).abs().max().item() <= bound, shape
