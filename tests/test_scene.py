"""The ground-truth renderer: deterministic, exact depth where it can be computed by hand."""

from __future__ import annotations

import torch

from svg3d import scene


def test_deterministic_for_a_seed():
    a = scene.render(scene.make_scene(7, num_frames=2, height=24, width=40), 0.03)
    b = scene.render(scene.make_scene(7, num_frames=2, height=24, width=40), 0.03)
    c = scene.render(scene.make_scene(8, num_frames=2, height=24, width=40), 0.03)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_exact_depth_of_backdrop_and_ground():
    s = scene.make_scene(0, num_frames=1, height=64, width=96, num_boxes=0, num_spheres=0)
    rgb, z = scene.render(s)
    rows = torch.arange(64, dtype=torch.float32)
    dy = (rows - 32) / s.focal
    ground = torch.where(dy > 0, s.ground_y / dy.clamp_min(1e-12), torch.tensor(float("inf")))
    expected = torch.minimum(ground, torch.tensor(s.backdrop_z))[:, None].expand(64, 96)
    assert torch.allclose(z[0], expected, rtol=1e-5)
    assert rgb.min() >= 0 and rgb.max() <= 1 and rgb.std() > 0.05  # textured, not flat


def test_objects_move_unless_static():
    moving = scene.make_scene(1, num_frames=3, height=32, width=48)
    still = scene.make_scene(1, num_frames=3, height=32, width=48, static=True)
    _, zm = scene.render(moving)
    _, zs = scene.render(still)
    assert not torch.equal(zm[0], zm[2])
    assert torch.equal(zs[0], zs[2])
    near, far = moving.near_far
    assert zm.min() >= near - 1e-4 and zm.max() <= far + 1e-4


def test_a_baseline_shifts_the_backdrop_by_fx_b_over_z():
    s = scene.make_scene(2, num_frames=1, height=32, width=64, num_boxes=0, num_spheres=0)
    b = 8 * s.backdrop_z / s.focal  # 8 px at the backdrop
    left, _ = scene.render(s, 0.0)
    right, _ = scene.render(s, b)
    assert torch.allclose(right[0, :, :8, :-8], left[0, :, :8, 8:], atol=1e-4)  # top rows are all backdrop
