"""Issue 22's FP8 question, measured before any kernel is written: would e4m3 matrix products in the attention and
feed-forward projections keep the UNet's output within fp16 noise of the fp16 run?

One call of zeroscope's full-size UNet3D (random weights, ``tiny_models.random_unet``) on the CPU, in float32 as the
reference, then (a) in float16 (the noise the issue allows: what fp16 itself changes), (b) with every ``nn.Linear``
of the transformer blocks (q, k, v, out; the feed-forward's two; the blocks' proj_in/proj_out) computed from e4m3
values: weights and inputs rounded to float8_e4m3fn with a scale (per tensor, as ``torch._scaled_mm``'s
tensor-wise scaling, or per row: per output channel for the weight and per token for the input, its row-wise
scaling), the product accumulated in float32 as the tensor cores do. The quantisation is exact (torch's own e4m3
rounding); only the accumulation order differs from a real FP8 kernel, which is far below these errors.

    python bench/fp8_error.py --frames 4 --latent 24x16 --json bench/results/fp8_error.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from svg3d.tiny_models import FULL_UNET, random_unet  # noqa: E402

E4M3_MAX = torch.finfo(torch.float8_e4m3fn).max  # 448


def to_e4m3(x: torch.Tensor, dim: int | None) -> torch.Tensor:
    """``x`` rounded to e4m3 with a scale per tensor (``dim`` None) or per slice along ``dim`` (amax -> 448), back
    in float32."""
    amax = x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)
    scale = amax.clamp_min(1e-12) / E4M3_MAX
    return (x / scale).to(torch.float8_e4m3fn).float() * scale


def fp8_linears(unet: torch.nn.Module, rowwise: bool) -> list:
    """Every nn.Linear inside the transformer blocks computed from e4m3 weights and inputs; returns the hooks."""
    hooks = []
    for name, m in unet.named_modules():
        if isinstance(m, torch.nn.Linear) and ("attentions" in name or "transformer" in name):
            with torch.no_grad():
                m.weight.copy_(to_e4m3(m.weight.float(), 1 if rowwise else None))  # per output channel
            hooks.append(m.register_forward_pre_hook(lambda _m, args, rw=rowwise: (to_e4m3(args[0].float(), -1 if rw else None),)))
    return hooks


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).pow(2).mean().sqrt() / b.double().pow(2).mean().sqrt())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--latent", default="24x16", help="latent WxH (zeroscope at 576x320: 72x40)")
    ap.add_argument("--timestep", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    w, h = (int(v) for v in args.latent.split("x"))
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(1, 4, args.frames, h, w, generator=g)
    text = torch.randn(1, 77, FULL_UNET["cross_attention_dim"], generator=g)
    t = torch.tensor([args.timestep])

    def call(unet, dtype):
        start = time.perf_counter()
        with torch.inference_mode():
            out = unet(x.to(dtype), t, encoder_hidden_states=text.to(dtype)).sample.float()
        print(f"  one call in {time.perf_counter() - start:.1f} s", flush=True)
        return out

    unet = random_unet(FULL_UNET, seed=args.seed)
    print("float32 reference", flush=True)
    ref = call(unet, torch.float32)
    rows = {}
    print("float16", flush=True)
    rows["fp16"] = rel_rms(call(unet.half(), torch.float16), ref)
    for rowwise in (False, True):
        name = "fp8_e4m3_" + ("rowwise" if rowwise else "tensorwise")
        unet = random_unet(FULL_UNET, seed=args.seed)  # fresh weights: the last ones were rounded in place
        hooks = fp8_linears(unet, rowwise)
        print(f"{name} ({len(hooks)} linear layers)", flush=True)
        rows[name] = rel_rms(call(unet, torch.float32), ref)
        del unet
    for k, v in rows.items():
        print(f"{k:22s} relative RMS error of the UNet's output against float32: {v:.2e}  ({v / rows['fp16']:.1f}x fp16's)")
    if args.json:
        args.json.write_text(json.dumps({
            "command": " ".join(sys.argv), "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "frames": args.frames, "latent": [h, w], "timestep": args.timestep, "relative_rms_error_vs_fp32": rows,
        }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
