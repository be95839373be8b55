"""Our own forward pass of the SD VAE (diffusers' ``AutoencoderKL``), channels-last throughout (issue 22).

The denoiser decodes the predicted clean latents of every active view at every step and encodes the composite
back (DESIGN.md §5, step 2): ~2,800 frames each way per clip, about 41 s of an eager clip on an H200 (estimated
from profile_denoise's 204 ms per 16-frame round trip on an H100). diffusers' VAE runs NCHW: cuDNN converts each
convolution's input to NHWC and back, torch's GroupNorm and the residual adds run on mixed layouts, and a quarter
of the round trip's kernel time was those conversions (bench/results/h100-2026-12-06/profile.log).

``VAE.from_diffusers(vae)`` reads the parameters of any ``AutoencoderKL`` of SD's architecture (down/up encoder
blocks of ``ResnetBlock2D``, a mid block with or without its attention, the tests' tiny one and SD's) and computes
what its ``encode`` and ``decode`` compute, with every activation between layers one contiguous ``(N, H, W, C)``
tensor, reusing ``svg3d.unet3d``'s layers:

- resnets are ``unet3d._Resnet`` (no time embedding): channels-last convolutions and the grouped GroupNorm on the
  NHWC data in place (``unet3d.group_norm``, ``unet3d.DEFAULT_GROUP_NORM`` per device, as the UNet);
- the mid block's attention (one head over the pixels of each image) takes q, k and v from one fused projection
  as strided views and runs ``scaled_dot_product_attention`` on them;
- the encoder's downsamplers pad right and bottom by one (diffusers' ``padding=0`` convention) and convolve with
  stride 2; the decoder's upsamplers repeat each pixel 2 x 2 and convolve;
- ``quant_conv`` / ``post_quant_conv`` (1 x 1) are matrix products over the channel axis.

Numerics: those of diffusers up to float rounding (fp32 on the CPU: tested against ``AutoencoderKL`` on the tiny
model with and without the mid attention). The posterior's mean and standard deviation are returned in fp32 (diffusers
computes them in the model's dtype, then the loop casts them to fp32). ``compile`` compiles the repeated blocks
(resnets, the attention; ``unet3d._Region``: one graph per block shape, its batch dynamic so that every chunk size of
frames shares it). The SVD-XT temporal decoder is not covered: it keeps diffusers' forward.
"""

from __future__ import annotations

import logging
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from . import unet3d
from .checks import InputError
from .config import UNET_KINDS
from .unet3d import _Conv, _Linear1x1, _Norm, _Region, _require, _Resnet, upsample_nearest

log = logging.getLogger(__name__)


class _MidAttention(_Region):
    """diffusers' VAE mid-block Attention: GroupNorm, one-head self-attention over each image's pixels, residual."""

    def __init__(self, attn: nn.Module):
        super().__init__()
        _require(type(attn).__name__ == "Attention", f"a {type(attn).__name__} mid-block attention")
        proc = type(attn.processor).__name__
        _require(proc in ("AttnProcessor2_0", "AttnProcessor"), f"attention processor {proc}")
        _require(attn.group_norm is not None and attn.spatial_norm is None, "a mid attention without its GroupNorm")
        for name in ("norm_q", "norm_k", "norm_cross"):
            _require(getattr(attn, name, None) in (None, False), f"attention with {name}")
        _require(attn.residual_connection and attn.rescale_output_factor == 1, "a mid attention without its residual")
        _require(attn.scale_qk and not attn.is_cross_attention, "this mid attention")
        self.heads = attn.heads
        self.norm = _Norm(attn.group_norm)
        q, k, v = attn.to_q, attn.to_k, attn.to_v
        self.register_buffer("qkv", torch.cat([q.weight, k.weight, v.weight]).detach())  # 3C C: one GEMM
        has_bias = q.bias is not None and k.bias is not None and v.bias is not None
        _require(has_bias or (q.bias is None and k.bias is None and v.bias is None), "mixed q/k/v biases")
        self.register_buffer("qkv_bias", torch.cat([q.bias, k.bias, v.bias]).detach() if has_bias else None)
        self.out = attn.to_out[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``(N, H, W, C)`` -> ``(N, H, W, C)``."""
        n, h, w, c = x.shape
        tokens = self.norm(x).reshape(n, h * w, c)  # N P C (a view)
        qkv = F.linear(tokens, self.qkv, self.qkv_bias).unflatten(-1, (3, self.heads, -1))  # N P 3 heads d
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # N heads P d (strided views)
        out = F.scaled_dot_product_attention(q, k, v)  # N heads P d
        return x + self.out(out.transpose(1, 2).reshape(n, h * w, c)).reshape(n, h, w, c)


class _Mid(nn.Module):
    """UNetMidBlock2D without time embedding: resnet, then (attention, resnet) pairs."""

    def __init__(self, block: nn.Module):
        super().__init__()
        _require(type(block).__name__ == "UNetMidBlock2D", f"a {type(block).__name__} mid block")
        self.resnets = nn.ModuleList(_Resnet(r) for r in block.resnets)
        self.attentions = nn.ModuleList(_MidAttention(a) if a is not None else nn.Identity() for a in block.attentions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x, None)
        for attn, resnet in zip(self.attentions, self.resnets[1:], strict=True):
            x = resnet(attn(x), None)
        return x


def _sampler_conv(samplers, kind: str) -> _Conv | None:
    """The convolution of a block's single down- or upsampler (None if it has none)."""
    if samplers is None:
        return None
    _require(
        len(samplers) == 1 and samplers[0].use_conv and getattr(samplers[0], "norm", None) is None,
        f"this {kind}sampler",
    )
    s = samplers[0]
    if kind == "down":
        _require(s.padding == 0, "a downsampler with symmetric padding")  # SD's VAE: pad right/bottom, then conv
        return _Conv(s.conv)
    _require(s.interpolate and not s.use_conv_transpose, "this upsampler")
    return _Conv(s.conv if s.name == "conv" else s.Conv2d_0)


class _Coder(nn.Module):
    """The encoder or the decoder: conv_in, (down blocks, mid) or (mid, up blocks), GroupNorm + SiLU, conv_out."""

    def __init__(self, coder: nn.Module, kind: str):
        super().__init__()
        self.kind = kind
        self.conv_in, self.conv_out = _Conv(coder.conv_in), _Conv(coder.conv_out)
        blocks = coder.down_blocks if kind == "encoder" else coder.up_blocks
        expected = "DownEncoderBlock2D" if kind == "encoder" else "UpDecoderBlock2D"
        for b in blocks:
            _require(type(b).__name__ == expected, f"a {type(b).__name__} in the VAE's {kind}")
        self.blocks = nn.ModuleList(nn.ModuleList(_Resnet(r) for r in b.resnets) for b in blocks)
        way = "down" if kind == "encoder" else "up"
        self.samplers = [_sampler_conv(getattr(b, f"{way}samplers", None), way) for b in blocks]
        self.sampler_convs = nn.ModuleList(c for c in self.samplers if c is not None)  # registered for .modules()
        self.mid = _Mid(coder.mid_block)
        _require(isinstance(coder.conv_norm_out, nn.GroupNorm), "a VAE decoder with a spatial norm")
        self.norm_out = _Norm(coder.conv_norm_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, H, W, Cin)`` -> ``(N, H', W', Cout)``, channels-last."""
        x = self.conv_in(x)
        if self.kind == "decoder":
            x = self.mid(x)
        for resnets, sampler in zip(self.blocks, self.samplers, strict=True):
            for resnet in resnets:
                x = resnet(x, None)
            if sampler is not None and self.kind == "encoder":
                x = sampler(F.pad(x, (0, 0, 0, 1, 0, 1)))  # N H W C: one zero column right, one row below
            elif sampler is not None:
                x = sampler(upsample_nearest(x, (2 * x.shape[1], 2 * x.shape[2])))
        if self.kind == "encoder":
            x = self.mid(x)
        return self.conv_out(self.norm_out(x, silu=True))


class VAE(nn.Module):
    """The SD VAE's encoder and decoder on channels-last activations; built with ``from_diffusers``."""

    def __init__(self, vae: nn.Module, *, group_norm: str | None = None):
        super().__init__()
        _require(type(vae).__name__ == "AutoencoderKL", f"a {type(vae).__name__} VAE")
        _require(not vae.use_tiling and not vae.use_slicing, "a VAE with tiling or slicing enabled")
        param = next(vae.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.compile_mode: str | None = None  # how ``compile`` compiled it (``vae_for`` compiles a rebuild the same way)
        self.encoder, self.decoder = _Coder(vae.encoder, "encoder"), _Coder(vae.decoder, "decoder")
        self.quant = _Linear1x1(vae.quant_conv) if vae.quant_conv is not None else None
        self.post_quant = _Linear1x1(vae.post_quant_conv) if vae.post_quant_conv is not None else None
        self.set_group_norm(group_norm or unet3d.DEFAULT_GROUP_NORM.get(self.device.type, "torch"))

    def set_group_norm(self, impl: str) -> VAE:
        """Run every GroupNorm with ``impl`` (``unet3d.GROUP_NORM``) from now on; returns ``self``."""
        if impl not in unet3d.GROUP_NORM:
            raise ValueError(f"group_norm {impl!r}: expected one of {', '.join(unet3d.GROUP_NORM)}")
        for m in self.modules():
            if isinstance(m, _Norm):
                m.impl = impl
        return self

    @classmethod
    def from_diffusers(cls, vae: nn.Module, *, group_norm: str | None = None) -> VAE:
        """Our forward over ``vae``'s parameters (a diffusers ``AutoencoderKL``, eval mode assumed).

        Converts ``vae``'s convolution weights to channels-last memory format in place (same values; diffusers'
        forward computes the same with them). Raises ``InputError`` naming the part this forward does not cover.
        """
        with torch.no_grad():
            for m in vae.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)
        return cls(vae, group_norm=group_norm).eval()

    def encode(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames ``(N, 3, H, W)`` in [-1, 1] -> the posterior's mean and standard deviation ``(N, c, H/8, W/8)`` fp32,
        unscaled, as ``AutoencoderKL.encode(frames).latent_dist``'s ``mean`` and ``std`` (channels-last views)."""
        x = frames.to(self.dtype).permute(0, 2, 3, 1).contiguous()  # N H W 3 (a small copy)
        moments = self.encoder(x)  # N h w 2c
        if self.quant is not None:
            moments = self.quant(moments)
        mean, logvar = moments.float().chunk(2, dim=-1)  # as DiagonalGaussianDistribution, in fp32
        std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
        return mean.permute(0, 3, 1, 2), std.permute(0, 3, 1, 2)  # N c h w (views)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled latents ``(N, c, h, w)`` -> frames ``(N, 3, 8h, 8w)`` in the model's dtype (about [-1, 1]), as
        ``AutoencoderKL.decode(z).sample`` (a channels-last view)."""
        x = z.to(self.dtype).permute(0, 2, 3, 1).contiguous()  # N h w c (a small copy)
        if self.post_quant is not None:
            x = self.post_quant(x)
        return self.decoder(x).permute(0, 3, 1, 2)

    def compile(self, mode: str = "default") -> VAE:
        """Compile the repeated blocks in place (regional, as ``unet3d.UNet3D.compile(scope="blocks")``): every resnet
        and the mid attention, one graph per block shape shared by every block of that shape, static but for the batch
        (any number of frames per call uses it). No CUDA graphs: a VAE call is a few large kernels. Returns ``self``."""
        import torch._dynamo

        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        for m in self.modules():
            if isinstance(m, _Region):
                m._compiled = torch.compile(m.forward, mode=mode, dynamic=False, fullgraph=True)
        self.compile_mode = mode
        return self


_OURS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # diffusers AutoencoderKL -> our VAE over its weights
_UNCOVERED: weakref.WeakSet = weakref.WeakSet()  # AutoencoderKLs whose parts this forward does not cover


def vae_for(vae: nn.Module, kind: str) -> VAE | None:
    """Our forward over ``vae``'s parameters for ``DenoiseConfig.vae_forward`` ``"ours"`` (built once per module, again
    if its device or dtype changed since: ``--offload`` moves it in and out for every use; a compiled one is compiled
    again, which Inductor's cache answers), or None: diffusers' own forward (``"diffusers"``, or a VAE this forward
    does not cover, such as the SVD-XT temporal decoder)."""
    if kind not in UNET_KINDS:
        raise ValueError(f"vae_forward {kind!r}: expected one of {', '.join(UNET_KINDS)}")
    if kind == "diffusers" or type(vae).__name__ != "AutoencoderKL" or vae in _UNCOVERED:
        return None
    ours = _OURS.get(vae)
    param = next(vae.parameters())
    if ours is None or (ours.device, ours.dtype) != (param.device, param.dtype):
        mode = ours.compile_mode if ours is not None else None
        try:
            ours = _OURS[vae] = VAE.from_diffusers(vae)
            if mode is not None:
                ours.compile(mode)
        except InputError as e:  # an AutoencoderKL variant this forward does not cover: diffusers' runs it
            log.warning("our VAE forward does not cover this AutoencoderKL, diffusers' runs it: %s", e)
            _UNCOVERED.add(vae)
            return None
        log.info("our VAE forward over %s (%s, %s)", type(vae).__name__, param.device, param.dtype)
    return ours


def compile_ours(vae: nn.Module, *, cache: bool = True) -> int:
    """Compile our forward over ``vae`` by regions (``VAE.compile``), in place; returns how many forwards (1), or 0
    for a VAE this forward does not cover. ``cache``: Inductor's caches in the user cache folder
    (``unet3d.use_compile_cache``)."""
    ours = vae_for(vae, "ours")
    if ours is None:
        return 0
    if cache:
        unet3d.use_compile_cache()
    ours.compile()
    return 1
