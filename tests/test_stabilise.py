"""Stage 2: guided filter, warping, consistency, stabilisation on a rendered scene, the CLI."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub: tests never download

import importlib.util
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from svg3d import io
from svg3d.filters import _box_filter_cumsum, box_filter, guided_filter
from svg3d.flow import DISFlow
from svg3d.scene import make_scene, render
from svg3d.source import read_clip
from svg3d.stages.stabilise import (
    StabiliseConfig,
    backward_warp,
    consistency_mask,
    stabilise_disparity,
    window_weights,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "third_party" / "RAFT" / "svg_enhance_depth.py"


def load_cli():
    spec = importlib.util.spec_from_file_location("svg_enhance_depth", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------------
# guided filter


@pytest.mark.parametrize(
    "h, w, radius, eps, scale",
    [
        (64, 96, 30, 1e-4, 1.0),  # the stage's settings
        (40, 50, 5, 1e-2, 5.0),
        (20, 25, 30, 1e-4, 1.0),  # radius larger than the image: reflection repeats
        (7, 9, 3, 1e-3, 10.0),
    ],
)
def test_guided_filter_matches_opencv(h, w, radius, eps, scale):
    rng = np.random.default_rng(h * w)
    guide = rng.random((h, w), dtype=np.float32)
    src = (rng.random((h, w), dtype=np.float32) * scale).astype(np.float32)
    ref = cv2.ximgproc.guidedFilter(guide, src, radius, eps)
    ours = guided_filter(torch.from_numpy(guide)[None], torch.from_numpy(src)[None], radius, eps)[0].numpy()
    err = np.abs(ours - ref).max()
    print(f"guided filter {h}x{w} r={radius} eps={eps}: max |torch - cv2| = {err:.2e}")
    assert err < 1e-4
    assert np.abs(ours - src).max() > 1e-3  # it filtered something


@pytest.mark.parametrize("h, w, radius", [(64, 96, 30), (20, 25, 30), (7, 9, 3), (1, 6, 2), (40, 50, 0)])
def test_box_filter_cpu_and_cumsum_paths_agree(h, w, radius):
    """OpenCV's box filter (the CPU's path) and the cumsums (any other device's) give the same means, reflection
    repeated where the radius passes the image, to float rounding."""
    x = torch.rand(3, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(h + w))
    torch.testing.assert_close(box_filter(x, radius), _box_filter_cumsum(x, radius), atol=1e-13, rtol=0)
    torch.testing.assert_close(box_filter(x.float(), radius), _box_filter_cumsum(x.float(), radius), atol=1e-5, rtol=0)
    assert box_filter(x.float(), radius).dtype == torch.float32
    if radius > 0:
        assert (box_filter(x, radius) - x).abs().max() > 0.01  # it averaged something


def test_guided_filter_batch_is_per_image():
    g = torch.rand(3, 16, 20)
    s = torch.rand(3, 16, 20)
    batched = guided_filter(g, s, 4, 1e-3)
    single = torch.stack([guided_filter(g[i : i + 1], s[i : i + 1], 4, 1e-3)[0] for i in range(3)])
    torch.testing.assert_close(batched, single)


def test_guided_filter_finite_on_flat_and_large_inputs():
    src = torch.rand(1, 32, 48)
    flat = torch.full((1, 32, 48), 7.0)
    out = guided_filter(flat, src, 30, 1e-4)
    assert torch.isfinite(out).all()
    # A flat guide carries no edges: the output is the box mean of the input.
    torch.testing.assert_close(out, guided_filter(flat, src, 30, 1e9), atol=1e-5, rtol=0)
    assert torch.isfinite(guided_filter(flat, flat, 30, 1e-4)).all()
    torch.testing.assert_close(guided_filter(flat, flat, 30, 1e-4), flat)
    # Large, nearly flat disparities: where float32 E[I^2] - E[I]^2 cancels catastrophically.
    big = 1e4 + 1e-3 * torch.rand(1, 32, 48)
    assert torch.isfinite(guided_filter(big, big, 30, 1e-4)).all()


# --------------------------------------------------------------------------------------------------
# warping and consistency


def test_backward_warp_one_pixel_and_rounding():
    image = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 3, 5).contiguous()  # value = column
    flow = torch.zeros(1, 2, 3, 5)
    flow[:, 0] = 1.0  # every pixel looks one column to the right
    warped, inside = backward_warp(image, flow)
    assert warped[0, 0, 0].tolist() == [1, 2, 3, 4, 0]
    assert inside[0, 0].tolist() == [True, True, True, True, False]
    flow[:, 0] = 0.4  # nearest sampling: rounds back to the same pixel
    assert torch.equal(backward_warp(image, flow)[0], image)
    flow[:, 0] = -0.6
    warped, inside = backward_warp(image, flow)
    assert warped[0, 0, 0].tolist() == [0, 0, 1, 2, 3] and not inside[0, 0, 0]


def test_consistency_thresholds_are_inclusive():
    rgb = torch.full((1, 3, 1, 4), 100.0)
    warped = rgb.clone()
    warped[0, 1, 0, 1] = 120.0  # exactly the threshold: valid
    warped[0, 2, 0, 2] = 121.0  # over it: invalid
    d = torch.tensor([[[1.0, 1.0, 1.0, 1.0]]])
    wd = torch.tensor([[[1.0, 1.0, 1.0, 3.0]]])  # range 2 -> |diff| <= 1 is consistent; pixel 3 differs by 2
    inside = torch.ones(1, 1, 4, dtype=torch.bool)
    mask = consistency_mask(rgb, d, warped, wd, inside, rgb_threshold=20, depth_ratio=0.5)
    assert mask[0, 0].tolist() == [True, True, False, False]
    inside[0, 0, 0] = False
    assert not consistency_mask(rgb, d, warped, wd, inside, rgb_threshold=20, depth_ratio=0.5)[0, 0, 0]


def test_window_weights():
    torch.testing.assert_close(window_weights(3), torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64))
    w5 = window_weights(5)
    torch.testing.assert_close(w5 / w5[2], torch.tensor([0.25, 0.5, 1.0, 0.5, 0.25], dtype=torch.float64))


def test_config_rejects_bad_values():
    from svg3d.checks import InputError

    for bad in (dict(window_size=2), dict(window_size=0), dict(eps=0.0), dict(radius=-1), dict(rgb_threshold=-1)):
        with pytest.raises(InputError):
            StabiliseConfig(**bad)


# --------------------------------------------------------------------------------------------------
# stabilisation on a rendered scene (disparity = 1 / Z)


def panning_clip(seed: int, frames: int, *, h: int = 64, w: int = 96, step: float = 0.03):
    """A rendered clip whose camera also slides right by ``step`` metres a frame (parallax everywhere).

    Returns rgb ``(T, 3, H, W)`` in [0, 1] and the true disparity 1 / Z ``(T, H, W)`` (a sideways
    camera move does not change Z, so disparity stays comparable across frames).
    """
    scene = make_scene(seed, num_frames=frames, height=h, width=w)
    parts = [render(scene, baseline=t * step, frames=range(t, t + 1)) for t in range(frames)]
    return torch.cat([p[0] for p in parts]), 1.0 / torch.cat([p[1] for p in parts])


def corrupted_clip(seed: int = 0, frames: int = 12):
    rgb, truth = panning_clip(seed, frames)
    g = torch.Generator().manual_seed(100)
    scale = 1.0 + 0.1 * torch.randn(frames, 1, 1, generator=g)  # per-frame scale jitter, 10 %
    noise = 0.02 * truth.mean() * torch.randn(truth.shape, generator=g)  # per-pixel noise, 2 % of the mean
    return rgb, truth, (truth * scale + noise).clamp_min(0.0)


def error(x, truth):
    """Mean absolute error relative to the mean disparity."""
    return ((x - truth).abs().mean() / truth.mean()).item()


def flicker(x, truth):
    """Mean error of the frame-to-frame change (the true change is subtracted: motion is not flicker)."""
    return (((x[1:] - x[:-1]) - (truth[1:] - truth[:-1])).abs().mean() / truth.mean()).item()


def test_flow_and_warp_conventions_agree():
    """DIS flow from frame t to t+1, then backward-warping t+1 by it, lines t+1 up with t."""
    rgb, _ = panning_clip(3, 2, step=0.06)  # 2-5 px of parallax
    flow = DISFlow()(rgb[:1], rgb[1:])
    warped, inside = backward_warp(rgb[1:], flow)
    before = (rgb[1] - rgb[0]).abs().mean().item()
    after = (warped[0] - rgb[0]).abs().mean(dim=0)[inside[0]].mean().item()
    print(f"mean colour difference to frame 0: {before:.4f} unwarped, {after:.4f} warped")
    assert after < 0.5 * before


def test_stabilisation_reduces_error_and_flicker():
    rgb, truth, noisy = corrupted_clip()
    out = stabilise_disparity(rgb, noisy, DISFlow())
    e0, e1, f0, f1 = error(noisy, truth), error(out, truth), flicker(noisy, truth), flicker(out, truth)
    print(f"error to the truth {e0:.4f} -> {e1:.4f}; flicker {f0:.4f} -> {f1:.4f}")
    assert out.dtype == torch.float32 and out.shape == noisy.shape and (out >= 0).all()
    assert e1 < 0.8 * e0
    assert f1 < 0.65 * f0


def test_static_scene_changes_nothing_but_the_filter():
    rgb, z = render(make_scene(1, num_frames=5, height=64, width=96, static=True))
    d = 1.0 / z
    out = stabilise_disparity(rgb, d, DISFlow())
    torch.testing.assert_close(out, guided_filter(d, d, 30, 1e-4).clamp_min(0), atol=1e-5, rtol=1e-5)


def test_single_frame_is_only_filtered():
    rgb, z = render(make_scene(2, num_frames=1, height=32, width=48))
    d = 1.0 / z
    torch.testing.assert_close(stabilise_disparity(rgb, d, DISFlow()), guided_filter(d, d, 30, 1e-4).clamp_min(0))


def test_results_do_not_depend_on_batching_or_input_dtype():
    rgb, _, noisy = corrupted_clip(frames=6)
    base = stabilise_disparity(rgb, noisy, DISFlow(), StabiliseConfig(window_size=5, pairs_per_batch=64))
    one = stabilise_disparity(rgb, noisy, DISFlow(), StabiliseConfig(window_size=5, pairs_per_batch=1))
    torch.testing.assert_close(one, base, atol=0, rtol=0)
    rgb8 = (rgb * 255).round().to(torch.uint8)
    torch.testing.assert_close(
        stabilise_disparity(rgb8, noisy, DISFlow()), stabilise_disparity(rgb8.float() / 255, noisy, DISFlow())
    )


class CountedFlow:
    """DIS, counting the pairs asked for."""

    name = "dis"

    def __init__(self) -> None:
        self.dis, self.pairs = DISFlow(), []

    def __call__(self, src, dst):
        self.pairs += [(a.sum().item(), b.sum().item()) for a, b in zip(src, dst, strict=True)]
        return self.dis(src, dst)


@pytest.mark.parametrize("invert", [True, False])
def test_each_flow_once_and_parts_equal_the_whole(invert):
    """Every ordered pair's flow is computed once in a call (the backward ones not at all when inverted), a part
    with its context gives the whole clip's result exactly, whatever the blocks, and consecutive parts that hand
    their flows over compute each pair once in all."""
    rgb, _, noisy = corrupted_clip(frames=9)
    for window, pairs in ((3, 8), (3, 1), (5, 3)):
        config = StabiliseConfig(window_size=window, pairs_per_batch=pairs, invert_flows=invert)
        counted = CountedFlow()
        whole = stabilise_disparity(rgb, noisy, counted, config)
        r = window // 2
        forward = sum(9 - k for k in range(1, r + 1))
        assert len(counted.pairs) == (forward if invert else 2 * forward)
        assert len(set(counted.pairs)) == len(counted.pairs)
        for a, b in ((0, 4), (4, 9), (3, 5)):
            lo, hi = max(0, a - r), min(9, b + r)
            part = stabilise_disparity(rgb[lo:hi], noisy[lo:hi], DISFlow(), config, targets=(a - lo, b - lo))
            torch.testing.assert_close(part, whole[a:b], atol=0, rtol=0)
        # consecutive parts handing over the flows they computed (``kept``, as run_stabilise): no pair twice
        counted, kept, parts = CountedFlow(), {}, []
        for a, b in ((0, 2), (2, 3), (3, 9)):
            lo, hi = max(0, a - r), min(9, b + r)
            parts.append(stabilise_disparity(rgb[lo:hi], noisy[lo:hi], counted, config, targets=(a - lo, b - lo),
                                             kept=kept, first_frame=lo))  # fmt: skip
        torch.testing.assert_close(torch.cat(parts), whole, atol=0, rtol=0)
        assert len(counted.pairs) == (forward if invert else 2 * forward) == len(set(counted.pairs))


def test_inverted_flows_stabilise_as_well_as_computed_ones():
    """Half the flows (the backward ones inverted): error and flicker to the true disparity within 2 % of computed ones."""
    rgb, truth, noisy = corrupted_clip(seed=3, frames=10)
    computed = stabilise_disparity(rgb, noisy, DISFlow(), StabiliseConfig(invert_flows=False))
    inverted = stabilise_disparity(rgb, noisy, DISFlow(), StabiliseConfig(invert_flows=True))
    e0, e1, f0, f1 = error(computed, truth), error(inverted, truth), flicker(computed, truth), flicker(inverted, truth)
    print(f"error {e0:.5f} computed, {e1:.5f} inverted; flicker {f0:.5f}, {f1:.5f}")
    assert abs(e1 / e0 - 1) < 0.02 and abs(f1 / f0 - 1) < 0.02
    assert not torch.equal(computed, inverted)  # the flows did differ


@pytest.mark.gpu
def test_cuda_matches_cpu():
    rgb, _, noisy = corrupted_clip(frames=6)
    cpu = stabilise_disparity(rgb, noisy, DISFlow())
    gpu = stabilise_disparity(rgb.cuda(), noisy.cuda(), DISFlow())
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------------------------------
# the CLI


def write_clip(folder: Path, frames: int = 4, seed: int = 0) -> tuple[Path, Path]:
    """Frames (PNG, lossless) and their true disparity in the seed layout: images/ and depths/."""
    rgb, z = render(make_scene(seed, num_frames=frames, height=48, width=64))
    images, depths = folder / "images", folder / "depths"
    for t in range(frames):
        io.write_image(images / f"{t:05d}.png", (rgb[t].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        io.write_depth(depths / f"{t:05d}_depth.npy", (1.0 / z[t]).numpy())
    return images, depths


def run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    rc = load_cli().main(argv)
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("invert", [False, True])
def test_cli_writes_refined_depths(tmp_path, capsys, invert):
    """The seed script computes both flows as the reference does; ``--invert_flows`` is convert's way (the library's
    default). Either: the library's numbers."""
    images, depths = write_clip(tmp_path)
    out = tmp_path / "depths_refined"
    argv = [f"--path={images}", f"--depth_path={depths}", f"--out_dir={out}", "--flow", "dis", "--device", "cpu"]
    argv += ["--invert_flows"] if invert else []
    rc, err = run_cli(capsys, argv)
    assert rc == 0, err
    files = io.list_depths(out)  # strict: previews are in a sub-folder
    assert [f.name for f in files] == [f"{t:05d}_depth.npy" for t in range(4)]
    refined = io.read_depths(out)
    assert refined.dtype == np.float32 and refined.shape == (4, 48, 64)
    assert sorted(p.name for p in (out / "preview").iterdir()) == [f"{t:05d}_depth.png" for t in range(4)]
    # Same numbers as the library on the same inputs.
    frames = torch.from_numpy(read_clip(images).frames).permute(0, 3, 1, 2)
    config = StabiliseConfig(invert_flows=invert)
    expected = stabilise_disparity(frames, torch.from_numpy(io.read_depths(depths)), DISFlow(), config)
    np.testing.assert_allclose(refined, expected.numpy(), atol=1e-6)
    other = stabilise_disparity(frames, torch.from_numpy(io.read_depths(depths)), DISFlow(), StabiliseConfig(invert_flows=not invert))
    assert np.abs(refined - other.numpy()).max() > 1e-6  # the flag changes the flows: the comparison can tell them apart


@pytest.mark.parametrize(
    "break_it, flags, message",
    [
        (lambda images, depths: (depths / "00003_depth.npy").unlink(), [], "3 depth maps for 4 frames"),
        (lambda images, depths: (depths / "notes.txt").write_text("x"), [], "notes.txt: not a depth map"),
        (lambda images, depths: None, ["--window_size", "4"], "--window_size 4"),
        (lambda images, depths: None, ["--file_suffix", ".jpg"], "no .jpg frames"),
        (lambda images, depths: None, ["--flow", "dis", "--small"], "--flow dis uses no network"),
        (lambda images, depths: None, ["--flow", "raft"], "RAFT 'raft_large'"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, capsys, monkeypatch, break_it, flags, message):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))  # no cached RAFT weights
    images, depths = write_clip(tmp_path, frames=4)
    break_it(images, depths)
    argv = [f"--path={images}", f"--depth_path={depths}", f"--out_dir={tmp_path / 'out'}", "--device", "cpu", *flags]
    rc, err = run_cli(capsys, argv)
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err


def test_cli_refuses_to_overwrite_its_input(tmp_path, capsys):
    images, depths = write_clip(tmp_path, frames=2)
    rc, err = run_cli(capsys, [f"--path={images}", f"--depth_path={depths}", f"--out_dir={depths}", "--flow", "dis"])
    assert rc == 2 and "overwrite" in err


def test_seed_command_runs_offline_with_dis(tmp_path):
    """The README's command, unchanged, from inside third_party/RAFT: no RAFT weights -> DIS, said once."""
    clip = tmp_path / "Videos" / "clip"
    write_clip(clip, frames=3)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch")}
    cmd = [
        sys.executable,
        "svg_enhance_depth.py",
        f"--path={clip}/images/",
        f"--depth_path={clip}/depths/",
        f"--out_dir={clip}/depths_refined/",
    ]
    res = subprocess.run(cmd, cwd=SCRIPT.parent, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("using OpenCV DIS") == 1
    assert len(io.list_depths(clip / "depths_refined")) == 3
