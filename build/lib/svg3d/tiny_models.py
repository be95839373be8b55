"""Random-weight models shaped like the real ones, for offline tests and benchmarks (no download, DESIGN.md §7).

Two sizes of the same architecture:

- tiny (``TINY_UNET``, ``TINY_VAE``, ``TINY_TEXT``): ``save_tiny_zeroscope(folder)`` writes ``unet/ vae/
  text_encoder/ tokenizer/ scheduler/`` (and a ``model_index.json``) exactly where ``cerspense/zeroscope_v2_576w``
  has them, so tests load it back through the real ``svg3d.models.load_zeroscope``. Sizes are chosen for speed
  on 2 CPU cores: a two-level UNet3D of 8/16 channels, a four-level (x8) VAE of 4-8 channels, a two-layer CLIP
  text encoder of width 32.
- full (``FULL_UNET``, ``FULL_VAE``, ``FULL_TEXT``): zeroscope_v2_576w's own configs, for benchmarks and the
  equality tests of ``svg3d.unet3d`` at the real channel counts; ``build_random_zeroscope`` builds either size
  directly on a device.

And a tiny Depth Anything (``save_tiny_depth_anything``), saved like a hub checkpoint for stage 1.

The tokenizer is the real CLIP BPE vocabulary (open-clip-torch ships it), so prompts tokenize exactly as with
the real model. Tests and ``bench/`` both import from here (``bench/`` never imports ``tests/``).
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import torch

from .models import Zeroscope

ZEROSCOPE_SCHEDULER = dict(  # cerspense/zeroscope_v2_576w scheduler/scheduler_config.json
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    prediction_type="epsilon",
    steps_offset=1,
)
TINY_UNET = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    # Cross-attention only at the coarse level: the seed commands' 40x72 latents stay cheap on a CPU.
    down_block_types=("DownBlock3D", "CrossAttnDownBlock3D"),
    up_block_types=("CrossAttnUpBlock3D", "UpBlock3D"),
    block_out_channels=(8, 16),
    layers_per_block=1,
    cross_attention_dim=32,
    attention_head_dim=2,  # UNet3D reads this as the number of heads (a diffusers naming quirk)
    norm_num_groups=4,
)
TINY_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(4, 8, 8, 8),  # four levels: a factor-8 VAE like SD's
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=4,
    mid_block_add_attention=False,  # SD's VAE has it; at 320x576 it would dominate a CPU test
    sample_size=64,
    scaling_factor=0.18215,
)
TINY_TEXT = dict(
    vocab_size=49408,  # the CLIP BPE vocabulary
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=77,
    hidden_act="gelu",
)


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible map from bytes to printable unicode symbols."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return dict(
        zip(printable + extra, [chr(c) for c in printable] + [chr(256 + i) for i in range(len(extra))], strict=True)
    )


def write_clip_tokenizer(folder: str | Path) -> Path:
    """Save a ``CLIPTokenizer`` built offline from the CLIP BPE vocabulary that open-clip-torch ships.

    The vocabulary is CLIP's own construction: the 256 byte symbols, the same with ``</w>``, one entry
    per merge, then the two special tokens (49,408 entries). Without open-clip-torch (the GPU machine
    for the benchmark) the merges are left out: prompts then tokenize to characters, which changes no
    tensor shape, so timings are unaffected.
    """
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import open_clip

        bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
        merges = gzip.open(bpe).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]  # line 0 is a header
    except ImportError:
        merges = []
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges))
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=77)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_zeroscope(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random zeroscope to ``folder`` (diffusers layout); returns ``folder``."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    torch.manual_seed(seed)  # random weights only; the code under test never touches the global RNG
    UNet3DConditionModel(**TINY_UNET).save_pretrained(folder / "unet")
    AutoencoderKL(**TINY_VAE).save_pretrained(folder / "vae")
    CLIPTextModel(CLIPTextConfig(**TINY_TEXT)).save_pretrained(folder / "text_encoder")
    write_clip_tokenizer(folder / "tokenizer")
    DDPMScheduler(**ZEROSCOPE_SCHEDULER).save_pretrained(folder / "scheduler")
    index = {
        "_class_name": "TextToVideoSDPipeline",
        "scheduler": ["diffusers", "DDPMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet3DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=1))
    return folder


def save_tiny_svd_vae(folder: str | Path, *, seed: int = 0) -> Path:
    """A tiny random ``AutoencoderKLTemporalDecoder`` (the SVD-XT VAE's class) in ``folder/vae``."""
    from diffusers import AutoencoderKLTemporalDecoder

    folder = Path(folder)
    torch.manual_seed(seed)
    AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32, 32, 32),  # its encoder's GroupNorm has 32 groups
        down_block_types=("DownEncoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        sample_size=64,
    ).save_pretrained(folder / "vae")
    return folder


FULL_UNET = dict(  # cerspense/zeroscope_v2_576w unet/config.json
    sample_size=32,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    cross_attention_dim=1024,
    attention_head_dim=64,
    norm_num_groups=32,
)
FULL_VAE = dict(  # Stable Diffusion 1.x's VAE, which zeroscope ships
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)
FULL_TEXT = dict(  # OpenCLIP ViT-H/14 text tower, 23 of its 24 layers (zeroscope's text_encoder)
    vocab_size=49408,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    max_position_embeddings=77,
    hidden_act="gelu",
    projection_dim=1024,
)


def build_random_zeroscope(device: torch.device, dtype: torch.dtype, *, tiny: bool, seed: int = 0) -> Zeroscope:
    """Random-weight zeroscope components built directly on ``device`` (fast init, no download)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)  # the weights only; denoising uses its own generators
    with torch.device(device):
        unet = UNet3DConditionModel(**(TINY_UNET if tiny else FULL_UNET)).to(dtype).eval()
        vae = AutoencoderKL(**(TINY_VAE if tiny else FULL_VAE)).to(dtype).eval()
        text = CLIPTextModel(CLIPTextConfig(**(TINY_TEXT if tiny else FULL_TEXT))).to(dtype).eval()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tmp), model_max_length=77)
    return Zeroscope(unet, vae, text, tokenizer, DDPMScheduler(**ZEROSCOPE_SCHEDULER), device, dtype, "random")


@torch.no_grad()
def randomize_weights_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Redraw every parameter of ``module`` in place so that no layer starts as an identity; returns ``module``.

    diffusers zero-initialises the last convolution of every TemporalConvLayer (and fresh norms are exactly 1 and
    0), so a freshly built UNet3D hides any mistake in those layers. Matrices and kernels get variance 1/fan_in
    (activations keep their scale), 1-D norm weights 1 +- 0.2 (standard deviation), biases 0 +- 0.2; uniform
    draws, several times faster than normal ones on a CPU (1.4 B parameters for zeroscope).
    """
    g = torch.Generator(next(module.parameters()).device).manual_seed(seed)
    for name, p in module.named_parameters():
        centre = 1.0 if p.ndim == 1 and name.endswith("weight") else 0.0
        half_width = 3**0.5 * (0.2 if p.ndim == 1 else p[0].numel() ** -0.5)  # uniform: std = half_width / sqrt(3)
        p.uniform_(centre - half_width, centre + half_width, generator=g)
    return module


def random_unet(config: dict, *, seed: int = 0, device: torch.device | str = "cpu") -> torch.nn.Module:
    """A ``UNet3DConditionModel`` of ``config`` in eval mode with every weight drawn by ``randomize_weights_``.

    Built on the meta device first, so diffusers' own initialisation (15 s for zeroscope's 1.4 B parameters on
    2 cores) is skipped: the weights are drawn once.
    """
    from diffusers import UNet3DConditionModel

    with torch.device("meta"):
        unet = UNet3DConditionModel(**config)
    if any(True for _ in unet.buffers()):
        raise ValueError("random_unet: the model has buffers, which to_empty would leave undefined")
    return randomize_weights_(unet.to_empty(device=device), seed).eval()


# --------------------------------------------------------------------------------------------------
# Depth Anything (stage 1): a random tiny model saved like a hub checkpoint (config, weights and a DPT
# preprocessor_config.json asking for a 70 px short side instead of 518, which the loader must read).

TINY_DEPTH_INPUT = 70  # px, its short side: 5 patches of 14, so that a forward pass is fast


def depth_anything_v2_small():
    """Depth Anything V2-Small's architecture (depth-anything/Depth-Anything-V2-Small-hf config.json), random weights:
    it runs at the real model's speed (benchmarks)."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536, patch_size=14, image_size=518,
        out_indices=[3, 6, 9, 12], reshape_hidden_states=False,
    )  # fmt: skip
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=384, neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64,
        head_hidden_size=32, depth_estimation_type="relative",
    )  # fmt: skip
    return DepthAnythingForDepthEstimation(config).eval()


def save_random_depth_anything_v2_small(folder: str | Path, *, seed: int = 0) -> Path:
    """Save ``depth_anything_v2_small`` with random weights and the real model's image processor (518 px) to ``folder``,
    loadable by ``--depth-model folder`` like the real one (benchmarks at the real size, offline)."""
    from transformers import DPTImageProcessor

    torch.manual_seed(seed)
    folder = Path(folder)
    depth_anything_v2_small().save_pretrained(folder)
    DPTImageProcessor(
        size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)  # fmt: skip
    return folder


def save_tiny_depth_anything(folder: str | Path, *, seed: int = 0) -> Path:
    """Save a random tiny Depth Anything (relative disparity) and its image processor to ``folder``."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        patch_size=14,
        image_size=TINY_DEPTH_INPUT,
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
        size={"height": TINY_DEPTH_INPUT, "width": TINY_DEPTH_INPUT},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
