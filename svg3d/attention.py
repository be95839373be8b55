"""Attention over short sequences as one Triton kernel: the UNet's temporal attention (issue 22).

Zeroscope's temporal attention treats every (pixel, head) of a clip as one sequence over its frames: 16 long for a
column of the frame matrix, the view count (8) for a row, heads of 64 channels, so 2,880 x 5 sequences of each
clip at the first level at 576x320 (5 to 20 heads by level).
Fused attention kernels tile the queries and keys by 64 or 128, so such sequences waste most of every tile: on an
H100 the compiled UNet spent 19 % of a temporal pass and 27 % of a pass along the views in one cuDNN attention kernel,
about two thirds of it the temporal attention's (``bench/results/h100-2026-12-07-c/profile_compiled.txt``; the
per-frame cost doubled from 16-frame to 8-view sequences, as a cost per sequence does), where reading q, k and v
and writing the output once takes a sixth of that at the card's memory bandwidth.

``short_attention`` runs several sequences per program (``TILE``): their q, k and v ``(sequences, frames, d)`` are loaded
once (frames and channels padded to powers of two, at least 16, the smallest matrix product of the tensor cores;
padded keys masked), scores and softmax in float32, and the output is written straight into the layout the output projection
reads (the frames-major ``(B, F, P*heads, d)`` the projections produced), which also saves the transposed copy that
followed SDPA. Elsewhere (CPU, sequences over ``MAX_KERNEL_FRAMES``, heads over ``MAX_KERNEL_HEAD_DIM``, channels
not contiguous, more clips than ``MAX_GRID_Y``) it is ``torch.nn.functional.scaled_dot_product_attention`` on the
same views, which is what ran before.

The kernel is a plain ``triton.jit`` function launched from Python, so ``torch.compile`` traces it as a
user-defined Triton kernel (the regional compile of ``unet3d``) and CUDA graphs replay it. With
``TRITON_INTERPRET=1`` Triton runs it on CPU tensors (numpy): how the tests check it against SDPA on a machine
without a GPU.
"""

from __future__ import annotations

import contextlib
import math
import os

import torch
import torch.nn.functional as F

IMPLS = ("triton", "sdpa")
MAX_KERNEL_FRAMES = 32  # longer sequences: SDPA (the kernel holds a program's sequences in registers)
MAX_KERNEL_HEAD_DIM = 128  # larger heads: SDPA (zeroscope's are 64)
MAX_GRID_Y = 65535  # CUDA's limit on the grid's second axis, the kernel's clips: more go to SDPA
TILE = 4096  # elements of q per program: 4 sequences of 16 frames x 64 channels (the fastest on an H100)
NUM_WARPS = 4
# Fused attention kernels put heads on a CUDA grid axis (at most 65,535 blocks), so SDPA gets more sequences than
# this in several calls (zeroscope at 576x320 has at most 2,880 x 8 = 23,040; 1024x576 would have 73,728).
MAX_SDPA_HEADS = 2**15
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"  # Triton runs kernels on CPU tensors (numpy)


def default_impl(q: torch.Tensor) -> str:
    """``"triton"`` where the kernel runs (CUDA tensors, Triton importable; any device under Triton's interpreter),
    else ``"sdpa"``."""
    return "triton" if (q.is_cuda or INTERPRETED) and KERNEL is not None else "sdpa"


def kernel_fits(frames: int, head_dim: int) -> bool:
    """Whether the kernel takes sequences of ``frames`` with heads of ``head_dim``."""
    return frames <= MAX_KERNEL_FRAMES and head_dim <= MAX_KERNEL_HEAD_DIM


def _padded(n: int) -> int:
    """A kernel extent of ``n``: the next power of two, at least 16 (the tensor cores' smallest product)."""
    return max(16, 1 << (n - 1).bit_length())


def short_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, impl: str | None = None) -> torch.Tensor:
    """Softmax attention along dim 1 of ``q``, ``k``, ``v`` ``(B, F, S, d)`` (F frames, S sequences per clip, any
    strides with ``d`` contiguous; scale 1/sqrt(d)) -> ``(B, F, S, d)`` contiguous: for each ``b`` and ``s`` the
    F x F attention of the sequence ``q[b, :, s]`` over ``k[b, :, s]``, ``v[b, :, s]``.

    ``impl`` (``IMPLS``; default ``default_impl``): ``"triton"`` the kernel (where ``kernel_fits``, the channels
    are contiguous and B is within ``MAX_GRID_Y``; else SDPA), ``"sdpa"`` torch's on the views ``(B, S, F, d)``."""
    b, f, s, d = q.shape
    impl = impl or default_impl(q)
    if impl not in IMPLS:
        raise ValueError(f"attention impl {impl!r}: expected one of {', '.join(IMPLS)}")
    dense = all(x.stride(-1) == 1 for x in (q, k, v))  # the kernel reads each head's channels as one run
    if impl == "sdpa" or not kernel_fits(f, d) or KERNEL is None or not dense or b > MAX_GRID_Y:
        return _sdpa(q, k, v)
    out = torch.empty((b, f, s, d), dtype=q.dtype, device=q.device)
    padded = _padded(f)
    rows = max(1, TILE // (padded * _padded(d)))

    eager_cuda = q.is_cuda and not torch.compiler.is_compiling()  # compiled code sets its device itself
    with torch.cuda.device(q.device) if eager_cuda else contextlib.nullcontext():  # Triton launches on the current
        KERNEL[(-(-s // rows), b)](  # device: --device cuda:N
            q, k, v, out, s, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3], 1 / math.sqrt(d),
            FRAMES=f, PADDED=padded, D=d, DP=_padded(d), ROWS=rows, IEEE=q.dtype == torch.float32, num_warps=NUM_WARPS,
        )  # fmt: skip
    return out


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SDPA on the sequences as heads ``(B, S, F, d)`` (strided views), in calls of at most ``MAX_SDPA_HEADS``."""
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    if q.shape[1] <= MAX_SDPA_HEADS:
        out = F.scaled_dot_product_attention(q, k, v)
    else:  # large frames: keep every kernel launch inside CUDA's grid limits
        step = MAX_SDPA_HEADS
        out = torch.cat(
            [F.scaled_dot_product_attention(q[:, i : i + step], k[:, i : i + step], v[:, i : i + step])
             for i in range(0, q.shape[1], step)],
            dim=1,
        )  # fmt: skip
    return out.transpose(1, 2).contiguous()


def _build_kernel():
    """The Triton kernel (JIT-compiled per shape at its first launch); None where Triton is missing."""
    try:
        import triton
        import triton.language as tl
    except ImportError:  # pragma: no cover - torch's CUDA wheels bring Triton; a CPU build may lack it
        return None

    @triton.jit
    def attention_kernel(
        Q, K, V, Out, S,
        q_b, q_f, q_s, k_b, k_f, k_s, v_b, v_f, v_s, o_b, o_f, o_s,
        scale,
        FRAMES: tl.constexpr, PADDED: tl.constexpr, D: tl.constexpr, DP: tl.constexpr, ROWS: tl.constexpr,
        IEEE: tl.constexpr,
    ):  # fmt: skip
        b = tl.program_id(1).to(tl.int64)
        seq = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
        frame = tl.arange(0, PADDED)
        dim = tl.arange(0, DP)
        s3, f3, d3 = seq[:, None, None], frame[None, :, None], dim[None, None, :]
        live = (s3 < S) & (f3 < FRAMES) & (d3 < D)  # ROWS x PADDED x DP: padded frames and channels read as 0
        q = tl.load(Q + b * q_b + f3 * q_f + s3 * q_s + d3, mask=live, other=0.0)
        k = tl.load(K + b * k_b + f3 * k_f + s3 * k_s + d3, mask=live, other=0.0)
        v = tl.load(V + b * v_b + f3 * v_f + s3 * v_s + d3, mask=live, other=0.0)
        precision: tl.constexpr = "ieee" if IEEE else "tf32"  # fp32 inputs exactly (tests); fp16 ignores it
        scores = tl.dot(q, tl.permute(k, (0, 2, 1)), input_precision=precision) * scale  # ROWS x PADDED x PADDED
        scores = tl.where(frame[None, None, :] < FRAMES, scores, float("-inf"))  # padded keys weigh nothing
        weights = tl.exp(scores - tl.max(scores, axis=2)[:, :, None])
        weights = weights / tl.sum(weights, axis=2)[:, :, None]
        out = tl.dot(weights.to(v.dtype), v, input_precision=precision)  # ROWS x PADDED x DP, float32
        tl.store(Out + b * o_b + f3 * o_f + s3 * o_s + d3, out.to(Out.dtype.element_ty), mask=live)

    return attention_kernel


# Built at import where it can run, so that compiled code only reads a global (Dynamo would trace the build):
# importing Triton takes a moment, which a machine without a GPU does not pay.
KERNEL = _build_kernel() if INTERPRETED or torch.cuda.is_available() else None
