"""A tiny random Depth Anything, saved like a hub checkpoint, for offline tests of stage 1.

``save_tiny_depth_anything(folder)`` writes ``config.json``, the weights and a
``preprocessor_config.json`` (DPT image processor) with save_pretrained, so tests load it back through
the real ``svg3d.models.load_depth_model``. The architecture is Depth Anything's (a Dinov2 backbone,
DPT neck and head) at widths of 8-16 channels. The processor asks for a short side of 70 px instead
of 518 so the forward pass stays fast; the loader must read that from the processor config.
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY_INPUT_SIZE = 70  # 5 patches of 14 on the short side


def save_tiny_depth_anything(folder: str | Path, *, seed: int = 0) -> Path:
    """Save a random tiny Depth Anything (relative disparity) and its image processor to ``folder``."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        patch_size=14,
        image_size=TINY_INPUT_SIZE,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=16,
        neck_hidden_sizes=[8, 8, 16, 16],
        fusion_hidden_size=8,
        head_hidden_size=4,
        depth_estimation_type="relative",
        initializer_range=0.2,  # the default 0.02 makes a random model predict ~1e-9 everywhere
    )
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(config).eval()
    processor = DPTImageProcessor(
        size={"height": TINY_INPUT_SIZE, "width": TINY_INPUT_SIZE},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
