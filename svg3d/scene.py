"""A ground-truth scene renderer: colour video + exact metric depth from a camera at any baseline.

The scene: a far textured backdrop, a textured ground plane, and textured boxes and spheres at
several depths that move over time, so disocclusions differ from frame to frame. Rendering is
per-pixel ray casting in torch (vectorised over frames and pixels): each pixel takes the colour of the
exact surface point its centre ray hits, with view-independent (Lambertian) shading, so any two views
of the scene agree wherever a surface point is visible in both — exactly what a depth-based warp
should reproduce. Deterministic for a seed.

Geometry follows ``camera``: pinhole, principal point (W/2, H/2), integer pixel coordinates are pixel
centres, +x right, +y down, +z forward; a view at baseline ``b`` is the camera moved to x = b.
Depth is Z (metres along the optical axis), i.e. ray parameter t for rays with unit z component.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import camera

NUM_WAVES = 2  # sinusoids per colour channel and texture (plus a checker): enough detail for optical flow


@dataclass(frozen=True)
class Scene:
    """Parameters of a synthetic scene (all float64 numpy; built by ``make_scene``).

    box_center0 (B, 3), box_half (B, 3), box_velocity (B, 3): axis-aligned boxes, metres, metres/frame.
    sphere_center0 (S, 3), sphere_radius (S,), sphere_velocity (S, 3): spheres.
    tex_freq (N, K, 3, 3) rad/m (wave, channel, xyz), tex_phase (N, K, 3), tex_base (N, 3), tex_checker (N,) m: one texture per
    surface, surfaces ordered [backdrop, ground, boxes..., spheres...].
    """

    height: int
    width: int
    focal: float
    num_frames: int
    backdrop_z: float
    ground_y: float
    box_center0: np.ndarray
    box_half: np.ndarray
    box_velocity: np.ndarray
    sphere_center0: np.ndarray
    sphere_radius: np.ndarray
    sphere_velocity: np.ndarray
    tex_freq: np.ndarray
    tex_phase: np.ndarray
    tex_base: np.ndarray
    tex_checker: np.ndarray

    @property
    def near_far(self) -> tuple[float, float]:
        """Bounds (metres) of the depth any pixel can have: the nearest object face, the backdrop."""
        near_box = (self.box_center0[:, 2] - self.box_half[:, 2]).min()
        near_sphere = (self.sphere_center0[:, 2] - self.sphere_radius).min()
        return float(min(near_box, near_sphere)), self.backdrop_z


def make_scene(
    seed: int = 0,
    *,
    num_frames: int = 16,
    height: int = 320,
    width: int = 576,
    focal: float | None = None,
    static: bool = False,
    num_boxes: int = 3,
    num_spheres: int = 1,
) -> Scene:
    """A random scene whose objects stay in view over ``num_frames`` frames.

    Depth range about 1.5 m (nearest object) to 8 m (backdrop), the ground 0.9 m below the camera.
    ``static`` freezes the objects (for tests of temporal filters). ``focal`` defaults to
    ``camera.default_focal(width)``.
    """
    rng = np.random.default_rng(seed)
    focal = camera.default_focal(width) if focal is None else focal
    half_fov_x = 0.5 * width / focal  # tan of the half field of view
    half_fov_y = 0.5 * height / focal
    # Objects spread over depth bands so that they occlude each other and the background.
    depths = np.linspace(1.6, 4.0, num_boxes + num_spheres) + rng.uniform(-0.15, 0.15, num_boxes + num_spheres)
    rng.shuffle(depths)
    centers, halves, velocities = [], [], []
    for z in depths[:num_boxes]:
        half = np.array([rng.uniform(0.12, 0.3), rng.uniform(0.15, 0.35), rng.uniform(0.1, 0.3)]) * z / 2.5
        x = rng.uniform(-0.6, 0.6) * half_fov_x * z
        y = rng.uniform(-0.5, 0.4) * half_fov_y * z
        centers.append([x, y, z + half[2]])
        halves.append(half)
        # Sideways motion of up to ~2 px/frame at this depth, so disocclusions move frame to frame.
        velocities.append([rng.choice([-1, 1]) * rng.uniform(0.8, 2.0) * z / focal, 0.0, 0.0])
    sph_c, sph_r, sph_v = [], [], []
    for z in depths[num_boxes:]:
        r = rng.uniform(0.15, 0.3) * z / 2.5
        sph_c.append([rng.uniform(-0.5, 0.5) * half_fov_x * z, rng.uniform(-0.4, 0.3) * half_fov_y * z, z + r])
        sph_r.append(r)
        sph_v.append([rng.choice([-1, 1]) * rng.uniform(0.8, 2.0) * z / focal, 0.0, rng.uniform(-0.01, 0.01)])
    num_surfaces = 2 + num_boxes + num_spheres
    # Texture scales are set in pixels at each surface's typical depth — wave periods of 14-60 px,
    # checker cells of 12-30 px — so that no texture aliases at the rendered resolution and
    # half-pixel offsets change colours only a little (what the warp tests rely on).
    surface_depth = np.concatenate([[8.0, 4.0], depths[:num_boxes], depths[num_boxes:]])[:, None, None, None]
    shape = (num_surfaces, NUM_WAVES, 3, 3)
    cycles_per_px = rng.uniform(1 / 60, 1 / 14, shape) / np.sqrt(3)  # / sqrt(3): three xyz components
    freq = 2 * np.pi * cycles_per_px * focal / surface_depth * rng.choice([-1, 1], shape)
    checker = rng.uniform(12, 30, num_surfaces) * surface_depth[:, 0, 0, 0] / focal
    zero = lambda n: np.zeros((n, 3))  # noqa: E731
    scene = Scene(
        height=height,
        width=width,
        focal=float(focal),
        num_frames=num_frames,
        backdrop_z=8.0,
        ground_y=0.9,
        box_center0=np.array(centers).reshape(-1, 3),
        box_half=np.array(halves).reshape(-1, 3),
        box_velocity=zero(num_boxes) if static else np.array(velocities).reshape(-1, 3),
        sphere_center0=np.array(sph_c).reshape(-1, 3),
        sphere_radius=np.array(sph_r),
        sphere_velocity=zero(num_spheres) if static else np.array(sph_v).reshape(-1, 3),
        tex_freq=freq,
        tex_phase=rng.uniform(0, 2 * np.pi, (num_surfaces, NUM_WAVES, 3)),
        tex_base=rng.uniform(0.25, 0.75, (num_surfaces, 3)),
        tex_checker=checker,
    )
    return scene


def render(
    scene: Scene,
    baseline: float = 0.0,
    *,
    frames: range | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render the scene from the camera at x = ``baseline`` metres.

    Returns rgb float32 ``(T, 3, H, W)`` in [0, 1] and metric depth Z float32 ``(T, H, W)`` for the
    frames in ``frames`` (default: all).
    """
    frames = range(scene.num_frames) if frames is None else frames
    rgb, depth = [], []
    for t in frames:  # one frame at a time bounds memory at ~50 MB for 576x320
        c, d = _render_frame(scene, baseline, t, torch.device(device))
        rgb.append(c)
        depth.append(d)
    return torch.stack(rgb), torch.stack(depth)


def render_views(
    scene: Scene, baselines, *, frames: range | None = None, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render every baseline: rgb ``(V, T, 3, H, W)``, depth ``(V, T, H, W)``."""
    out = [render(scene, float(b), frames=frames, device=device) for b in baselines]
    return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])


def _render_frame(scene: Scene, baseline: float, t: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    f32 = dict(dtype=torch.float32, device=device)
    h, w = scene.height, scene.width
    v, u = torch.meshgrid(torch.arange(h, **f32), torch.arange(w, **f32), indexing="ij")
    # Ray directions with unit z component, so the ray parameter is the depth Z.
    d = torch.stack([(u - 0.5 * w) / scene.focal, (v - 0.5 * h) / scene.focal, torch.ones_like(u)], -1).reshape(-1, 3)
    o = torch.tensor([baseline, 0.0, 0.0], **f32)
    inf = torch.full((d.shape[0],), float("inf"), **f32)
    box_c = scene.box_center0 + t * scene.box_velocity
    sph_c = scene.sphere_center0 + t * scene.sphere_velocity

    hits = [torch.full_like(inf, scene.backdrop_z)]  # backdrop: the plane z = backdrop_z
    hits.append(torch.where(d[:, 1] > 0, (scene.ground_y - o[1]) / d[:, 1].clamp_min(1e-12), inf))  # ground y = ground_y
    inv_d = 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    for c, hb in zip(box_c, scene.box_half, strict=True):  # slab test for axis-aligned boxes
        t1 = (torch.tensor(c - hb, **f32) - o) * inv_d
        t2 = (torch.tensor(c + hb, **f32) - o) * inv_d
        t_near = torch.minimum(t1, t2).amax(-1)
        t_far = torch.maximum(t1, t2).amin(-1)
        hits.append(torch.where((t_far >= t_near) & (t_near > 0), t_near, inf))
    dd = (d * d).sum(-1)
    for c, r in zip(sph_c, scene.sphere_radius, strict=True):
        oc = o - torch.tensor(c, **f32)
        b = 2 * (d @ oc)
        disc = b * b - 4 * dd * float((oc * oc).sum() - r * r)
        t_hit = (-b - disc.clamp_min(0).sqrt()) / (2 * dd)
        hits.append(torch.where((disc >= 0) & (t_hit > 0), t_hit, inf))
    z, surface = torch.stack(hits).min(0)  # nearest surface per pixel
    p = o + z[:, None] * d  # hit points (N, 3)

    # Shade surface by surface. Texture coordinates are local to each surface, so textures move
    # with their objects; the normal gives view-independent (Lambertian) shading.
    light = torch.tensor([0.4, -0.7, -0.6], **f32)
    light = light / light.norm()
    centers = np.concatenate([np.zeros((2, 3)), box_c, sph_c])
    nb = len(box_c)
    rgb = torch.empty_like(p)
    for s in range(len(centers)):
        idx = (surface == s).nonzero()[:, 0]
        if idx.numel() == 0:
            continue
        q = p[idx] - torch.tensor(centers[s], **f32)
        if s == 0:
            normal = torch.tensor([0.0, 0.0, -1.0], **f32).expand_as(q)  # backdrop faces the camera
        elif s == 1:
            normal = torch.tensor([0.0, -1.0, 0.0], **f32).expand_as(q)  # ground faces up
        elif s < 2 + nb:
            qb = q / torch.tensor(scene.box_half[s - 2], **f32)
            axis = qb.abs().argmax(-1, keepdim=True)  # the face hit is the one where |q| / half is largest
            normal = torch.zeros_like(qb).scatter_(1, axis, qb.gather(1, axis).sign())
        else:
            normal = q / float(scene.sphere_radius[s - 2 - nb])
        freq = torch.tensor(scene.tex_freq[s], **f32)  # K 3 3 (wave, channel, xyz)
        waves = torch.sin(torch.einsum("kcx,nx->nkc", freq, q) + torch.tensor(scene.tex_phase[s], **f32)).mean(1)
        checker = torch.sign(torch.sin(q * (np.pi / scene.tex_checker[s])).prod(-1, keepdim=True))  # +-1 cells
        colour = torch.tensor(scene.tex_base[s], **f32) + 0.25 * waves + 0.08 * checker
        rgb[idx] = colour * (0.55 + 0.45 * (normal @ light).abs())[:, None]
    rgb = rgb.clamp(0, 1).reshape(h, w, 3).permute(2, 0, 1)  # H W 3 -> 3 H W
    return rgb, z.reshape(h, w)
