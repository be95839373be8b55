"""Optical-flow backends: DIS and ours recover known motion (translations, rendered scenes with exact flow), RAFT runs
from a local state dict, auto falls back to the weight-free flow of the device."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub: tests never download

import logging

import numpy as np
import pytest
import torch
from torchvision.models.optical_flow import raft_large, raft_small

from svg3d import scene
from svg3d.checks import InputError
from svg3d.config import TorchFlowConfig
from svg3d.flow import DISFlow, RaftFlow, TorchFlow, invert_flow, make_flow, weight_free_flow
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


@pytest.mark.parametrize("name", ["dis", "torch"])
@pytest.mark.parametrize("dx, dy", [(3, -2), (-4, 1)])
def test_weight_free_flows_recover_a_translation(name, dx, dy):
    src, dst = shifted_pair(dx, dy)
    flow = make_flow(name, device=CPU)(src, dst)
    assert flow.shape == (1, 2, 64, 96) and flow.dtype == torch.float32
    inner = flow[0, :, 8:-8, 8:-8]  # away from the borders, where part of the content leaves
    med = inner.flatten(1).median(dim=1).values
    print(f"{name} on a ({dx}, {dy}) shift: median flow ({med[0]:.3f}, {med[1]:.3f})")
    assert abs(med[0] - dx) < 0.2 and abs(med[1] - dy) < 0.2
    assert ((inner[0] - dx).abs() < 0.5).float().mean() > 0.9


@pytest.mark.parametrize("flow", [DISFlow(), TorchFlow()], ids=["dis", "torch"])
def test_flow_of_identical_frames_is_zero(flow):
    src, _ = shifted_pair(0, 0)
    assert flow(src, src).abs().max() < 0.05


def rendered_pairs(cameras=("pan", "truck", "dolly", "handheld"), *, h=128, w=224, seed=3):
    """Per camera preset: frames 0 and 2 of a static scene (1, 3, h, w) each, the exact flow (2, h, w) and where
    it holds (h, w): the point stays in view and is not hidden in frame 2."""
    for camera in cameras:
        sc = scene.make_scene(seed, num_frames=3, height=h, width=w, static=True, camera_motion=camera)
        rgb, depth = scene.render(sc)
        flow, valid = scene.true_flow(sc, depth[0], 0, 2, depth_s=depth[2])
        yield camera, rgb[:1], rgb[2:], flow, valid


def test_true_flow_warps_the_next_frame_onto_the_first():
    # the exact flow is what the flow convention says: frame 2 sampled at (u, v) + flow gives frame 0 back
    from svg3d.flow import _warp

    # (up to bilinear sampling of textures, the finest of which alias on the ground), and far better than a flow half
    # a pixel off does
    for camera, src, dst, flow, valid in rendered_pairs(("truck", "dolly")):
        assert valid.float().mean() > 0.8 and flow.abs().max() > 1.0
        err, off = [(_warp(dst, f[None])[0] - src[0]).abs().amax(0)[valid].median() for f in (flow, flow + 0.5)]
        print(f"{camera}: |frame 0 - frame 2 warped back| median {err:.4f}, with the flow 0.5 px off {off:.4f}")
        assert err < 0.003 and err < off / 5
    with pytest.raises(ValueError, match="static=True"):
        sc = scene.make_scene(0, num_frames=2, height=32, width=48)
        scene.true_flow(sc, scene.render(sc)[1][0], 0, 1)


def test_torch_flow_is_as_accurate_as_dis_on_rendered_scenes():
    # Endpoint error against the exact flow of rendered scenes (camera motion and parallax, occlusion edges), for
    # OpenCV DIS (MEDIUM) and ours in the same run. Ours is meant to stand in for DIS on the GPU: no worse than it
    # on average, and no scene much worse (measured: DIS 0.11 0.24 0.32 0.27 px, ours 0.09 0.14 0.20 0.19).
    epe = {"dis": [], "torch": []}
    for camera, src, dst, truth, valid in rendered_pairs():
        for name, backend in [("dis", DISFlow()), ("torch", TorchFlow())]:
            flow = backend(src, dst)[0]
            epe[name].append(((flow - truth) ** 2).sum(0).sqrt()[valid].mean().item())
        print(f"{camera}: EPE DIS {epe['dis'][-1]:.3f} px, ours {epe['torch'][-1]:.3f} px")
    dis, ours = np.array(epe["dis"]), np.array(epe["torch"])
    assert ours.mean() <= dis.mean()
    assert (ours <= 1.25 * dis + 0.03).all()
    assert ours.max() < 0.3


def test_torch_flow_pairs_are_independent_and_deterministic():
    # A batch of pairs gives each pair's flow alone (within float32 rounding of other batch sizes' kernels), and the
    # same input gives the same bits twice.
    pairs = [shifted_pair(dx, dy) for dx, dy in [(3, -2), (-4, 1), (1, 2)]]
    src, dst = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    flow = TorchFlow()
    together = flow(src, dst)
    one_by_one = torch.cat([flow(src[i : i + 1], dst[i : i + 1]) for i in range(3)])
    assert together.shape == (3, 2, 64, 96)
    assert (together - one_by_one).abs().max() < 1e-3
    assert torch.equal(flow(src, dst), together)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_a_pairs_flow_in_a_batch_of_fixed_size_does_not_depend_on_the_other_pairs(device):
    # What lets the classical filler compute its source flows in batches of FLOW_BATCH pairs and still give every
    # chunk of a run the bits of the whole clip: in a batch of one size, a pair's flow is the same whatever the
    # other pairs are (no op mixes the pairs; kernels may round differently for another batch size, never for other
    # contents). On CUDA the calls are replayed from CUDA graphs, as in the filler.
    pairs = [shifted_pair(dx, dy) for dx, dy in [(3, -2), (-4, 1), (1, 2), (2, 3), (-1, -3)]]
    src, dst = (torch.cat([p[k] for p in pairs]).to(device) for k in (0, 1))
    flow = TorchFlow()
    first = flow(src[[0, 1, 2]], dst[[0, 1, 2]])
    second = flow(src[[3, 0, 4]], dst[[3, 0, 4]])  # pair 0 again, with other companions and in another place
    third = flow(src[[0, 0, 0]], dst[[0, 0, 0]])  # pair 0 padded with itself (the last call of a chunk)
    assert torch.equal(first[0], second[1]) and torch.equal(first[0], third[0]) and torch.equal(first[0], third[2])
    assert not torch.equal(first[0], first[1])  # the pairs do differ


def test_torch_flow_config_is_checked():
    with pytest.raises(InputError, match="patch_size 8"):
        TorchFlowConfig(patch_size=8)
    with pytest.raises(InputError, match="omega 2"):
        TorchFlowConfig(omega=2.0)


def test_auto_without_raft_weights_is_ours_on_cuda_and_dis_elsewhere(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    assert isinstance(weight_free_flow(torch.device("cuda")), TorchFlow)  # builds nothing on the device
    assert isinstance(weight_free_flow(CPU), DISFlow)
    with caplog.at_level(logging.INFO, logger="svg3d"):
        flow = make_flow("auto", device=torch.device("cuda"))
    assert isinstance(flow, TorchFlow)
    assert any("--flow torch" in r.getMessage() for r in caplog.records)
    with pytest.raises(InputError, match="--flow torch uses no network"):
        make_flow("torch", device=CPU, small=True)


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
    """Offline, or with the download host silent: DIS, said in one short line naming no folder and no address (the
    fallback of an optional model is no error: where to put the weights is ``--flow raft``'s error to say)."""
    from svg3d import models

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    for offline, says in ((True, "HF_HUB_OFFLINE is set"), (False, "does not answer")):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
        monkeypatch.setattr(models, "host_reachable", lambda url, timeout=None: False)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="svg3d"):
            flow = make_flow("auto", device=CPU)
        assert isinstance(flow, DISFlow)
        lines = [r.getMessage() for r in caplog.records if "RAFT" in r.getMessage() or "DIS" in r.getMessage()]
        assert len(lines) == 1 and says in lines[0], lines
        assert len(lines[0]) <= 100 and str(tmp_path) not in lines[0] and "http" not in lines[0], lines[0]
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


def test_the_raft_urls_are_torchvisions():
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    from svg3d.models import RAFT_URLS

    assert RAFT_URLS == {"raft_large": Raft_Large_Weights.C_T_V2.url, "raft_small": Raft_Small_Weights.C_T_V2.url}


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
def test_torch_flow_on_cuda_matches_the_cpu():
    # The same maths on another device: float32 sums in another order, and the propagation's comparisons may pick
    # another vector where two fit alike. The flow is that sensitive on a CPU too: inputs 1e-6 to 1e-4 apart give
    # flows 0.002-0.011 px apart on average (99th percentile 0.02-0.07 px) and the same EPE to 0.002 px. So: as
    # far apart as that, with room, and as accurate against the exact flow.
    for camera, src, dst, truth, valid in rendered_pairs(("truck", "handheld")):
        cpu = TorchFlow()(src, dst)
        gpu = TorchFlow()(src.cuda(), dst.cuda())
        assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
        diff = ((gpu.cpu() - cpu) ** 2).sum(1).sqrt()[0]
        epe = [((f[0].cpu() - truth) ** 2).sum(0).sqrt()[valid].mean().item() for f in (cpu, gpu)]
        print(f"{camera}: |cuda - cpu| mean {diff.mean():.4f} px, 99th pct {diff.quantile(0.99):.4f} px; EPE {epe}")
        assert diff.mean() < 0.03 and diff.quantile(0.99) < 0.2
        assert abs(epe[1] - epe[0]) < 0.01
        assert torch.equal(TorchFlow()(src.cuda(), dst.cuda()), gpu)  # deterministic on the device


@pytest.mark.gpu
def test_torch_flow_replayed_from_cuda_graphs_equals_the_eager_flow():
    # graphs.CudaGraphs replays the recorded kernels on the new inputs: bit for bit the eager call's, for each pair
    # (the recorded inputs are overwritten every call), for each shape (one graph per shape), and from two threads
    # at once (convert's stages run as threads and share nothing but the lock)
    from concurrent.futures import ThreadPoolExecutor

    from svg3d.config import TorchFlowConfig
    from svg3d.threads import own_stream

    pairs = [(src.cuda(), dst.cuda()) for _, src, dst, _, _ in rendered_pairs(("truck", "handheld", "dolly"))]
    pairs.append(tuple(x[..., :48, :80].contiguous() for x in pairs[0]))  # another shape
    eager = TorchFlow(TorchFlowConfig(cuda_graphs=False))
    graphed = TorchFlow()
    expected = [eager(src, dst) for src, dst in pairs]
    for _ in range(2):  # the first round records, the second replays
        for (src, dst), want in zip(pairs, expected, strict=True):
            assert torch.equal(graphed(src, dst), want)
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda p: graphed(*p), pairs * 3))
    assert all(torch.equal(g, w) for g, w in zip(got, expected * 3, strict=True))

    def on_own_stream(p):  # as convert's stage threads and fill runs (threads.own_stream): replays ordered by an event,
        own_stream(torch.device("cuda"))  # and each thread's own flow recorded while the others record theirs
        mine = TorchFlow()
        out = [mine(*q) for q in p] + [graphed(*q) for q in p]
        torch.cuda.current_stream().synchronize()  # (read on the main thread's stream below)
        return out

    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(on_own_stream, [pairs * 2] * 3))
    assert all(torch.equal(g, w) for run in got for g, w in zip(run, expected * 4, strict=True))
    assert len(graphed._run.graphs) == 2


@pytest.mark.gpu
def test_raft_mixed_precision_on_cuda(tmp_path):
    path = tmp_path / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    flow = make_flow("raft", device=torch.device("cuda"), model=str(path), iterations=4, mixed_precision=True)
    src, dst = shifted_pair(2, 1)
    out = flow(src.cuda(), dst.cuda())
    assert out.shape == (1, 2, 64, 96) and out.dtype == torch.float32 and torch.isfinite(out).all()


# ----------------------------------------------------------------------------------------------------------------------
# inverting a flow


def test_invert_flow_of_a_translation_is_its_negation():
    flow = torch.zeros(2, 2, 12, 16)
    flow[0, 0], flow[0, 1], flow[1, 0] = 2.5, -1.25, -3.0
    torch.testing.assert_close(invert_flow(flow), -flow, atol=1e-5, rtol=0)  # bilinear weights: float rounding


def test_invert_flow_of_a_zoom_maps_back():
    """A zoom about the centre, p -> c + 1.02 (p - c) (a dolly's flow): the inverse maps every target pixel back
    onto its source, to a thousandth of a pixel inside the image, and equals the analytic inverse."""
    h, w = 40, 60
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    c = torch.tensor([(w - 1) / 2, (h - 1) / 2]).view(2, 1, 1)
    p = torch.stack([u, v])  # (2, h, w) pixel centres
    flow = (0.02 * (p - c))[None]  # (1, 2, h, w)
    back = invert_flow(flow)
    exact = (p - c) / 1.02 - (p - c)  # p -> c + (p - c) / 1.02
    torch.testing.assert_close(back[0], exact, atol=1e-3, rtol=0)
    assert (-flow[0] - exact).abs().max() > 0.01  # where the plain negation would be off
