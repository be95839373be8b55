"""Our own forward pass of zeroscope's UNet3D, channels-last from the first convolution to the last (issue 13).

``UNet3D.from_diffusers(unet)`` reads the parameters of any diffusers ``UNet3DConditionModel`` (zeroscope_v2_576w,
the tests' tiny one, any checkpoint of that architecture) and computes what its forward computes, with the same
contract: ``ours(sample (B, c, F, h, w), t, encoder_hidden_states (B, L, D)).sample`` is ``(B, c, F, h, w)``, so
``denoise._Denoiser.cfg_eps`` calls either (``DenoiseConfig.unet``).

Why: diffusers keeps activations ``(B*F, C, H, W)`` and permutes them into contiguous copies around every temporal
layer and transformer; on an H100 a third of an eager call was those strided copies and cuDNN's NCHW <-> NHWC
conversions (issue 13). Here every activation between layers is one contiguous ``(N, H, W, C)`` tensor,
N = B * F (batch-major: the F frames of a clip are consecutive), and each layer reads the view it needs:

- 3x3 convolutions: the NCHW-shaped view ``x.permute(0, 3, 1, 2)`` of the NHWC data with channels-last weights,
  which cuDNN and oneDNN run natively; the output is channels-last again, so permuting back is free;
- resnets' time embedding: projected per image ``(N, C)`` (each its clip's) and broadcast over the pixels;
- the temporal convolution (kernel 3 x 1 x 1 over frames) without a permuted copy, three ways
  (``TEMPORAL_CONV``): ``"conv2d"`` a (3, 1) convolution over the channels-last view ``(B, C, F, H*W)``;
  ``"conv3d"`` the Conv3d itself over the ``channels_last_3d`` view ``(B, C, F, H, W)``; ``"gemm"`` one GEMM of
  every frame with the three taps stacked, then shifted adds over the frame axis;
- the spatial transformer: tokens ``(N, H*W, C)`` are a view; self-attention reads q, k, v as strided views of
  one fused projection; cross-attention attends to the text per image ``(N, L, D)``, as diffusers does (a clip's
  frames could share one query sequence against the clip's text, 0.5 % fewer FLOPs, but then the block would
  depend on the frame count, and a regional compile could not share its graph between pass shapes);
- temporal attention: token-wise layers (norms, projections, feed-forward) do not care about token order, so
  they run on ``(B, F, H*W, C)`` as stored; only attention needs sequences over frames: ``attention.short_attention``
  reads them from the view ``(B, F, H*W*heads, d)`` and writes its output in that layout (on CUDA one Triton kernel
  for such short sequences, where fused attention kernels waste most of their tiles; SDPA elsewhere);
- GroupNorm (+ SiLU) normalises the NHWC tensor through a grouped view, statistics in fp32; the temporal
  layers' GroupNorm takes its statistics over the clip's frames too (as diffusers' 5-D GroupNorm does).
  Fusing norm, activation and the elementwise tails into few kernels is left to Inductor (``compile_unet``);
  eagerly they are plain torch ops, which is what runs on a CPU.

Numerics are those of diffusers up to float rounding (fp32 on the CPU: within 1e-4 relative, tested for the three
pass shapes of the schedule at the tiny and the full zeroscope config). Weights are diffusers' own tensors:
``from_diffusers`` turns its convolution weights into channels-last memory format in place (same values, and
diffusers' forward still computes the same), which every variant above reads as views. The one copy is the
fused q/k/v of the spatial self-attentions (``UNet3D.extra_bytes``: 74 MB of zeroscope's 2.8 GB in fp16).

``compile_unet`` compiles the repeated blocks (resnets, temporal convolutions, transformers: regional compile, one
graph per block shape that every block of that shape shares, its batch dynamic so that every pass shape uses it;
the temporal layers one per frame count: ``_Region``) and, on CUDA, replays
each whole call as one CUDA graph per input shape (``graphs.CudaGraphs``); ``scope="whole"`` compiles the whole forward
per shape instead (issue 14's way: faster calls are not bought back by its ~8-minute cold compile). Inductor's
caches live in a folder per machine and torch version (``compile_cache_dir``).
"""

from __future__ import annotations

import logging
import math
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import attention
from .checks import InputError, check_shape
from .config import UNET_KINDS
from .graphs import CudaGraphs

log = logging.getLogger(__name__)

TEMPORAL_CONV = ("conv2d", "conv3d", "gemm")
# CPU (2 cores, oneDNN), full-size zeroscope channels at 40x72, 16 frames: conv2d was fastest (README); on an
# H200 (fp16, bench/bench_unet_call.py) conv2d and conv3d were within 1 % of each other and the GEMMs 4-6 % slower.
DEFAULT_TEMPORAL_CONV = "conv2d"
GROUP_NORM = ("torch", "grouped")  # see group_norm
# Per device type (others: torch's). CUDA: "grouped", the default stereo schedule eagerly on an H200 (fp16, 4 steps
# extrapolated, bench/results/h200-2026-12-07): 183.2 s/clip against 223.7 with torch's, whose CUDA kernel copies
# the NHWC data to NCHW and back (diffusers' UNet: 208.9). CPU: torch's has a native channels-last kernel.
DEFAULT_GROUP_NORM = {"cuda": "grouped", "cpu": "torch"}
COMPILE_SCOPES = ("blocks", "whole")  # see UNet3D.compile
# Issue 22: the whole forward per shape cost 457 s of cold compile on an H100 and then ran the schedule in 172 s/clip;
# the regions with static shapes 194 s cold, 25 s warm and 152 s/clip on an H200 (bench/results/h200-2026-12-07;
# diffusers eager was 6 % faster on that H200 than on the H100). Regions with a dynamic batch since build 36 graphs
# where those built 81.
DEFAULT_COMPILE_SCOPE = "blocks"


@dataclass
class UNet3DOutput:
    """What ``UNet3D`` returns, as diffusers' ``UNet3DConditionOutput``: ``sample`` ``(B, c, F, h, w)``."""

    sample: torch.Tensor


# --------------------------------------------------------------------------------------------------
# pure functions on channels-last activations


def group_norm(
    x: torch.Tensor,
    groups: int,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    *,
    frames: int = 1,
    silu: bool = False,
    impl: str,
) -> torch.Tensor:
    """GroupNorm (then SiLU) of channels-last ``x`` ``(N, H, W, C)``; same shape and dtype, contiguous.

    Statistics per group of C / ``groups`` channels over each image, or with ``frames`` > 1 over each clip of
    ``frames`` consecutive images (N = clips * frames), as a GroupNorm of the 5-D ``(clips, C, frames, H, W)``.
    ``impl`` (``GROUP_NORM``): ``"torch"`` runs torch's GroupNorm on the channels-last NCHW / NCDHW view (a native
    channels-last kernel on the CPU; on CUDA torch makes the input contiguous first, a layout copy);
    ``"grouped"`` reads the NHWC data in place as ``(clips, frames*H*W, C)``: statistics per channel (fp32 data:
    Welford's; fp16: the sum and the sum of squares accumulated in fp32 by reductions that cast as they load),
    combined per group exactly (mean of means; mean of variances plus the variance of the means), give each clip's
    channel a scale and a shift, applied by one multiply-add in the input's dtype (then SiLU in place): two or three
    reads and one write of the data where torch's CUDA kernel copies it to NCHW and back (profile_denoise on an
    H100: 336 layout copies per UNet call, a quarter of its kernel time). fp32 on a CPU: equal to torch's within
    float32 rounding (tested against float64); fp16: the scale and shift rounded to fp16, within fp16 noise.
    """
    n, h, w, c = x.shape
    if impl == "torch":
        if frames == 1:
            y = F.group_norm(x.permute(0, 3, 1, 2), groups, weight, bias, eps).permute(0, 2, 3, 1)
        else:
            view = x.reshape(n // frames, frames, h, w, c).permute(0, 4, 1, 2, 3)  # B C F H W, channels_last_3d
            y = F.group_norm(view, groups, weight, bias, eps).permute(0, 2, 3, 4, 1).reshape(n, h, w, c)
        y = y.contiguous()  # a no-op where torch kept channels-last
        return F.silu(y, inplace=True) if silu else y
    if impl != "grouped":
        raise ValueError(f"group norm impl {impl!r}: expected one of {', '.join(GROUP_NORM)}")
    clips, cg = n // frames, c // groups
    pixels = x.reshape(clips, frames * h * w, c)  # clip, pixels, channel: a view
    # Per-channel statistics first: a reduction over the pixel axis with the channels contiguous, which CUDA's
    # reduction kernel reads coalesced (a reduction of the grouped view (clips, P, groups, C/groups) over two
    # non-adjacent axes does not); each group's mean and variance then combine its channels' exactly.
    if x.dtype in (torch.float16, torch.bfloat16):  # var_mean would round to 16 bits: sums in fp32
        count = frames * h * w
        mean_c = pixels.sum(dim=1, dtype=torch.float32) / count  # (clips, C)
        square_c = torch.linalg.vector_norm(pixels, 2, dim=1, dtype=torch.float32).square() / count
        var_c = (square_c - mean_c.square()).clamp_min(0)  # cancellation far below fp16's rounding
    else:  # fp32 / fp64: Welford's statistics, exact to the dtype's rounding
        var_c, mean_c = torch.var_mean(pixels, dim=1, correction=0)
    mean_c, var_c = mean_c.view(clips, groups, cg), var_c.view(clips, groups, cg)
    mean = mean_c.mean(dim=2, keepdim=True)  # (clips, groups, 1)
    var = (var_c + (mean_c - mean).square()).mean(dim=2, keepdim=True)  # within-channel + between-channel
    rstd = torch.rsqrt(var + eps)
    scale = weight.to(rstd.dtype).view(groups, cg) * rstd  # (clips, groups, C/groups)
    shift = bias.to(rstd.dtype).view(groups, cg) - mean * scale
    y = torch.addcmul(shift.to(x.dtype).view(clips, 1, c), pixels, scale.to(x.dtype).view(clips, 1, c))
    y = y.view(n, h, w, c)
    return F.silu(y, inplace=True) if silu else y


def conv2d_nhwc(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, padding: int):
    """A 2-D convolution of channels-last ``x`` ``(N, H, W, Cin)`` -> ``(N, H', W', Cout)`` (contiguous).

    ``weight`` ``(Cout, Cin, k, k)`` in ``channels_last`` memory format: the NCHW-shaped view of the NHWC data is
    what cuDNN/oneDNN run natively, and their channels-last output permuted back is the NHWC tensor itself.
    """
    y = F.conv2d(x.permute(0, 3, 1, 2), weight, bias, stride, padding)  # N Cout H' W', channels-last strides
    return y.permute(0, 2, 3, 1).contiguous()  # a no-op when the backend kept channels-last


def temporal_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, frames: int, variant: str) -> torch.Tensor:
    """Convolution over frames (diffusers' Conv3d (3, 1, 1), zero padding) of ``x`` ``(B*F, H, W, C)``.

    ``weight`` is the Conv3d's ``(Cout, Cin, 3, 1, 1)`` in ``channels_last_3d`` memory format (storage order
    Cout, tap, Cin), which each variant reads as a view. Output ``(B*F, H, W, Cout)``, contiguous.
    """
    n, h, w, c = x.shape
    clips = n // frames
    if variant == "conv2d":
        view = x.reshape(clips, frames, h * w, c).permute(0, 3, 1, 2)  # B C F HW, channels-last strides
        y = F.conv2d(view, weight[..., 0], bias, padding=(1, 0))  # B Cout F HW; the weight is channels-last
        return y.permute(0, 2, 3, 1).reshape(n, h, w, -1)
    if variant == "conv3d":
        view = x.reshape(clips, frames, h, w, c).permute(0, 4, 1, 2, 3)  # B C F H W, channels_last_3d strides
        y = F.conv3d(view, weight, bias, padding=(1, 0, 0))
        return y.permute(0, 2, 3, 4, 1).reshape(n, h, w, -1)
    # gemm: taps[b, f, p, o, k] = (W_k x[b, f, p])_o; out[f] = taps_0[f - 1] + taps_1[f] + taps_2[f + 1] + bias
    cout = weight.shape[0]
    stacked = weight.permute(0, 2, 3, 4, 1).reshape(cout * 3, c)  # rows (o, k): the storage order, a view
    taps = F.linear(x.reshape(clips, frames, h * w, c), stacked).unflatten(-1, (cout, 3))  # B F HW Cout 3
    out = taps[..., 1] + bias
    out[:, 1:] += taps[:, :-1, ..., 0]
    out[:, :-1] += taps[:, 1:, ..., 2]
    return out.reshape(n, h, w, cout)


def upsample_nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour upsampling of ``(N, H, W, C)`` to ``size`` = (H', W'), as ``F.interpolate(mode="nearest")``."""
    n, h, w, c = x.shape
    if size == (2 * h, 2 * w):  # every pixel repeated 2 x 2: exactly what nearest with scale 2 picks
        return x[:, :, None, :, None, :].expand(n, h, 2, w, 2, c).reshape(n, 2 * h, 2 * w, c)
    y = F.interpolate(x.permute(0, 3, 1, 2), size=size, mode="nearest")  # odd sizes: the skip's size
    return y.permute(0, 2, 3, 1).contiguous()


def timestep_embedding(t: torch.Tensor, dim: int, *, flip_sin_to_cos: bool, shift: float) -> torch.Tensor:
    """Sinusoidal embedding ``(B, dim)`` fp32 of timesteps ``(B,)`` (DDPM's; max period 10000)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - shift))
    angles = t.float()[:, None] * freqs[None]
    parts = (torch.cos(angles), torch.sin(angles)) if flip_sin_to_cos else (torch.sin(angles), torch.cos(angles))
    emb = torch.cat(parts, dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


# --------------------------------------------------------------------------------------------------
# layers, built from diffusers' modules (their parameters, not their code)


def _unsupported(what: str) -> InputError:
    return InputError(f"--unet ours does not support {what} (this UNet3D variant); use --unet diffusers")


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise _unsupported(what)


class _Norm(nn.Module):
    """GroupNorm parameters (shared with diffusers) and settings."""

    impl = DEFAULT_GROUP_NORM  # set for the whole model by UNet3D

    def __init__(self, gn: nn.GroupNorm):
        super().__init__()
        _require(isinstance(gn, nn.GroupNorm) and gn.affine, f"a {type(gn).__name__} where a GroupNorm was expected")
        self.weight, self.bias = gn.weight, gn.bias
        self.groups, self.eps = gn.num_groups, gn.eps

    def forward(self, x: torch.Tensor, *, frames: int = 1, silu: bool = False) -> torch.Tensor:
        return group_norm(x, self.groups, self.weight, self.bias, self.eps, frames=frames, silu=silu, impl=self.impl)


class _Conv(nn.Module):
    """A square 2-D convolution on NHWC, reading diffusers' weight (channels-last since ``from_diffusers``)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        k = conv.kernel_size[0]
        _require(
            conv.kernel_size == (k, k)
            and conv.stride[0] == conv.stride[1]
            and conv.padding in ((k // 2, k // 2), (0, 0))
            and conv.dilation == (1, 1)
            and conv.groups == 1
            and conv.padding_mode == "zeros",
            f"convolution {conv}",
        )
        _require(conv.weight.is_contiguous(memory_format=torch.channels_last), "a conv weight not in channels-last")
        self.weight, self.bias = conv.weight, conv.bias  # shared; made channels-last by UNet3D.from_diffusers
        self.stride, self.padding = conv.stride[0], conv.padding[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d_nhwc(x, self.weight, self.bias, self.stride, self.padding)


class _Linear1x1(nn.Module):
    """A linear layer, or a 1x1 convolution, applied to the last (channel) axis; weights shared."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        if isinstance(layer, nn.Conv2d):
            _require(layer.kernel_size == (1, 1) and layer.stride == (1, 1) and layer.groups == 1, f"conv {layer}")
            self.weight = layer.weight  # Cout Cin 1 1, read as Cout Cin below (a view)
        else:
            _require(isinstance(layer, nn.Linear), f"a {type(layer).__name__} projection")
            self.weight = layer.weight
        self.bias = layer.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.reshape(self.weight.shape[0], -1), self.bias)


class _Region(nn.Module):
    """A repeated block that ``compile_unet`` compiles on its own (regional compile, ``UNet3D.compile``).

    Its compiled forward is shared by every block of the same shape (the compiled code is the class's; weights are
    graph inputs, not constants), static in every size but the batch, so that one graph serves every pass shape
    of the schedule (issue 22: 81 static graphs for its three pass shapes, 36 with the batch dynamic):

    - ``per_image`` blocks (resnets, spatial transformers) treat each image alone: every input is ``(N, ...)``
      with N = B*F marked dynamic, and nothing else (not the frame count) reaches the graph;
    - the temporal layers mix a clip's frames: their graph takes the activations as clips ``(B, F, H, W, C)``,
      B dynamic and F static (one graph per frame count: 16 for columns, the view count for rows), and works on
      the images ``(B*F, ...)`` inside, so N is a product of symbols, never divided (marking N itself dynamic makes
      every ``N // F`` a new symbolic expression: minutes per block, seen on torch 2.14).
    """

    per_image = True
    _compiled = None  # torch.compile of forward (per image) or of _clips (temporal), set by UNet3D.compile

    def __call__(self, x: torch.Tensor, *args):
        if self._compiled is None:
            return super().__call__(x, *args)
        if self.per_image:
            for a in (x, *args):
                _dynamic_batch(a)
            return self._compiled(x, *args)
        *rest, frames = args
        clips = _dynamic_batch(x.unflatten(0, (-1, frames)))  # B F H W C: a view
        return self._compiled(clips, *rest, frames)

    def _clips(self, clips: torch.Tensor, *args) -> torch.Tensor:
        """The compiled entry of a temporal layer: clips ``(B, F, H, W, C)`` -> images ``(B*F, H, W, C)``."""
        return self.forward(clips.flatten(0, 1), *args)


def _dynamic_batch(x: torch.Tensor | None) -> torch.Tensor | None:
    """Mark ``x``'s first (batch) dimension dynamic for a compiled region; a batch of one stays static (Dynamo
    specialises sizes 0 and 1), so it gets its own graph."""
    if x is not None and x.shape[0] > 1:
        torch._dynamo.mark_dynamic(x, 0)
    return x


class _Resnet(_Region):
    """diffusers' ResnetBlock2D ("default" time embedding or none, as the VAE's, pre-norm, SiLU) on NHWC."""

    def __init__(self, block: nn.Module):
        super().__init__()
        _require(type(block).__name__ == "ResnetBlock2D", f"a {type(block).__name__} resnet")
        plain = block.time_embedding_norm == "default" or (
            block.time_emb_proj is None and block.time_embedding_norm != "scale_shift"
        )  # without a time embedding diffusers' "group" norm (the VAE decoder's) is the plain norm2
        _require(
            plain and block.upsample is None and block.downsample is None,
            "resnets with scale-shift time embedding or up/down sampling",
        )
        _require(isinstance(block.nonlinearity, nn.SiLU) and not block.skip_time_act, "resnets without SiLU")
        self.norm1, self.conv1 = _Norm(block.norm1), _Conv(block.conv1)
        self.norm2, self.conv2 = _Norm(block.norm2), _Conv(block.conv2)
        self.time = _Linear1x1(block.time_emb_proj) if block.time_emb_proj is not None else None
        self.shortcut = None
        if block.conv_shortcut is not None:
            k = block.conv_shortcut.kernel_size
            self.shortcut = _Linear1x1(block.conv_shortcut) if k == (1, 1) else _Conv(block.conv_shortcut)
        self.scale = float(block.output_scale_factor)  # diffusers has int 1 in the mid block: one graph more

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """x ``(N, H, W, Cin)``, temb ``(N, T)`` (each image its clip's) -> ``(N, H, W, Cout)``."""
        h = self.conv1(self.norm1(x, silu=True))
        if self.time is not None:
            h = h + self.time(F.silu(temb))[:, None, None, :]  # N C, broadcast over the pixels
        h = self.conv2(self.norm2(h, silu=True))
        skip = x if self.shortcut is None else self.shortcut(x)
        out = skip + h
        return out if self.scale == 1 else out / self.scale


class _TemporalConv(_Region):
    """diffusers' TemporalConvLayer: four (GroupNorm over the clip, SiLU, conv over frames), plus the identity."""

    per_image = False

    def __init__(self, layer: nn.Module, variant: str):
        super().__init__()
        _require(type(layer).__name__ == "TemporalConvLayer", f"a {type(layer).__name__} temporal layer")
        self.variant = variant
        self.norms = nn.ModuleList()
        for i, seq in enumerate((layer.conv1, layer.conv2, layer.conv3, layer.conv4)):
            norm, conv = seq[0], seq[-1]
            _require(isinstance(conv, nn.Conv3d) and conv.kernel_size == (3, 1, 1), f"temporal conv {conv}")
            _require(conv.padding == (1, 0, 0) and conv.stride == (1, 1, 1), f"temporal conv {conv}")
            _require(conv.weight.is_contiguous(memory_format=torch.channels_last_3d), "a Conv3d weight layout")
            self.norms.append(_Norm(norm))
            setattr(self, f"weight{i}", conv.weight)  # shared; channels_last_3d since UNet3D.from_diffusers
            setattr(self, f"bias{i}", conv.bias)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        h = x
        for i, norm in enumerate(self.norms):
            h = norm(h, frames=frames, silu=True)
            h = temporal_conv(h, getattr(self, f"weight{i}"), getattr(self, f"bias{i}"), frames, self.variant)
        return x + h


class _Attention(nn.Module):
    """diffusers' Attention (plain scaled dot product, no norms inside), its projections shared."""

    def __init__(self, attn: nn.Module, *, fuse_qkv: bool):
        super().__init__()
        _require(type(attn).__name__ == "Attention", f"a {type(attn).__name__} attention")
        proc = type(attn.processor).__name__
        _require(proc in ("AttnProcessor2_0", "AttnProcessor"), f"attention processor {proc}")
        for name in ("spatial_norm", "group_norm", "norm_q", "norm_k", "norm_cross"):
            _require(getattr(attn, name, None) in (None, False), f"attention with {name}")
        _require(not attn.residual_connection and attn.rescale_output_factor == 1, "attention with a residual")
        _require(attn.scale_qk, "attention without 1/sqrt(d) scaling")  # SDPA's default scale, as diffusers' 2.0 path
        self.heads = attn.heads
        self.temporal_impl: str | None = None  # attention.IMPLS; None: attention.default_impl (UNet3D sets it)
        self.q, self.k, self.v = attn.to_q, attn.to_k, attn.to_v
        self.out = attn.to_out[0]
        fuse = fuse_qkv and self.q.bias is None and self.k.bias is None and self.v.bias is None
        qkv = torch.cat([self.q.weight, self.k.weight, self.v.weight]).detach() if fuse else None
        self.register_buffer("qkv", qkv)  # 3*inner C: one GEMM for self-attention's q, k and v

    def spatial(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """Attention over the pixels of each image: x ``(N, P, C)``; context ``(N, L, D)`` (cross) or None."""
        n, p, _ = x.shape
        if context is None:
            if self.qkv is not None:
                qkv = F.linear(x, self.qkv).unflatten(-1, (3, self.heads, -1))  # N P 3 heads d
                q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # N heads P d (strided views)
            else:
                q, k, v = (f(x).unflatten(-1, (self.heads, -1)).transpose(1, 2) for f in (self.q, self.k, self.v))
            out = F.scaled_dot_product_attention(q, k, v)  # N heads P d
            return self.out(out.transpose(1, 2).reshape(n, p, -1))
        # Cross-attention: each image's pixels attend to its clip's text, projected per image as diffusers does
        # (0.5 % more FLOPs than once per clip, but the block then treats every image alone: see _Region).
        q = self.q(x).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # N heads P d
        k, v = (f(context).unflatten(-1, (self.heads, -1)).transpose(1, 2) for f in (self.k, self.v))  # N heads L d
        out = F.scaled_dot_product_attention(q, k, v)  # N heads P d
        return self.out(out.transpose(1, 2).reshape(n, p, -1))

    def temporal(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """Self-attention over the frames of each pixel: x ``(B*F, P, C)`` as stored -> ``(B*F, P, C)``."""
        n, p, _ = x.shape

        def seq(f):  # B F (P heads) d: every (pixel, head) is a sequence over frames (a view)
            return f(x).reshape(n // frames, frames, p * self.heads, -1)

        out = attention.short_attention(seq(self.q), seq(self.k), seq(self.v), impl=self.temporal_impl)
        return self.out(out.reshape(n, p, -1))  # frames-major as x: no transpose back


class _FeedForward(nn.Module):
    """diffusers' FeedForward with GEGLU: out(h * gelu(gate)), [h, gate] = proj(x)."""

    def __init__(self, ff: nn.Module):
        super().__init__()
        act = ff.net[0]
        _require(type(act).__name__ == "GEGLU", f"feed-forward activation {type(act).__name__}")
        self.proj, self.out = act.proj, ff.net[2]
        _require(len(ff.net) == 3 or all(isinstance(m, nn.Dropout) for m in ff.net[3:]), "a final layer in FF")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(h * F.gelu(gate))


class _Block(nn.Module):
    """diffusers' BasicTransformerBlock (layer norms; self-attention, cross- or second self-attention, FF)."""

    def __init__(self, block: nn.Module, *, temporal: bool):
        super().__init__()
        _require(type(block).__name__ == "BasicTransformerBlock", f"a {type(block).__name__} block")
        _require(block.norm_type == "layer_norm" and block.pos_embed is None, f"norm type {block.norm_type}")
        _require(not block.only_cross_attention and block.attn2 is not None, "blocks without two attentions")
        _require(block._chunk_size is None, "chunked feed-forward")
        self.temporal = temporal
        self.norm1, self.norm2, self.norm3 = block.norm1, block.norm2, block.norm3
        self.attn1 = _Attention(block.attn1, fuse_qkv=not temporal)
        self.attn2 = _Attention(block.attn2, fuse_qkv=not temporal and block.attn2.is_cross_attention is False)
        self.cross = bool(block.attn2.is_cross_attention)
        self.ff = _FeedForward(block.ff)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None, frames: int) -> torch.Tensor:
        if self.temporal:
            x = x + self.attn1.temporal(self.norm1(x), frames)
            x = x + self.attn2.temporal(self.norm2(x), frames)  # diffusers' double self-attention
        else:
            x = x + self.attn1.spatial(self.norm1(x), None)
            x = x + self.attn2.spatial(self.norm2(x), context if self.cross else None)
        return x + self.ff(self.norm3(x))


class _Transformer(_Region):
    """Transformer2DModel (spatial, ``temporal=False``) or TransformerTemporalModel, residual included."""

    def __init__(self, model: nn.Module, *, temporal: bool):
        super().__init__()
        name = type(model).__name__
        expected = "TransformerTemporalModel" if temporal else "Transformer2DModel"
        _require(name == expected, f"a {name} where a {expected} was expected")
        if not temporal:
            _require(model.is_input_continuous, "a Transformer2DModel over discrete or patched inputs")
        self.temporal = temporal
        self.per_image = not temporal
        self.norm = _Norm(model.norm)
        self.proj_in, self.proj_out = _Linear1x1(model.proj_in), _Linear1x1(model.proj_out)
        self.blocks = nn.ModuleList(_Block(b, temporal=temporal) for b in model.transformer_blocks)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None, frames: int = 1) -> torch.Tensor:
        """x ``(N, H, W, C)``; spatial: context ``(N, L, D)`` per image (or None); temporal: context None and
        ``frames`` F, N = B*F -> ``(N, H, W, C)``."""
        n, h, w, c = x.shape
        tokens = self.proj_in(self.norm(x, frames=frames if self.temporal else 1).reshape(n, h * w, c))
        for block in self.blocks:
            tokens = block(tokens, context, frames)
        return x + self.proj_out(tokens).reshape(n, h, w, c)


class _Level(nn.Module):
    """A down, mid or up block of UNet3D: per layer resnet, temporal conv, then (optionally) the two transformers."""

    def __init__(self, block: nn.Module, variant: str, kind: str):
        super().__init__()
        self.kind = kind  # "down", "mid" or "up"
        self.resnets = nn.ModuleList(_Resnet(r) for r in block.resnets)
        self.temp_convs = nn.ModuleList(_TemporalConv(t, variant) for t in block.temp_convs)
        attentions = getattr(block, "attentions", None) or []
        self.attentions = nn.ModuleList(_Transformer(a, temporal=False) for a in attentions)
        self.temp_attentions = nn.ModuleList(
            _Transformer(a, temporal=True) for a in (getattr(block, "temp_attentions", None) or [])
        )
        down, up = getattr(block, "downsamplers", None), getattr(block, "upsamplers", None)
        self.down = self.up = None
        if down is not None:
            _require(len(down) == 1 and down[0].use_conv and down[0].norm is None, "this downsampler")
            _require(down[0].padding == 1, "downsampling without padding")
            self.down = _Conv(down[0].conv)
        if up is not None:
            _require(len(up) == 1 and up[0].use_conv and up[0].interpolate and not up[0].use_conv_transpose, "up")
            _require(up[0].norm is None, "this upsampler")
            self.up = _Conv(up[0].conv if up[0].name == "conv" else up[0].Conv2d_0)


class UNet3D(nn.Module):
    """The whole UNet3D on channels-last activations; built with ``from_diffusers``."""

    def __init__(self, unet: nn.Module, *, temporal_conv: str = DEFAULT_TEMPORAL_CONV, group_norm: str | None = None):
        super().__init__()
        if temporal_conv not in TEMPORAL_CONV:
            raise ValueError(f"temporal_conv {temporal_conv!r}: expected one of {', '.join(TEMPORAL_CONV)}")
        _require(type(unet).__name__ == "UNet3DConditionModel", f"a {type(unet).__name__}")
        cfg = unet.config
        _require(cfg.get("time_cond_proj_dim") is None, "timestep conditioning (time_cond_proj_dim)")
        _require(unet.time_embedding.post_act is None and unet.time_embedding.cond_proj is None, "this time MLP")
        _require(isinstance(unet.time_embedding.act, nn.SiLU), "a time embedding without SiLU")
        self.temporal_conv = temporal_conv
        param = next(unet.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.in_channels, self.out_channels = cfg.in_channels, cfg.out_channels
        proj = unet.time_proj
        self.time_dim, self.time_flip, self.time_shift = (
            proj.num_channels,
            proj.flip_sin_to_cos,
            proj.downscale_freq_shift,
        )
        _require(getattr(proj, "scale", 1) == 1, "scaled timestep embeddings")
        self.time_1, self.time_2 = unet.time_embedding.linear_1, unet.time_embedding.linear_2
        self.conv_in = _Conv(unet.conv_in)
        self.transformer_in = _Transformer(unet.transformer_in, temporal=True)
        self.down_blocks = nn.ModuleList(_Level(b, temporal_conv, "down") for b in unet.down_blocks)
        self.mid = _Level(unet.mid_block, temporal_conv, "mid")
        self.up_blocks = nn.ModuleList(_Level(b, temporal_conv, "up") for b in unet.up_blocks)
        _require(len(self.up_blocks) >= 2 and self.up_blocks[-1].up is None, "an upsampler in the last up block")
        self.norm_out = _Norm(unet.conv_norm_out) if unet.conv_norm_out is not None else None
        self.conv_out = _Conv(unet.conv_out)
        self._compiled = None  # compile(): what forward calls instead of run (a compiled graph or graphs.CudaGraphs)
        self._cudagraphs = False  # whether torch.compile replays CUDA graphs (scope "whole"; outputs are then cloned)
        self.set_group_norm(group_norm or DEFAULT_GROUP_NORM.get(self.device.type, "torch"))
        shared = {p.data_ptr() for p in unet.parameters()}
        self.extra_bytes = sum(b.numel() * b.element_size() for b in self.buffers() if b.data_ptr() not in shared)

    def set_group_norm(self, impl: str) -> UNet3D:
        """Run every GroupNorm with ``impl`` (``GROUP_NORM``) from now on; returns ``self``."""
        if impl not in GROUP_NORM:
            raise ValueError(f"group_norm {impl!r}: expected one of {', '.join(GROUP_NORM)}")
        self.group_norm = impl
        for m in self.modules():
            if isinstance(m, _Norm):
                m.impl = impl
        return self

    def set_temporal_attention(self, impl: str | None) -> UNet3D:
        """Run the temporal attention with ``impl`` (``attention.IMPLS``; None: the device's default, the Triton
        kernel on CUDA) from now on; returns ``self``."""
        if impl is not None and impl not in attention.IMPLS:
            raise ValueError(f"temporal attention {impl!r}: expected one of {', '.join(attention.IMPLS)}")
        for m in self.modules():
            if isinstance(m, _Attention):
                m.temporal_impl = impl
        return self

    @classmethod
    def from_diffusers(
        cls, unet: nn.Module, *, temporal_conv: str = DEFAULT_TEMPORAL_CONV, group_norm: str | None = None
    ) -> UNet3D:
        """Our forward over ``unet``'s parameters (a diffusers ``UNet3DConditionModel``, eval mode assumed).

        ``temporal_conv`` (``TEMPORAL_CONV``) and ``group_norm`` (``GROUP_NORM``; None: ``DEFAULT_GROUP_NORM`` for
        the weights' device) choose how those layers run.
        Converts ``unet``'s convolution weights to channels-last memory format in place (``channels_last`` for
        Conv2d, ``channels_last_3d`` for Conv3d): the values are unchanged, diffusers' forward computes the same
        with them, and ours then reads them without a copy. Raises ``InputError`` naming the part of ``unet``
        this implementation does not cover.
        """
        with torch.no_grad():
            for m in unet.modules():
                if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                    fmt = torch.channels_last if isinstance(m, nn.Conv2d) else torch.channels_last_3d
                    m.weight.data = m.weight.data.contiguous(memory_format=fmt)
        return cls(unet, temporal_conv=temporal_conv, group_norm=group_norm).eval()

    def forward(
        self,
        sample: torch.Tensor,
        timestep: Any,
        encoder_hidden_states: torch.Tensor,
        return_dict: bool = True,
    ) -> UNet3DOutput | tuple[torch.Tensor]:
        """``sample`` ``(B, c, F, h, w)``, ``timestep`` a number or tensor ``()`` / ``(B,)``, ``encoder_hidden_states``
        ``(B, L, D)`` -> ``UNet3DOutput(sample (B, c, F, h, w))`` (or a 1-tuple), as diffusers' UNet3D."""
        n = check_shape(sample, "B c F h w", "sample")
        if n["c"] != self.in_channels:
            raise ValueError(f"sample: {n['c']} channels, the UNet takes {self.in_channels}")
        check_shape(encoder_hidden_states, f"{n['B']} L D", "encoder_hidden_states")
        t = timestep_vector(timestep, sample)  # on the device before a compiled graph sees it (no CPU input)
        if self._compiled is None:
            out = self.run(sample, t, encoder_hidden_states)
        else:
            if self._cudagraphs:
                torch.compiler.cudagraph_mark_step_begin()  # the previous call's outputs were cloned
            out = self._compiled(sample, t, encoder_hidden_states)
            if self._cudagraphs:
                out = out.clone()  # a CUDA graph's output lives in its pool and is overwritten by the next replay
        return UNet3DOutput(out) if return_dict else (out,)

    def run(self, sample: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The network: ``sample`` ``(B, c, F, h, w)``, ``t`` ``(B,)``, ``context`` ``(B, L, D)`` -> ``(B, c, F, h, w)``.

        Shapes and the timestep's device are not checked here (``forward`` does), so a compiled graph has no
        guards beyond its input shapes.
        """
        return self.run_deep(sample, t, context)[0]

    def forward_deep(
        self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor, deep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DeepCache (an option beyond the exact schedule, ``DenoiseConfig.deep_cache``): ``forward``'s inputs and
        optionally ``deep``, the inner levels' feature of an earlier call -> (``(B, c, F, h, w)``, the deep feature).

        With ``deep`` None this is the exact network (``run``), returning its deep feature too; with ``deep``
        given, only the outermost level runs (conv_in, the first down level, the last up level, the output) and
        the rest of the UNet is taken from ``deep`` (the output of the second-to-last up level's layers, before
        its upsampler). Given the feature of the same inputs it returns the exact output. Eager Python around
        the compiled blocks (``scope="blocks"``); never a CUDA graph or the whole compiled forward.
        """
        n = check_shape(sample, "B c F h w", "sample")
        check_shape(encoder_hidden_states, f"{n['B']} L D", "encoder_hidden_states")
        return self.run_deep(sample, timestep_vector(timestep, sample), encoder_hidden_states, deep)

    def run_deep(
        self, sample: torch.Tensor, t: torch.Tensor, context: torch.Tensor, deep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``run`` and the deep feature it passes through (``forward_deep``), or with ``deep`` given the outer
        level only around it."""
        b, c, frames, h, w = sample.shape
        emb = self.time_2(F.silu(self.time_1(self.time_embed(t))))  # B T: one per clip
        # Per image from here on (resnets and spatial transformers treat images alone: see _Region): N T, N L D
        emb, context = emb.repeat_interleave(frames, dim=0), context.to(self.dtype).repeat_interleave(frames, dim=0)
        x = sample.to(self.dtype).permute(0, 2, 3, 4, 1).reshape(b * frames, h, w, c)  # B*F h w c (a small copy)
        x = self.conv_in(x)
        x = self.transformer_in(x, None, frames)
        skips = [x]
        inner = self.up_blocks[-2]  # the level whose output is the deep feature
        if deep is None:
            for level in self.down_blocks:
                x = self._layers(level, x, emb, context, frames, skips)
                if level.down is not None:
                    x = level.down(x)
                    skips.append(x)
            x = self.mid.resnets[0](x, emb)
            x = self.mid.temp_convs[0](x, frames)
            for attn, temp_attn, resnet, temp_conv in zip(
                self.mid.attentions,
                self.mid.temp_attentions,
                self.mid.resnets[1:],
                self.mid.temp_convs[1:],
                strict=True,
            ):
                x = temp_attn(attn(x, context), None, frames)
                x = temp_conv(resnet(x, emb), frames)
            for level in self.up_blocks[:-1]:
                x = self._layers(level, x, emb, context, frames, skips)
                deep = x  # the last one: the inner levels' output before its upsampler
                if level.up is not None and level is not inner:
                    x = level.up(upsample_nearest(x, tuple(skips[-1].shape[1:3])))  # to the next skip's size
        else:  # DeepCache: the outer down level's skips only; the inner levels' output is given
            x = self._layers(self.down_blocks[0], x, emb, context, frames, skips)
        x = deep
        if inner.up is not None:
            x = inner.up(upsample_nearest(x, tuple(skips[-1].shape[1:3])))
        x = self._layers(self.up_blocks[-1], x, emb, context, frames, skips)
        if self.norm_out is not None:
            x = self.norm_out(x, silu=True)
        x = self.conv_out(x)  # B*F h w c
        return x.reshape(b, frames, h, w, -1).permute(0, 4, 1, 2, 3), deep  # B c F h w (a view, as diffusers')

    def compile(
        self, mode: str = "default", *, scope: str = DEFAULT_COMPILE_SCOPE, graphs: bool | None = None
    ) -> UNet3D:
        """Compile in place (``compile_unet`` is the usual entry); returns ``self``.

        ``scope="blocks"`` (regional): every resnet, temporal convolution and transformer (``_Region``) compiled
        on its own, static but for the batch, ``mode`` ``torch.compile``'s for each; with ``graphs`` (None: on CUDA)
        each whole call is then replayed as a CUDA graph per input shape (``graphs.CudaGraphs``): no launch gaps and no
        Python between the blocks. Distinct graphs: one per block shape (27 in zeroscope), the temporal layers' per
        frame count too (36 for the default schedule's three pass shapes, 81 if static), shared by every block of
        that shape, every step and every window.
        ``scope="whole"``: ``run`` as one graph per input shape (``fullgraph=True``, fully static); ``mode``
        ``"reduce-overhead"`` / ``"max-autotune"`` replay CUDA graphs through torch.compile itself.
        """
        import torch._dynamo

        if scope not in COMPILE_SCOPES:
            raise ValueError(f"compile scope {scope!r}: expected one of {', '.join(COMPILE_SCOPES)}")
        # One graph per block shape and frame count (blocks), or per input shape (whole): more than the default 8.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        torch._dynamo.config.accumulated_recompile_limit = max(torch._dynamo.config.accumulated_recompile_limit, 1024)
        if scope == "whole":
            self._compiled = torch.compile(self.run, mode=mode, dynamic=False, fullgraph=True)
            self._cudagraphs = self.device.type == "cuda" and mode in ("reduce-overhead", "max-autotune")
            return self
        for m in self.modules():
            if isinstance(m, _Region):
                entry = m.forward if m.per_image else m._clips  # the batch dimension is marked dynamic per call
                m._compiled = torch.compile(entry, mode=mode, dynamic=False, fullgraph=True)
        graphs = self.device.type == "cuda" if graphs is None else graphs
        # whole calls replayed, every shape kept (the schedule's three pass shapes); two warm-ups: the compile, then the autotune
        self._compiled = CudaGraphs(self.run, None, warm_ups=2, name="a UNet call") if graphs else self.run
        return self

    def time_embed(self, t: torch.Tensor) -> torch.Tensor:
        emb = timestep_embedding(t, self.time_dim, flip_sin_to_cos=self.time_flip, shift=self.time_shift)
        return emb.to(self.dtype)

    @staticmethod
    def _layers(level: _Level, x, emb, context, frames: int, skips: list[torch.Tensor]) -> torch.Tensor:
        """A down or up block's layers; down blocks push each output to ``skips``, up blocks pop theirs first."""
        for i, (resnet, temp_conv) in enumerate(zip(level.resnets, level.temp_convs, strict=True)):
            if level.kind == "up":
                x = torch.cat([x, skips.pop()], dim=-1)  # the channel axis (diffusers: dim 1)
            x = temp_conv(resnet(x, emb), frames)
            if level.attentions:
                x = level.temp_attentions[i](level.attentions[i](x, context), None, frames)
            if level.kind == "down":
                skips.append(x)
        return x


def timestep_vector(timestep: Any, sample: torch.Tensor) -> torch.Tensor:
    """A number, a 0-d or a ``(B,)`` tensor -> ``(B,)`` on ``sample``'s device (diffusers broadcasts the same way)."""
    t = torch.as_tensor(timestep, device=sample.device)
    if t.ndim == 0:
        t = t[None]
    if t.ndim != 1 or t.shape[0] not in (1, sample.shape[0]):
        raise ValueError(f"timestep: expected a number or shape () / (1,) / ({sample.shape[0]},), got {tuple(t.shape)}")
    return t.expand(sample.shape[0])


# --------------------------------------------------------------------------------------------------
# the switch: which forward the loop calls


_OURS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # diffusers UNet -> our UNet3D over its weights


def unet_for(unet: nn.Module, kind: str) -> Any:
    """The UNet callable for ``DenoiseConfig.unet``: ``unet`` itself (``"diffusers"``) or our forward over its
    parameters (``"ours"``), built once per module (again if its device or dtype changed since), and compiled if
    ``compile_unet`` was called on it. Both take ``(sample, t, encoder_hidden_states=...)`` and return ``.sample``.
    """
    if kind == "diffusers":
        return unet
    if kind != "ours":
        raise ValueError(f"unet {kind!r}: expected one of {', '.join(UNET_KINDS)}")
    ours = _OURS.get(unet)
    param = next(unet.parameters())
    if ours is None or (ours.device, ours.dtype) != (param.device, param.dtype):
        ours = _OURS[unet] = UNet3D.from_diffusers(unet)
        log.info("our UNet3D forward over %s (%s, %s)", type(unet).__name__, param.device, param.dtype)
    return ours


# --------------------------------------------------------------------------------------------------
# compiled once per machine

# torch.compile mode per scope and device type: the one place the compiled forward's execution is chosen. Whole
# graphs: CUDA graphs through torch.compile ("reduce-overhead") remove the launch gaps of ~1,000 kernels per call.
# Blocks: plain Inductor kernels, the whole call captured as one CUDA graph by graphs.CudaGraphs (torch.compile's own
# would make ~300 small graphs per call, one per block call).
COMPILE_MODES = {
    "whole": {"cuda": "reduce-overhead", "cpu": "default"},
    "blocks": {"cuda": "default", "cpu": "default"},
}


def compile_cache_dir() -> Path:
    """Where compiled kernels are kept between runs: ``$SVG3D_COMPILE_CACHE``, else
    ``$XDG_CACHE_HOME/svg3d/compile/torch-<version>`` (``~/.cache/svg3d/compile/torch-<version>``).

    One folder per torch version, because Inductor's artefacts are only valid for the version that made them.
    """
    if os.environ.get("SVG3D_COMPILE_CACHE"):
        return Path(os.environ["SVG3D_COMPILE_CACHE"]).expanduser()
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return root / "svg3d" / "compile" / f"torch-{torch.__version__}"


def use_compile_cache(folder: str | Path | None = None) -> Path:
    """Keep Inductor's on-disk caches (FX graphs, AOTAutograd, generated C++/Triton kernels) in ``folder``
    (None: ``compile_cache_dir()``) unless ``TORCHINDUCTOR_CACHE_DIR`` names another one than torch's default
    (a folder in /tmp, lost at reboot); returns the folder used. Call it before the first compilation.

    With the caches warm, a later process skips Inductor's code generation and kernel builds (the bulk of a cold
    compile); Dynamo still traces the model once per shape.
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # torch itself writes its default (a folder in /tmp) into the variable once it has used it: that is not a choice.
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen is None or os.path.abspath(chosen) == os.path.abspath(default_cache_dir()):
        folder = Path(folder) if folder is not None else compile_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


def folder_bytes(folder: str | Path) -> int:
    """Total size of the files under ``folder`` (0 if it does not exist): the compile cache's footprint."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def compile_unet(
    unet: nn.Module,
    *,
    mode: str | None = None,
    cache: bool = True,
    scope: str = DEFAULT_COMPILE_SCOPE,
    graphs: bool | None = None,
) -> UNet3D:
    """Compile our forward over ``unet``'s weights (``unet_for(unet, "ours")``) in place and return it.

    ``scope`` and ``graphs``: ``UNet3D.compile``. ``mode``: None = ``COMPILE_MODES[scope]`` for the device.
    ``cache``: keep the compiled kernels in the user cache folder (``use_compile_cache``), so a machine pays the
    full compile time once per torch version. Graphs are built at the first call of each shape. The loop picks
    the compiled forward up through ``DenoiseConfig(unet="ours")``.
    """
    ours = unet_for(unet, "ours")
    if cache:
        log.info("compile cache: %s", use_compile_cache())
    return ours.compile(mode or COMPILE_MODES[scope].get(ours.device.type, "default"), scope=scope, graphs=graphs)


def unet_flops(config: dict, batch: int, frames: int, height: int, width: int, context_len: int = 77) -> int:
    """Floating-point operations of one call of our forward for a UNet3D ``config`` (``unet.config``) at latents
    ``(batch, c, frames, height, width)``: matrix products, convolutions and attention, counted by torch's
    ``FlopCounterMode`` (2 per multiply-add) on meta tensors, so nothing is allocated or computed.

    zeroscope_v2_576w at 40x72 latents: 0.891 TFLOP per frame (batch * frames), as diffusers' forward (both project
    the cross-attention keys and values once per frame).
    """
    from diffusers import UNet3DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = UNet3DConditionModel.from_config(dict(config))
    ours = UNet3D.from_diffusers(unet)
    sample = torch.empty(batch, unet.config.in_channels, frames, height, width, device="meta")
    context = torch.empty(batch, context_len, unet.config.cross_attention_dim, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        ours(sample, 500, context)
    return counter.get_total_flops()
