"""Our Depth Anything (``svg3d.depth_anything``) against transformers' on the same checkpoints, its loading through
``models.load_depth_model`` (folders, the Hugging Face cache, other architectures through transformers), its errors,
and what it is for: loading it does not import transformers."""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub: tests never download

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from svg3d import depth_anything, models
from svg3d.checks import InputError
from svg3d.tiny_models import save_random_depth_anything_v2_small, save_tiny_depth_anything

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_depth_anything(tmp_path_factory.mktemp("tiny"))


def _reference(folder: Path):
    from transformers import AutoModelForDepthEstimation

    return AutoModelForDepthEstimation.from_pretrained(folder).eval()


def _same(ours: torch.nn.Module, ref: torch.nn.Module, x: torch.Tensor) -> None:
    """Equal to float32 rounding: the same operations in the same order, so a few ulps of the output's scale."""
    with torch.no_grad():
        a, b = ref(pixel_values=x).predicted_depth, ours(x)
    assert a.shape == b.shape == (x.shape[0], x.shape[2], x.shape[3])
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6 * float(a.abs().max()))


@pytest.mark.parametrize("size", [(70, 70), (70, 126), (98, 56), (14, 350)])
def test_tiny_checkpoint_predicts_as_transformers(tiny, size):
    """The learned square grid as it is (70x70: 5x5 patches) and resized bicubically to other grids (14x350: as many
    patches as learned, 1x25, resized all the same)."""
    torch.manual_seed(0)
    _same(depth_anything.load(tiny, torch.float32), _reference(tiny), torch.randn(2, 3, *size))


def test_v2_small_architecture_predicts_as_transformers(tmp_path):
    """Depth Anything V2-Small's real architecture (random weights): 12 layers, features from layers 3, 6, 9, 12."""
    folder = save_random_depth_anything_v2_small(tmp_path / "v2s")
    ours = depth_anything.load(folder, torch.float32)
    assert ours.backbone.out_indices == [3, 6, 9, 12] and len(ours.backbone.encoder.layer) == 12
    torch.manual_seed(1)
    _same(ours, _reference(folder), torch.randn(1, 3, 140, 252))


def test_v1_small_architecture_predicts_as_transformers(tmp_path):
    """Depth Anything V1-Small's architecture (transformers' default ``DepthAnythingConfig``: features from layers 9 to
    12, the paper's family; random weights), saved as transformers saves it."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

    torch.manual_seed(10)
    DepthAnythingForDepthEstimation(DepthAnythingConfig()).eval().save_pretrained(tmp_path / "v1s")
    ours = depth_anything.load(tmp_path / "v1s", torch.float32)
    assert ours.backbone.out_indices == [9, 10, 11, 12]
    torch.manual_seed(11)
    _same(ours, _reference(tmp_path / "v1s"), torch.randn(1, 3, 140, 252))


def _variant(tiny: Path, folder: Path, **changes) -> Path:
    """The tiny checkpoint with its config changed (and its weights re-drawn by transformers for that config)."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

    config = DepthAnythingConfig.from_pretrained(tiny)
    for key, value in changes.items():
        setattr(config, key, value)
    torch.manual_seed(3)
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(folder)
    return folder


def test_metric_head_and_stem_features_as_transformers(tiny, tmp_path):
    """A metric checkpoint (sigmoid times ``max_depth``) whose neck also reads the embeddings (``stem``)."""
    folder = _variant(tiny, tmp_path / "metric", depth_estimation_type="metric", max_depth=20.0)
    config = json.loads((folder / "config.json").read_text())
    config["backbone_config"].update(out_features=["stem", "stage2", "stage3", "stage4"], out_indices=[0, 2, 3, 4])
    (folder / "config.json").write_text(json.dumps(config))
    ours = depth_anything.load(folder, torch.float32)
    assert ours.backbone.out_indices == [0, 2, 3, 4]
    torch.manual_seed(2)
    x = torch.randn(1, 3, 84, 112)
    _same(ours, _reference(folder), x)
    with torch.no_grad():
        depth = ours(x)
    assert float(depth.min()) >= 0 and float(depth.max()) <= 20.0


def test_config_defaults_are_transformers_defaults(tiny, tmp_path):
    """A saved config leaves out what equals transformers' defaults: read back, those are filled in as transformers
    fills them (here: the whole config reduced to what differs from the defaults)."""
    from transformers import DepthAnythingConfig

    full = DepthAnythingConfig.from_pretrained(tiny)
    folder = tmp_path / "diff"
    shutil.copytree(tiny, folder)
    (folder / "config.json").write_text(full.to_json_string(use_diff=True))
    ours = depth_anything.read_config(folder)
    for key in ("patch_size", "reassemble_factors", "neck_hidden_sizes", "fusion_hidden_size", "head_hidden_size", "max_depth"):
        assert ours[key] == getattr(full, key), key
    for key in ("hidden_size", "num_hidden_layers", "mlp_ratio", "layer_norm_eps", "layerscale_value", "use_mask_token"):
        assert ours["backbone_config"][key] == getattr(full.backbone_config, key), key
    torch.manual_seed(4)
    _same(depth_anything.load(folder, torch.float32), _reference(tiny), torch.randn(1, 3, 70, 98))


def test_load_depth_model_uses_ours_and_never_imports_transformers(tiny):
    """What the module is for: a convert's depth stage loads Depth Anything without importing transformers (3.2 s on
    the 2-core VM), in a process of its own."""
    code = (
        "import sys, torch; from svg3d import models; "
        f"m = models.load_depth_model({str(tiny)!r}, device=torch.device('cpu')); "
        "out = m.net(torch.zeros(1, 3, 70, 70)); "
        "print(type(m.net).__name__, tuple(out.shape), m.input_size, 'transformers' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["DepthAnything", "(1,", "70,", "70)", "70", "False"]


def _cache(hf_home: Path, repo: str, source: Path) -> None:
    """``source``'s files as the Hugging Face cache holds a download of ``repo`` (refs/main -> a snapshot)."""
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / ("0" * 40)
    shutil.copytree(source, snapshot)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text("0" * 40)


def test_hub_id_loads_from_the_cache_offline(tiny, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))  # (read from here at each call)
    _cache(tmp_path / "hf", "someone/tiny-depth", tiny)
    model = models.load_depth_model("someone/tiny-depth", device=CPU)
    assert isinstance(model.net, depth_anything.DepthAnything) and model.input_size == 70
    torch.manual_seed(5)
    _same(model.net, _reference(tiny), torch.randn(1, 3, 70, 84))
    with pytest.raises(InputError, match="someone/other-depth") as e:  # not cached, offline: one line naming the flag
        models.load_depth_model("someone/other-depth", device=CPU, flag="depth_model")
    assert "\n" not in str(e.value) and e.value.params == ("depth_model",)


def test_a_checkpoint_without_the_unused_mask_token_loads(tiny, tmp_path):
    """DINOv2's mask token serves pre-training only; a checkpoint converted without it loads (every other tensor is
    still required: ``test_damaged_checkpoints_are_one_line_naming_the_flag``)."""
    from safetensors.torch import save_file

    folder = tmp_path / "no-mask"
    shutil.copytree(tiny, folder)
    state = depth_anything.load_weights(tiny)
    del state["backbone.embeddings.mask_token"]
    save_file(state, folder / "model.safetensors")
    torch.manual_seed(8)
    _same(depth_anything.load(folder, torch.float32), _reference(tiny), torch.randn(1, 3, 70, 70))


def test_pytorch_bin_weights_load_like_safetensors(tiny, tmp_path):
    folder = tmp_path / "bin"
    shutil.copytree(tiny, folder)
    (folder / "model.safetensors").unlink()
    torch.save(depth_anything.load_weights(tiny), folder / "pytorch_model.bin")
    torch.manual_seed(6)
    _same(depth_anything.load(folder, torch.float32), _reference(tiny), torch.randn(1, 3, 70, 70))


def test_other_architectures_load_through_transformers(tmp_path):
    """A depth checkpoint that is no Depth Anything (a tiny DPT) is loaded by transformers and called the same way."""
    from transformers import DPTConfig, DPTForDepthEstimation

    config = DPTConfig(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, image_size=56,
                       patch_size=14, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 8, 8], fusion_hidden_size=8,
                       reassemble_factors=[4, 2, 1, 0.5], head_in_index=-1)  # fmt: skip
    torch.manual_seed(7)
    reference = DPTForDepthEstimation(config).eval()
    reference.save_pretrained(tmp_path / "dpt")
    model = models.load_depth_model(str(tmp_path / "dpt"), device=CPU)
    assert type(model.net).__name__ == "_TransformersDepth"
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(model.net(x), reference(pixel_values=x).predicted_depth)


@pytest.mark.parametrize("damage", ["no weights", "missing tensor", "wrong shape", "no config"])
def test_damaged_checkpoints_are_one_line_naming_the_flag(tiny, tmp_path, damage):
    folder = tmp_path / "damaged"
    shutil.copytree(tiny, folder)
    if damage == "no weights":
        (folder / "model.safetensors").unlink()
    elif damage == "no config":
        (folder / "config.json").unlink()
    else:
        from safetensors.torch import save_file

        state = depth_anything.load_weights(tiny)
        if damage == "missing tensor":
            del state["head.conv3.weight"]
        else:
            state["head.conv3.weight"] = torch.zeros(1, 2, 1, 1)
        save_file(state, folder / "model.safetensors")
    with pytest.raises(InputError) as e:
        models.load_depth_model(str(folder), device=CPU, flag="depth_model")
    text = str(e.value)
    assert "\n" not in text and str(folder) in text and e.value.params == ("depth_model",), text
    expected = {"no weights": "model.safetensors", "missing tensor": "head.conv3.weight", "wrong shape": "head.conv3.weight",
                "no config": "config.json"}[damage]  # fmt: skip
    assert expected in text, text


@pytest.mark.gpu
def test_v2_small_in_fp16_on_cuda_as_transformers(tmp_path):
    """On CUDA in fp16 (how the depth stage runs it): our module and transformers' on the same V2-Small weights agree
    within fp16 rounding of the output's scale (both attend by scaled_dot_product_attention)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForDepthEstimation

    folder = save_random_depth_anything_v2_small(tmp_path / "v2s")
    state = depth_anything.load_weights(folder)
    state["head.conv3.weight"] *= 1e4  # (random weights predict ~1e-4, below fp16's normal range: lift it to ~1)
    save_file(state, folder / "model.safetensors")
    cuda = torch.device("cuda")
    ours = models.load_depth_model(str(folder), device=cuda)
    assert isinstance(ours.net, depth_anything.DepthAnything) and ours.dtype == torch.float16
    ref = AutoModelForDepthEstimation.from_pretrained(folder, dtype=torch.float16).to(cuda).eval()
    torch.manual_seed(9)
    x = torch.randn(2, 3, 518, 924, device=cuda, dtype=torch.float16)
    with torch.no_grad():
        a, b = ref(pixel_values=x).predicted_depth.float(), ours.net(x).float()
    scale = float(a.abs().max())
    assert scale > 0 and float((a - b).abs().max()) <= 2e-2 * scale, (float((a - b).abs().max()), scale)
