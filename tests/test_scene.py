"""The ground-truth renderer: deterministic, exact depth where it can be computed by hand."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
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


# --------------------------------------------------------------------------------------------------
# a moving camera and real-image textures


def _backdrop_only(camera_motion, *, frames: int = 4, height: int = 32, width: int = 64, **kw):
    """The backdrop plane alone (no objects, the ground moved out of sight), seen by a camera that moves."""
    s = scene.make_scene(3, num_frames=frames, height=height, width=width, num_boxes=0, num_spheres=0, camera_motion=camera_motion, **kw)
    return replace(s, ground_y=1e6)


def test_static_preset_is_the_default_camera():
    a = scene.render(scene.make_scene(5, num_frames=2, height=24, width=40), 0.05)
    b = scene.render(scene.make_scene(5, num_frames=2, height=24, width=40, camera_motion="static"), 0.05)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="camera 'orbit'"):
        scene.make_scene(0, camera_motion="orbit")


@pytest.mark.parametrize("motion", ["pan", "truck", "dolly", "handheld"])
def test_the_other_eye_stays_exact_for_a_moving_camera(motion):
    """A view at baseline b is the camera moved along its own x axis, whatever its pose: the point a right-eye
    pixel (u', v) sees at depth Z sits in the left eye at u = u' + f b / Z, at the same depth. On the backdrop,
    1/Z is affine along a row (a plane), so the left eye's 1/Z interpolated there must equal the right eye's."""
    s = _backdrop_only(motion, height=40, width=96)
    b = 0.1
    left_rgb, left_z = scene.render(s, 0.0)
    right_rgb, right_z = scene.render(s, b)
    assert s.moving_camera
    for t in range(s.num_frames):
        zr = right_z[t]  # (H, W)
        u = torch.arange(96, dtype=torch.float64) + s.focal * b / zr.double()  # where the left eye sees each point
        inside = u <= 95
        inv_left = 1.0 / left_z[t].double()
        x0 = u.floor().clamp(0, 94).long()
        frac = u - x0
        interp = inv_left.gather(1, x0) * (1 - frac) + inv_left.gather(1, x0 + 1) * frac
        # float32 depth (~1e-7 relative) and float32 ray directions: 1e-5 relative is far above rounding
        assert torch.allclose(interp[inside], 1.0 / zr.double()[inside], rtol=1e-5)


def test_a_moving_camera_reprojects_the_static_backdrop_exactly():
    """Frame t's backdrop points, moved to frame s with the camera poses (world = R X + c), land where frame s sees
    the same colour; the procedural texture is smooth at pixel scale, so bilinear sampling agrees closely."""
    s = _backdrop_only("handheld", frames=6, height=48, width=96)
    rgb, z = scene.render(s)
    t, u = 1, 5
    rot_t, c_t = (torch.tensor(a) for a in scene._pose(s, t))
    rot_u, c_u = (torch.tensor(a) for a in scene._pose(s, u))
    v, x = torch.meshgrid(torch.arange(48.0), torch.arange(96.0), indexing="ij")
    zt = z[t].double()
    cam = torch.stack([(x - 48) / s.focal * zt, (v - 24) / s.focal * zt, zt], -1)  # (H, W, 3) camera coordinates
    world = cam @ rot_t.T + c_t
    at_u = (world - c_u) @ rot_u  # R^T (X - c) in row form
    px = at_u[..., 0] / at_u[..., 2] * s.focal + 48
    py = at_u[..., 1] / at_u[..., 2] * s.focal + 24
    inside = (px >= 1) & (px <= 94) & (py >= 1) & (py <= 46)
    assert inside.sum() > 1000
    # the depth at frame u is the reprojected point's own z (exact geometry)
    grid = torch.stack([px / 47.5 - 1, py / 23.5 - 1], -1)[None].float()
    z_u = torch.nn.functional.grid_sample(z[u][None, None], grid, align_corners=True)[0, 0]
    assert torch.allclose(z_u[inside].double(), at_u[..., 2][inside], rtol=1e-4)  # bilinear on a plane: 1/Z is affine, Z nearly so
    colour = torch.nn.functional.grid_sample(rgb[u][None], grid, align_corners=True)[0]
    err = (colour - rgb[t]).abs().amax(0)[inside]
    assert err.median() < 0.01 and err.mean() < 0.02, (err.median(), err.mean())


def test_image_textures_show_the_image_and_videos_change_with_the_frame():
    flat = np.zeros((20, 30, 3), dtype=np.uint8)
    flat[..., 0] = 200  # a flat red image: the backdrop shows exactly that colour (real images are not shaded)
    s = _backdrop_only("static", textures=[flat])
    rgb, z = scene.render(s)
    backdrop = z[0] >= s.backdrop_z * 0.99
    assert torch.allclose(rgb[0][:, backdrop], torch.tensor([200 / 255, 0, 0])[:, None], atol=1e-6)
    video = np.stack([np.full((20, 30, 3), 40 * i, dtype=np.uint8) for i in range(3)])  # grey levels 0, 40, 80
    s = _backdrop_only("static", frames=4, textures=[video])
    rgb, z = scene.render(s)
    levels = [rgb[t, 0][z[t] >= s.backdrop_z * 0.99].mean().item() * 255 for t in range(4)]
    assert levels == pytest.approx([0, 40, 80, 80], abs=1e-3)  # the last frame is held past the video's end
    with pytest.raises(ValueError, match="texture"):
        scene.make_scene(0, textures=[np.zeros((4, 4))])
