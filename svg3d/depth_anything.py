"""Depth Anything (V1 and V2: a DINOv2 ViT and a DPT head) in plain torch, built from a transformers checkpoint.

Why not transformers' own class: importing it costs 3.2 s per process on the 2-core VM (it brings torch._dynamo,
torch.distributed.tensor and scipy.optimize with it), 15 % of a 48-frame 640x360 convert, and 15 s on the GPU
machine's image; this module imports nothing beyond torch. The checkpoint is the same: ``config.json`` (transformers'
``DepthAnythingConfig`` with its ``Dinov2Config`` backbone, absent keys at transformers' defaults) and
``model.safetensors`` (or ``pytorch_model.bin``). The modules carry the checkpoint's parameter names, so its weights
load as they are, every one of them and nothing else (``load_state_dict(strict=True)``).

``DepthAnything(config)(pixel_values)`` -> ``(N, H, W)``: the same arithmetic as transformers 4.57's
``DepthAnythingForDepthEstimation(pixel_values).predicted_depth`` (its DINOv2 with the position embeddings resized
bicubically in float32, attention by ``scaled_dot_product_attention``, the four chosen layers' tokens layer-normed,
reassembled at 4, 2, 1 and 1/2 of the patch grid, fused coarse to fine, the head upsampled to 14 px per patch),
checked against it to float32 rounding on the tiny and the V2-Small configs (``tests/test_depth_anything.py``).
``unsupported(config)`` names what a checkpoint uses that this module does not build (the SwiGLU feed-forward of
DINOv2-giant, a backbone other than DINOv2); ``models.load_depth_model`` loads those with transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DepthAnything", "load", "load_weights", "read_config", "unsupported"]

WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # what a folder may hold, in this order of preference

# transformers' defaults for keys a saved config leaves out (it writes only what differs from them)
_DEPTH_DEFAULTS = {
    "patch_size": 14, "reassemble_hidden_size": 384, "reassemble_factors": [4, 2, 1, 0.5], "neck_hidden_sizes": [48, 96, 192, 384],
    "fusion_hidden_size": 64, "head_in_index": -1, "head_hidden_size": 32, "depth_estimation_type": "relative", "max_depth": None,
}  # fmt: skip
_DINOV2_DEFAULTS = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "mlp_ratio": 4, "hidden_act": "gelu",
    "layer_norm_eps": 1e-6, "image_size": 224, "patch_size": 14, "num_channels": 3, "qkv_bias": True, "layerscale_value": 1.0,
    "use_swiglu_ffn": False, "apply_layernorm": True, "reshape_hidden_states": True, "use_mask_token": True,
}  # fmt: skip
# DepthAnythingConfig's backbone when its config names none
_DEFAULT_BACKBONE = {"model_type": "dinov2", "image_size": 518, "hidden_size": 384, "num_attention_heads": 6, "out_indices": [9, 10, 11, 12],
                     "apply_layernorm": True, "reshape_hidden_states": False}  # fmt: skip


def read_config(folder: Path) -> dict:
    """``folder/config.json`` with transformers' defaults filled in (the backbone's under ``backbone_config``)."""
    raw = json.loads((Path(folder) / "config.json").read_text())
    config = {**_DEPTH_DEFAULTS, **{k: v for k, v in raw.items() if v is not None}}
    config["max_depth"] = config["max_depth"] or 1  # (transformers: "max_depth if max_depth else 1")
    backbone = raw.get("backbone_config") or _DEFAULT_BACKBONE
    config["backbone_config"] = {**_DINOV2_DEFAULTS, **backbone}
    return config


def unsupported(config: dict) -> str | None:
    """What ``config`` (``read_config``) asks for that ``DepthAnything`` does not build, or None."""
    b = config["backbone_config"]
    if config.get("model_type") != "depth_anything":
        return f"model type {config.get('model_type')}"
    if config.get("backbone") or config.get("use_timm_backbone"):
        return "a named or timm backbone"
    if b.get("model_type") != "dinov2":
        return f"backbone {b.get('model_type')}"
    if b["use_swiglu_ffn"] or b["hidden_act"] != "gelu" or b["reshape_hidden_states"] or not b["apply_layernorm"]:
        return "a DINOv2 variant (SwiGLU, another activation, reshaped or un-normed features)"
    if config["depth_estimation_type"] not in ("relative", "metric") or len(config["neck_hidden_sizes"]) != len(_out_indices(b)):
        return "a head or neck of another shape"
    return None


def _out_indices(backbone: dict) -> list[int]:
    """The encoder layers whose outputs feed the neck (0: the embeddings), from ``out_indices`` or ``out_features``."""
    if backbone.get("out_indices"):
        return [int(i) for i in backbone["out_indices"]]
    features = backbone.get("out_features") or [f"stage{backbone['num_hidden_layers']}"]
    return [0 if f == "stem" else int(f.removeprefix("stage")) for f in features]


class _PatchEmbeddings(nn.Module):
    def __init__(self, channels: int, hidden: int, patch: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(channels, hidden, kernel_size=patch, stride=patch)


class _Embeddings(nn.Module):
    """The class token and the patch tokens with their position embeddings (learned on a square grid, resized)."""

    def __init__(self, b: dict) -> None:
        super().__init__()
        hidden, self.patch = b["hidden_size"], b["patch_size"]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden))
        if b["use_mask_token"]:  # (pre-training only; kept so that the checkpoint loads strictly)
            self.mask_token = nn.Parameter(torch.zeros(1, hidden))
        self.patch_embeddings = _PatchEmbeddings(b["num_channels"], hidden, self.patch)
        side = b["image_size"] // self.patch
        self.position_embeddings = nn.Parameter(torch.zeros(1, side * side + 1, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        proj = self.patch_embeddings.projection
        tokens = proj(x.to(proj.weight.dtype)).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(n, -1, -1), tokens], dim=1)
        return tokens + self._positions(h, w, tokens.shape[1] - 1)

    def _positions(self, h: int, w: int, count: int) -> torch.Tensor:
        pos = self.position_embeddings
        learned = pos.shape[1] - 1
        if count == learned and h == w:
            return pos
        side = round(learned**0.5)
        grid = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=(h // self.patch, w // self.patch), mode="bicubic", align_corners=False).to(pos.dtype)
        return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, count, -1)], dim=1)


class _SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden, bias=bias) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        q, k, v = (f(x).view(n, t, self.heads, c // self.heads).transpose(1, 2) for f in (self.query, self.key, self.value))
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, c)


class _Dense(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)


class _Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, bias: bool) -> None:
        super().__init__()
        self.attention = _SelfAttention(hidden, heads, bias)
        self.output = _Dense(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output.dense(self.attention(x))


class _LayerScale(nn.Module):
    def __init__(self, hidden: int, value: float) -> None:
        super().__init__()
        self.lambda1 = nn.Parameter(torch.full((hidden,), float(value)))


class _Mlp(nn.Module):
    def __init__(self, hidden: int, ratio: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, int(hidden * ratio))
        self.fc2 = nn.Linear(int(hidden * ratio), hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Layer(nn.Module):
    """A pre-norm ViT block with layer scale."""

    def __init__(self, b: dict) -> None:
        super().__init__()
        hidden, eps = b["hidden_size"], b["layer_norm_eps"]
        self.norm1 = nn.LayerNorm(hidden, eps=eps)
        self.attention = _Attention(hidden, b["num_attention_heads"], b["qkv_bias"])
        self.layer_scale1 = _LayerScale(hidden, b["layerscale_value"])
        self.norm2 = nn.LayerNorm(hidden, eps=eps)
        self.mlp = _Mlp(hidden, b["mlp_ratio"])
        self.layer_scale2 = _LayerScale(hidden, b["layerscale_value"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x)) * self.layer_scale1.lambda1
        return x + self.mlp(self.norm2(x)) * self.layer_scale2.lambda1


class _Encoder(nn.Module):
    def __init__(self, b: dict) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(b) for _ in range(b["num_hidden_layers"]))


class _Backbone(nn.Module):
    """DINOv2: the tokens after each layer of ``out_indices`` (0: the embeddings), layer-normed."""

    def __init__(self, b: dict) -> None:
        super().__init__()
        self.out_indices = _out_indices(b)
        self.embeddings = _Embeddings(b)
        self.encoder = _Encoder(b)
        self.layernorm = nn.LayerNorm(b["hidden_size"], eps=b["layer_norm_eps"])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.embeddings(x)
        out = [x] if 0 in self.out_indices else []
        for i, layer in enumerate(self.encoder.layer[: max(self.out_indices)], start=1):
            x = layer(x)
            if i in self.out_indices:
                out.append(x)
        return [self.layernorm(t) for t in out]


class _Reassemble(nn.Module):
    def __init__(self, hidden: int, channels: int, factor: float) -> None:
        super().__init__()
        self.projection = nn.Conv2d(hidden, channels, kernel_size=1)
        if factor > 1:
            self.resize = nn.ConvTranspose2d(channels, channels, kernel_size=int(factor), stride=int(factor))
        elif factor < 1:
            self.resize = nn.Conv2d(channels, channels, kernel_size=3, stride=int(1 / factor), padding=1)
        else:
            self.resize = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resize(self.projection(x))


class _ReassembleStage(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        hidden = config["reassemble_hidden_size"]
        self.layers = nn.ModuleList(_Reassemble(hidden, c, f) for c, f in zip(config["neck_hidden_sizes"], config["reassemble_factors"], strict=True))


class _Residual(nn.Module):
    """A pre-activation residual unit: x + conv(relu(conv(relu(x))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.convolution1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.convolution2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.convolution2(F.relu(self.convolution1(F.relu(x))))


class _Fusion(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(channels, channels, kernel_size=1)
        self.residual_layer1 = _Residual(channels)
        self.residual_layer2 = _Residual(channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int] | None) -> torch.Tensor:
        if skip is not None:
            if skip.shape != x.shape:
                skip = F.interpolate(skip, size=x.shape[2:], mode="bilinear", align_corners=False)
            x = x + self.residual_layer1(skip)
        x = self.residual_layer2(x)
        resize = {"scale_factor": 2} if size is None else {"size": size}
        return self.projection(F.interpolate(x, **resize, mode="bilinear", align_corners=True))


class _FusionStage(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Fusion(config["fusion_hidden_size"]) for _ in config["neck_hidden_sizes"])


class _Neck(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        self.reassemble_stage = _ReassembleStage(config)
        self.convs = nn.ModuleList(nn.Conv2d(c, config["fusion_hidden_size"], kernel_size=3, padding=1, bias=False) for c in config["neck_hidden_sizes"])
        self.fusion_stage = _FusionStage(config)

    def forward(self, tokens: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        """The finest fused map (the head reads only the last fusion's output, ``head_in_index`` -1)."""
        maps = []
        for t, reassemble, conv in zip(tokens, self.reassemble_stage.layers, self.convs, strict=True):
            t = t[:, 1:].reshape(t.shape[0], *grid, t.shape[2]).permute(0, 3, 1, 2).contiguous()
            maps.append(conv(reassemble(t)))
        maps = maps[::-1]  # coarse to fine
        x = None
        for i, (m, fusion) in enumerate(zip(maps, self.fusion_stage.layers, strict=True)):
            size = tuple(maps[i + 1].shape[2:]) if i + 1 < len(maps) else None
            x = fusion(m, None, size) if x is None else fusion(x, m, size)
        return x


class _Head(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        features = config["fusion_hidden_size"]
        self.conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features // 2, config["head_hidden_size"], kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(config["head_hidden_size"], 1, kernel_size=1)
        self.metric, self.max_depth = config["depth_estimation_type"] == "metric", config["max_depth"]

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = F.interpolate(self.conv1(x), size=size, mode="bilinear", align_corners=True)
        x = self.conv3(F.relu(self.conv2(x)))
        x = torch.sigmoid(x) if self.metric else F.relu(x)
        return (x * self.max_depth).squeeze(1)


class DepthAnything(nn.Module):
    """Depth Anything from its ``read_config`` dict; ``forward(pixel_values (N, 3, H, W))`` -> ``(N, H, W)`` with H
    and W multiples of the patch size (relative disparity, or metres for a metric checkpoint)."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        reason = unsupported(config)
        if reason is not None:
            raise ValueError(f"not a Depth Anything this module builds: {reason}")
        self.patch = config["patch_size"]
        self.backbone = _Backbone(config["backbone_config"])
        self.neck = _Neck(config)
        self.head = _Head(config)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        h, w = pixel_values.shape[2] // self.patch, pixel_values.shape[3] // self.patch
        fused = self.neck(self.backbone(pixel_values), (h, w))
        return self.head(fused, (h * self.patch, w * self.patch))


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``folder``: ``model.safetensors`` (one file, or shards listed in its ``.index.json``), else
    ``pytorch_model.bin`` (tensors only). Raises ``FileNotFoundError`` naming what was looked for."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if (folder / WEIGHTS[0]).is_file() or index.is_file():
        from safetensors.torch import load_file

        files = [WEIGHTS[0]] if (folder / WEIGHTS[0]).is_file() else sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for f in files for k, v in load_file(folder / f).items()}
    if (folder / WEIGHTS[1]).is_file():
        return torch.load(folder / WEIGHTS[1], map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder}: no {' or '.join(WEIGHTS)}")


def load(folder: Path, dtype: torch.dtype) -> DepthAnything:
    """The model in ``folder`` (its ``config.json`` and weights) in ``dtype``, in eval mode, on the CPU. The modules are
    made on the meta device and take the checkpoint's tensors, so no random initialisation is spent."""
    config = read_config(folder)
    with torch.device("meta"):
        net = DepthAnything(config)
    state = load_weights(folder)
    if "backbone.embeddings.mask_token" not in state and hasattr(net.backbone.embeddings, "mask_token"):
        state["backbone.embeddings.mask_token"] = torch.zeros(net.backbone.embeddings.mask_token.shape)  # (pre-training only)
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:  # missing, unexpected or misshapen tensors: a damaged or foreign checkpoint
        raise ValueError(f"{folder}: its weights do not fit its config.json ({str(e).splitlines()[1].strip()})") from None
    return net.to(dtype).eval()
