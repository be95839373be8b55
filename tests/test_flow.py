"""Optical-flow backends: DIS recovers a known motion, RAFT runs from a local state dict, auto falls back."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub: tests never download

import logging

import numpy as np
import pytest
import torch
from torchvision.models.optical_flow import raft_large, raft_small

from svg3d.checks import InputError
from svg3d.flow import DISFlow, RaftFlow, make_flow
from svg3d.models import load_raft, raft_cache_path

CPU = torch.device("cpu")


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour texture, float32 (h, w, 3) in [0, 1]: enough structure for flow."""
    import cv2

    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 2.0)
    return (img - img.min()) / (img.max() - img.min())


def shifted_pair(dx: int, dy: int, h: int = 64, w: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """src, dst (1, 3, h, w) where src pixel (u, v) shows what dst shows at (u + dx, v + dy)."""
    big = texture(h + 20, w + 20)
    y0, x0 = 10, 10
    src = big[y0 : y0 + h, x0 : x0 + w]
    dst = big[y0 - dy : y0 - dy + h, x0 - dx : x0 - dx + w]
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]  # noqa: E731
    return as_tensor(src), as_tensor(dst)


@pytest.mark.parametrize("dx, dy", [(3, -2), (-4, 1)])
def test_dis_recovers_a_translation(dx, dy):
    src, dst = shifted_pair(dx, dy)
    flow = make_flow("dis", device=CPU)(src, dst)
    assert flow.shape == (1, 2, 64, 96) and flow.dtype == torch.float32
    inner = flow[0, :, 8:-8, 8:-8]  # away from the borders, where part of the content leaves
    med = inner.flatten(1).median(dim=1).values
    print(f"DIS on a ({dx}, {dy}) shift: median flow ({med[0]:.3f}, {med[1]:.3f})")
    assert abs(med[0] - dx) < 0.2 and abs(med[1] - dy) < 0.2
    assert ((inner[0] - dx).abs() < 0.5).float().mean() > 0.9


def test_dis_of_identical_frames_is_zero():
    src, _ = shifted_pair(0, 0)
    assert DISFlow()(src, src).abs().max() < 0.05


def test_raft_random_weights_from_a_state_dict_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    flow = make_flow("raft", device=CPU, model=str(path), iterations=2)
    assert isinstance(flow, RaftFlow)
    src, dst = shifted_pair(2, 1, h=61, w=90)  # not multiples of 8: padded, then cropped back
    out = flow(torch.cat([src, src]), torch.cat([dst, src]))
    assert out.shape == (2, 2, 61, 90) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_raft_file_checks(tmp_path):
    large = tmp_path / "raft_large.pth"
    torch.save(raft_large(weights=None).state_dict(), large)
    with pytest.raises(InputError, match="holds raft_large weights"):
        make_flow("raft", device=CPU, model=str(large), small=True)
    princeton = tmp_path / "raft-things.pth"
    torch.save({"module.fnet.conv1.weight": torch.zeros(1)}, princeton)
    with pytest.raises(InputError, match="princeton-vl"):
        load_raft(str(princeton), device=CPU)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read as a torch checkpoint"):
        load_raft(str(junk), device=CPU)
    with pytest.raises(InputError, match="no such RAFT checkpoint"):
        load_raft(str(tmp_path / "missing.pth"), device=CPU)


def test_auto_falls_back_to_dis_offline_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    with caplog.at_level(logging.INFO, logger="svg3d"):
        flow = make_flow("auto", device=CPU)
    assert isinstance(flow, DISFlow)
    assert len([r for r in caplog.records if "DIS" in r.getMessage()]) == 1
    with pytest.raises(InputError, match="RAFT 'raft_large'.*model FILE") as e:
        make_flow("raft", device=CPU)
    assert "--model FILE" in e.value.flag_message()


def test_auto_uses_cached_raft_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    cached = raft_cache_path("raft_small")
    cached.parent.mkdir(parents=True)
    torch.save(raft_small(weights=None).state_dict(), cached)
    flow = make_flow("auto", device=CPU, small=True, iterations=1)
    assert isinstance(flow, RaftFlow) and flow.name == "raft_small"


def test_unknown_backend_is_an_input_error():
    with pytest.raises(InputError, match="--flow farneback"):
        make_flow("farneback", device=CPU)


def test_raft_groups_of_pairs_change_no_result():
    # RAFT treats each pair on its own: the flow of 3 pairs in one call equals 3 calls of one pair (the grouping
    # that keeps cuDNN's grid sampler under its batch limit at 1080p), within float32 rounding of other batch
    # sizes' convolution blocking, amplified over 3 refinements (1e-4 of the flow's magnitude).
    torch.manual_seed(0)
    net = raft_small(weights=None).eval()
    pairs = [shifted_pair(dx, dy) for dx, dy in [(3, -2), (-4, 1), (1, 2)]]
    src, dst = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    together = RaftFlow(net, iterations=3)(src, dst)
    one_by_one = RaftFlow(net, iterations=3, max_positions=16 * 16)(src, dst)  # 16 x 16 positions: one 128-px pair
    assert together.shape == one_by_one.shape == (3, 2, 64, 96)
    assert (together - one_by_one).abs().max() <= 1e-4 * together.abs().max()


@pytest.mark.gpu
def test_raft_mixed_precision_on_cuda(tmp_path):
    path = tmp_path / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    flow = make_flow("raft", device=torch.device("cuda"), model=str(path), iterations=4, mixed_precision=True)
    src, dst = shifted_pair(2, 1)
    out = flow(src.cuda(), dst.cuda())
    assert out.shape == (1, 2, 64, 96) and out.dtype == torch.float32 and torch.isfinite(out).all()
