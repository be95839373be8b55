"""Classical hole filling: background side, time, space, on hand-made cases and rendered scenes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from svg3d import camera, fill, matrix, metrics, scene
from svg3d.fill import FROM_SPACE, FROM_TIME, KNOWN, FillConfig


def test_background_depth_takes_the_farther_side():
    """Row: fg (2 m) | hole hole | bg (8 m) | hole (border). The hole between them is background (8 m)."""
    z = torch.tensor([[[2.0, 2.0, 0.0, 0.0, 8.0, 8.0, 0.0]]])
    known = z > 0
    bg = fill.background_depth(z, known)
    assert bg.tolist() == [[[0.0, 0.0, 8.0, 8.0, 0.0, 0.0, 8.0]]]
    # mirrored: the background is on the left now, the answer must not depend on the side
    assert fill.background_depth(z.flip(-1), known.flip(-1)).flip(-1).tolist() == bg.tolist()
    # a row with nothing known has no background
    assert fill.background_depth(torch.zeros(1, 1, 4), torch.zeros(1, 1, 4, dtype=torch.bool)).eq(0).all()


@pytest.mark.parametrize("radius", [1, 2, 5, 13])
def test_max_filter_matches_max_pool(radius):
    x = torch.randn(3, 17, 29)
    want = F.max_pool2d(F.pad(x[:, None], (radius,) * 4, value=-math.inf), 2 * radius + 1, stride=1)[:, 0]
    assert torch.equal(fill._max_filter(x, radius), want)


def test_pull_push_keeps_known_pixels_and_fills_a_constant():
    img = torch.rand(2, 3, 20, 30)
    w = (torch.rand(2, 1, 20, 30) > 0.7).float()
    out = fill.pull_push(img, w)
    assert torch.equal(out[w.expand_as(out) > 0], img[w.expand_as(img) > 0])
    flat = torch.full((1, 3, 16, 16), 0.3)
    hole = torch.ones(1, 1, 16, 16)
    hole[..., 4:12, 3:9] = 0
    assert torch.allclose(fill.pull_push(flat, hole), flat, atol=1e-6)
    assert fill.pull_push(img[:1], torch.zeros(1, 1, 20, 30)).eq(0).all()  # nothing known: zeros


def occluder_scene(t: int = 1, shift: int = 0):
    """A flat background (colour A, 8 m) with a near block (colour B, 2 m) and a hole on its right.

    Returns images (1, T, 3, H, W), masks (1, T, 1, H, W), depth (1, T, H, W); the hole is 6 px wide.
    ``shift`` moves the block (and its hole) right by that many pixels per frame.
    """
    h, w = 24, 40
    a, b = torch.tensor([0.2, 0.6, 0.3]), torch.tensor([0.9, 0.1, 0.8])
    img = a.view(1, 3, 1, 1).repeat(t, 1, h, w)
    z = torch.full((t, h, w), 8.0)
    known = torch.ones(t, h, w, dtype=torch.bool)
    for i in range(t):
        x0 = 8 + i * shift
        img[i, :, 6:18, x0 : x0 + 10] = b.view(3, 1, 1)
        z[i, 6:18, x0 : x0 + 10] = 2.0
        known[i, 6:18, x0 + 10 : x0 + 16] = False
    img = img * known[:, None]
    z = z * known
    return img[None], known[None, :, None], z[None]


def test_spatial_fill_never_smears_the_occluder_into_the_hole():
    images, masks, depth = occluder_scene()
    a = images[0, 0, :, 0, 0]
    out = fill.fill_frame_matrix(images, masks, depth, FillConfig(window=0)).images[0, 0]
    hole = ~masks[0, 0, 0]
    err = (out[:, hole] - a[:, None]).abs().max().item()
    assert err < 1e-5, f"hole pixels differ from the background colour by {err}"
    # The test can fail: depth-blind Telea pulls the occluder's colour in.
    telea = fill.telea_fill(images[0], masks[0, :, 0])[0]
    assert (telea[:, hole] - a[:, None]).abs().max().item() > 0.1


def test_temporal_fill_copies_background_seen_in_other_frames():
    """The block moves 3 px per frame: most of each frame's hole was visible background in another frame."""
    h, w, t = 24, 48, 6
    texture = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
    images, masks, depth = occluder_scene(t, shift=3)
    background = masks[0, :, 0] & (depth[0] == 8.0)
    images = torch.where(background[:, None], texture[:, :, :40], images[0])[None]  # textured backdrop
    res = fill.fill_frame_matrix(images, masks, depth, FillConfig(patch_radius=8))
    origin = res.origin[0]
    from_time = origin == FROM_TIME
    assert from_time.sum() > 0.5 * (origin != KNOWN).sum()
    truth = texture[:, :, :40].expand(t, -1, -1, -1)
    assert torch.allclose(res.images[0].permute(1, 0, 2, 3)[:, from_time], truth.permute(1, 0, 2, 3)[:, from_time], atol=1e-6)


def test_temporal_fill_rejects_a_panning_camera():
    """Texture moving 5 px per frame under a fixed hole: copying the same place would be wrong, so nothing is."""
    h, w, t = 24, 64, 5
    wide = torch.rand(3, h, w + 5 * t, generator=torch.Generator().manual_seed(1))
    images = torch.stack([wide[:, :, 5 * i : 5 * i + w] for i in range(t)])
    known = torch.ones(t, h, w, dtype=torch.bool)
    known[:, 8:16, 30:36] = False
    depth = torch.full((t, h, w), 8.0) * known
    res = fill.fill_frame_matrix((images * known[:, None])[None], known[None, :, None], depth[None])
    assert not (res.origin == FROM_TIME).any()
    assert (res.origin == FROM_SPACE).sum() == (~known).sum()


def test_results_do_not_depend_on_the_batch_size():
    images, masks, depth = occluder_scene(7, shift=2)
    a = fill.fill_frame_matrix(images, masks, depth, FillConfig(frames_per_batch=2))
    b = fill.fill_frame_matrix(images, masks, depth, FillConfig(frames_per_batch=16))
    assert torch.equal(a.origin, b.origin)
    assert torch.allclose(a.images, b.images, rtol=0, atol=1e-6)  # float rounding of batched kernels only


def rendered(seed: int, *, static: bool = False, t: int = 8, h: int = 96, w: int = 160):
    """Left-eye frame matrix of a rendered scene (2 views), its warped depth, and the true right eye."""
    sc = scene.make_scene(seed, num_frames=t, height=h, width=w, static=static)
    rgb, z = scene.render(sc)
    truth, _ = scene.render(sc, camera.DEFAULT_BASELINE)
    frames = (rgb.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()  # T 3 H W -> T H W 3
    fm = matrix.frame_matrix_from_clip(frames, (1 / z).numpy(), matrix.MatrixConfig(num_views=2, metric_depth=True))
    z_metric = camera.disparity_to_depth(1 / z, metric=True)
    depth = fill.warp_depth(z_metric, torch.tensor(fm.info.baselines), fm.info.focal)
    return fm, depth, truth


def test_warped_depth_has_the_frame_matrix_holes():
    fm, depth, _ = rendered(3, t=3)
    assert torch.equal(depth > 0, fm.masks[:, :, 0])
    assert (~fm.masks[1]).any()


def test_classical_fill_beats_telea_in_the_disocclusions(record_property):
    """Rendered scenes, moving objects, static camera: PSNR inside the holes of the right eye."""
    ours, telea = [], []
    for seed in range(3):
        fm, depth, truth = rendered(seed)
        hole = ~fm.masks[1, :, 0]
        filled = fill.fill_frame_matrix(fm.images, fm.masks, depth, views=[1]).images[0]
        baseline = fill.telea_fill(fm.images[1], fm.masks[1, :, 0])
        ours.append(metrics.masked_psnr(filled, truth, hole))
        telea.append(metrics.masked_psnr(baseline, truth, hole))
    record_property("psnr_disoccluded_classical", ours)
    record_property("psnr_disoccluded_telea", telea)
    message = f"classical {np.round(ours, 2)} dB vs Telea {np.round(telea, 2)} dB"
    assert np.mean(ours) > np.mean(telea) + 1.0, message
    assert all(o > t for o, t in zip(ours, telea, strict=True)), message


def test_no_flicker_of_filled_regions_on_a_static_shot():
    """Static scene and camera, fresh noise in every frame: the fill of the never-seen holes averages
    the noise away instead of copying it (Telea copies nearby pixels, so it flickers with the noise)."""
    fm, depth, _ = rendered(0, static=True, t=6)
    noise = torch.randn(fm.images.shape, generator=torch.Generator().manual_seed(0)) * (3 / 255)
    images = (fm.images + noise).clamp(0, 1) * fm.masks
    known, hole = fm.masks[1, :, 0], ~fm.masks[1, :, 0]
    filled = fill.fill_frame_matrix(images, fm.masks, depth, views=[1]).images[0]
    telea = fill.telea_fill(images[1], known)
    noise_flicker = metrics.flicker(images[1], known)  # what the noise does to known pixels
    ours, naive = metrics.flicker(filled, hole), metrics.flicker(telea, hole)
    assert ours < 0.5 * noise_flicker, f"filled {ours:.2f} vs noise {noise_flicker:.2f} (0-255)"
    assert ours < naive, f"filled {ours:.2f} vs Telea {naive:.2f}"


def test_filled_regions_flicker_less_than_telea_with_moving_objects():
    fm, depth, truth = rendered(1, t=8)
    hole = ~fm.masks[1, :, 0]
    ours = metrics.flicker(fill.fill_frame_matrix(fm.images, fm.masks, depth, views=[1]).images[0], hole)
    naive = metrics.flicker(fill.telea_fill(fm.images[1], fm.masks[1, :, 0]), hole)
    assert ours < naive, f"filled {ours:.2f} vs Telea {naive:.2f}; the true video {metrics.flicker(truth, hole):.2f}"


def test_fill_checks_shapes_and_settings():
    images, masks, depth = occluder_scene()
    with pytest.raises(ValueError, match="disagree on H"):
        fill.fill_frame_matrix(images, masks, depth[:, :, :-1])
    with pytest.raises(ValueError, match=r"V T H W"):
        fill.fill_frame_matrix(images, masks, depth[0])
    with pytest.raises(ValueError, match="window"):
        FillConfig(window=-1)


def test_region_metrics():
    a = torch.zeros(2, 3, 8, 8)
    b = a.clone()
    b[:, :, :4] = 0.1  # error 0.1 in the top half only
    top = torch.zeros(2, 8, 8, dtype=torch.bool)
    top[:, :4] = True
    assert metrics.masked_psnr(a, b, top) == pytest.approx(20.0)
    assert metrics.masked_psnr(a, b, ~top) == math.inf
    assert math.isnan(metrics.masked_psnr(a, b, torch.zeros_like(top)))
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert metrics.masked_ssim(img, img, torch.ones(1, 16, 16, dtype=torch.bool)) == pytest.approx(1.0, abs=1e-5)
    assert metrics.masked_ssim(img, img.flip(-1), torch.ones(1, 16, 16, dtype=torch.bool)) < 0.5
    video = torch.zeros(3, 3, 4, 4)
    video[1] = 2 / 255  # 0 -> 2 -> 0 on the 0-255 scale
    assert metrics.flicker(video, torch.ones(3, 4, 4, dtype=torch.bool)) == pytest.approx(2.0)
