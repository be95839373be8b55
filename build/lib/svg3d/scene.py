"""A ground-truth scene renderer: colour video + exact metric depth from a camera at any baseline.

The scene: a far textured backdrop, a textured ground plane, and textured boxes and spheres at
several depths that move over time, so disocclusions differ from frame to frame. Rendering is
per-pixel ray casting in torch (vectorised over pixels): each pixel takes the colour of the exact
surface point its centre ray hits, with view-independent (Lambertian) shading, so any two views of
the scene agree wherever a surface point is visible in both — exactly what a depth-based warp should
reproduce. Deterministic for a seed.

The camera may move (``CameraMotion``: truck, dolly, pan, tilt, handheld shake; named presets in
``CAMERA_PRESETS``): frame t's input camera has a pose (rotation R_t, centre c_t) in world
coordinates, and a view at baseline ``b`` is that camera moved by ``b`` along its own x axis
(``c_t + R_t (b, 0, 0)``), so the other eye stays exact for any motion. Surfaces may carry real images
instead of the procedural textures (``make_scene(textures=...)``; a video texture changes with the
frame), so filling can be scored on real image content with exact geometry.

Geometry follows ``camera``: pinhole, principal point (W/2, H/2), integer pixel coordinates are pixel
centres, +x right, +y down, +z forward; for the static camera of frame 0 world and camera coincide.
Depth is Z (metres along the camera's optical axis), i.e. the ray parameter for rays whose direction
has a unit z component in camera coordinates (a rotation keeps that parameter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import camera

NUM_WAVES = 2  # sinusoids per colour channel and texture (plus a checker): enough detail for optical flow
TEXTURE_MARGIN = 1.25  # an image texture is resized to this many times the frame width in texels: the
# backdrop shows most of the image at about one texel per pixel, with room for the camera to move


@dataclass(frozen=True)
class CameraMotion:
    """How the input camera moves, per frame, from the pose of frame 0 (world = camera at frame 0).

    Translations are in world metres, rotations in radians; the shake is smooth (two sinusoids per
    axis with random phases and periods around ``shake_period``), drawn from the scene's seed.
    """

    truck: float = 0.0  # m/frame along +x: sideways, the parallax that uncovers what a foreground hid
    dolly: float = 0.0  # m/frame along +z: forward, depth changes over the clip
    pan: float = 0.0  # rad/frame about the vertical axis, + = turning right: moves the image, no parallax
    tilt: float = 0.0  # rad/frame about the x axis, + = looking down
    shake: float = 0.0  # m: amplitude of the handheld translation along each axis
    shake_angle: float = 0.0  # rad: amplitude of the handheld rotation (pan, tilt, roll)
    shake_period: float = 10.0  # frames: typical period of the shake (a hand, at 12-25 fps)

    def __post_init__(self) -> None:
        if self.shake < 0 or self.shake_angle < 0 or self.shake_period <= 0:
            raise ValueError("shake and shake_angle must be >= 0 and shake_period > 0")


def camera_preset(name: str, *, width: int, focal: float) -> CameraMotion:
    """A named ``CameraMotion`` (``CAMERA_PRESETS``), its speeds set in pixels so any size moves alike.

    ``static``: no motion. ``pan``: 0.6 % of the width per frame. ``truck``: sideways, an object at 2 m
    moves 1 % of the width per frame. ``dolly``: forward 3 cm/frame with a slight truck. ``handheld``:
    shake of about 0.5 % of the width in translation (at 2 m) and rotation, a slow drift sideways.
    """
    px = width / focal  # radians (or metres at 1 m) per frame width
    presets = {
        "static": CameraMotion(),
        "pan": CameraMotion(pan=0.006 * px),
        "truck": CameraMotion(truck=0.01 * px * 2.0),
        "dolly": CameraMotion(dolly=0.03, truck=0.003 * px * 2.0),
        "handheld": CameraMotion(truck=0.002 * px * 2.0, shake=0.005 * px * 2.0, shake_angle=0.004 * px, shake_period=9.0),
    }
    if name not in presets:
        raise ValueError(f"camera {name!r}: expected one of {', '.join(presets)}")
    return presets[name]


CAMERA_PRESETS = ("static", "pan", "truck", "dolly", "handheld")


@dataclass(frozen=True)
class Scene:
    """Parameters of a synthetic scene (float64 numpy unless said; built by ``make_scene``).

    box_center0 (B, 3), box_half (B, 3), box_velocity (B, 3): axis-aligned boxes, metres, metres/frame.
    sphere_center0 (S, 3), sphere_radius (S,), sphere_velocity (S, 3): spheres.
    tex_freq (N, K, 3, 3) rad/m (wave, channel, xyz), tex_phase (N, K, 3), tex_base (N, 3), tex_checker (N,) m: one texture per
    surface, surfaces ordered [backdrop, ground, boxes..., spheres...].
    cam_rotation (T, 3, 3) camera-to-world, cam_position (T, 3) metres: the input camera per frame.
    tex_images: per surface None (procedural) or float32 ``(F, 3, h, w)`` in [0, 1] (F frames of a video
    texture, the last one held); tex_texel (N,) metres per texel; tex_offset (N, 2) texels.
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
    cam_rotation: np.ndarray = field(default_factory=lambda: np.eye(3)[None])
    cam_position: np.ndarray = field(default_factory=lambda: np.zeros((1, 3)))
    tex_images: tuple = ()
    tex_texel: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tex_offset: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    @property
    def near_far(self) -> tuple[float, float]:
        """Bounds (metres) of the depth any pixel can have with a static camera: the nearest object face, the backdrop."""
        near_box = (self.box_center0[:, 2] - self.box_half[:, 2]).min(initial=np.inf)
        near_sphere = (self.sphere_center0[:, 2] - self.sphere_radius).min(initial=np.inf)
        return float(min(near_box, near_sphere)), self.backdrop_z

    @property
    def moving_camera(self) -> bool:
        return bool(np.any(self.cam_position != 0) or np.any(self.cam_rotation != np.eye(3)))


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation ``Ry(yaw) Rx(pitch) Rz(roll)`` (3, 3): +yaw turns right, +pitch looks down."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])  # +pitch turns +z towards +y (down)
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


def camera_path(motion: CameraMotion, num_frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotations ``(T, 3, 3)`` and centres ``(T, 3)`` of the input camera for ``num_frames`` frames."""
    rng = np.random.default_rng([seed, 7])  # its own stream: the scene's objects do not change with the camera
    t = np.arange(num_frames, dtype=np.float64)

    def smooth(amplitude: float) -> np.ndarray:  # (T,) two sinusoids, peak about +-amplitude
        if amplitude == 0:
            return np.zeros(num_frames)
        periods = rng.uniform(0.6, 1.6, 2) * motion.shake_period
        phases = rng.uniform(0, 2 * np.pi, 2)
        return amplitude * 0.5 * sum(np.sin(2 * np.pi * t / p + f) for p, f in zip(periods, phases, strict=True))

    shake = np.stack([smooth(motion.shake) for _ in range(3)], 1)  # (T, 3)
    angles = np.stack([smooth(motion.shake_angle) for _ in range(3)], 1)  # (T, 3) yaw, pitch, roll
    position = t[:, None] * np.array([motion.truck, 0.0, motion.dolly]) + shake
    rotation = np.stack([_rotation(motion.pan * i + a[0], motion.tilt * i + a[1], a[2]) for i, a in zip(t, angles, strict=True)])
    return rotation, position


def _texture_tensor(image: np.ndarray | torch.Tensor, width: int) -> torch.Tensor:
    """An image ``(h, w, 3)`` or video ``(F, h, w, 3)``, uint8 or float in [0, 1] -> float32 ``(F, 3, h', w')``
    resized (area average) to ``width`` texels wide, aspect kept."""
    x = torch.as_tensor(np.asarray(image))
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"texture: expected (h, w, 3) or (F, h, w, 3), got {tuple(x.shape)}")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    x = x.permute(0, 3, 1, 2)  # (F, h, w, 3) -> (F, 3, h, w)
    h = max(2, round(x.shape[2] * width / x.shape[3]))
    mode = "area" if width <= x.shape[3] else "bilinear"
    return F.interpolate(x, size=(h, width), mode=mode, **({} if mode == "area" else {"align_corners": False})).clamp(0, 1)


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
    camera_motion: CameraMotion | str = "static",
    textures: Sequence[np.ndarray | torch.Tensor] | None = None,
) -> Scene:
    """A random scene whose objects stay in view over ``num_frames`` frames (for a static camera).

    Depth range about 1.5 m (nearest object) to 8 m (backdrop), the ground 0.9 m below the camera.
    ``static`` freezes the objects (for tests of temporal filters). ``focal`` defaults to
    ``camera.default_focal(width)``. ``camera_motion``: a ``CameraMotion`` or a preset name
    (``camera_preset``). ``textures``: real images ``(h, w, 3)`` or videos ``(F, h, w, 3)`` (uint8, or
    float in [0, 1]) given to the surfaces in order [backdrop, ground, boxes..., spheres...], cycling;
    each is resized to ``TEXTURE_MARGIN`` x the frame width and laid at about one texel per pixel at
    the surface's typical depth, mirrored beyond its edges, at a random offset.
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
    tex_phase = rng.uniform(0, 2 * np.pi, (num_surfaces, NUM_WAVES, 3))
    tex_base = rng.uniform(0.25, 0.75, (num_surfaces, 3))
    # Drawn after everything above, so a seed gives the same procedural scene with or without images.
    if textures:
        tex_rng = np.random.default_rng([seed, 11])
        loaded = [_texture_tensor(img, round(TEXTURE_MARGIN * width)) for img in textures]
        images = tuple(loaded[i % len(loaded)] for i in range(num_surfaces))
        texel = surface_depth[:, 0, 0, 0] / focal  # metres per texel: one texel per pixel at the surface's depth
        offset = np.stack([tex_rng.uniform(0, img.shape[-1]) for img in images]), np.stack([tex_rng.uniform(0, img.shape[-2]) for img in images])
        tex_offset = np.stack(offset, 1)
    else:
        images, texel, tex_offset = (), np.zeros(0), np.zeros((0, 2))
    motion = camera_preset(camera_motion, width=width, focal=focal) if isinstance(camera_motion, str) else camera_motion
    rotation, position = camera_path(motion, num_frames, seed)
    zero = lambda n: np.zeros((n, 3))  # noqa: E731
    return Scene(
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
        tex_phase=tex_phase,
        tex_base=tex_base,
        tex_checker=checker,
        cam_rotation=rotation,
        cam_position=position,
        tex_images=images,
        tex_texel=texel,
        tex_offset=tex_offset,
    )


def render(
    scene: Scene,
    baseline: float = 0.0,
    *,
    frames: range | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render the scene from the camera moved ``baseline`` metres along its own x axis.

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


def _pose(scene: Scene, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (3, 3) and centre (3,) of the input camera at frame ``t`` (the last pose held past the path)."""
    i = min(t, len(scene.cam_rotation) - 1)
    return scene.cam_rotation[i], scene.cam_position[i]


def _sample_texture(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear colour ``(N, 3)`` of ``image (3, h, w)`` at texel coordinates x, y ``(N,)``, mirrored beyond the edges."""
    _, h, w = image.shape

    def mirror(c: torch.Tensor, n: int) -> torch.Tensor:  # a triangle wave onto [0, n - 1]: continuous, no seam
        period = 2.0 * (n - 1)
        return (n - 1) - ((c % period) - (n - 1)).abs()

    grid = torch.stack([2 * mirror(x, w) / (w - 1) - 1, 2 * mirror(y, h) / (h - 1) - 1], -1)  # align_corners=True
    out = F.grid_sample(image[None], grid[None, None], mode="bilinear", align_corners=True)  # (1, 3, 1, N)
    return out[0, :, 0].T


def _render_frame(scene: Scene, baseline: float, t: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    f32 = dict(dtype=torch.float32, device=device)
    h, w = scene.height, scene.width
    v, u = torch.meshgrid(torch.arange(h, **f32), torch.arange(w, **f32), indexing="ij")
    # Ray directions with unit z component in camera coordinates, so the ray parameter is the depth Z.
    d = torch.stack([(u - 0.5 * w) / scene.focal, (v - 0.5 * h) / scene.focal, torch.ones_like(u)], -1).reshape(-1, 3)
    rot, centre = _pose(scene, t)
    if np.array_equal(rot, np.eye(3)):
        o = torch.tensor(centre + np.array([baseline, 0.0, 0.0]), **f32)
    else:
        d = d @ torch.tensor(rot.T, **f32)  # camera -> world: d_world = R d (rows are rays)
        o = torch.tensor(centre + rot @ np.array([baseline, 0.0, 0.0]), **f32)
    inf = torch.full((d.shape[0],), float("inf"), **f32)
    box_c = scene.box_center0 + t * scene.box_velocity
    sph_c = scene.sphere_center0 + t * scene.sphere_velocity

    # backdrop: the plane z = backdrop_z (seen by rays going forward)
    hits = [torch.where(d[:, 2] > 0, (scene.backdrop_z - o[2]) / d[:, 2].clamp_min(1e-12), inf)]
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
    z = torch.where(torch.isfinite(z), z, 1e4)  # a ray above the horizon that misses the backdrop (large pans)
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
            axes = (q[:, 0], q[:, 1])
        elif s == 1:
            normal = torch.tensor([0.0, -1.0, 0.0], **f32).expand_as(q)  # ground faces up
            axes = (q[:, 0], q[:, 2])
        elif s < 2 + nb:
            qb = q / torch.tensor(scene.box_half[s - 2], **f32)
            axis = qb.abs().argmax(-1, keepdim=True)  # the face hit is the one where |q| / half is largest
            normal = torch.zeros_like(qb).scatter_(1, axis, qb.gather(1, axis).sign())
            # image axes on the face: the two axes other than its normal's (x->z, y->y, z->x for the first)
            a = axis[:, 0]
            axes = (torch.where(a == 0, q[:, 2], q[:, 0]), torch.where(a == 1, q[:, 2], q[:, 1]))
        else:
            normal = q / float(scene.sphere_radius[s - 2 - nb])
            axes = (q[:, 0], q[:, 1])
        shade = 0.55 + 0.45 * (normal @ light).abs()
        if scene.tex_images and scene.tex_images[s] is not None:
            frames = scene.tex_images[s]
            image = frames[min(t, len(frames) - 1)].to(device)
            texel, (ox, oy) = float(scene.tex_texel[s]), scene.tex_offset[s]
            colour = _sample_texture(image, axes[0] / texel + float(ox), axes[1] / texel + float(oy))
            if s < 2:  # real images on the backdrop and ground keep their own brightness (saturated regions stay saturated)
                shade = torch.ones_like(shade)
        else:
            freq = torch.tensor(scene.tex_freq[s], **f32)  # K 3 3 (wave, channel, xyz)
            waves = torch.sin(torch.einsum("kcx,nx->nkc", freq, q) + torch.tensor(scene.tex_phase[s], **f32)).mean(1)
            checker = torch.sign(torch.sin(q * (np.pi / scene.tex_checker[s])).prod(-1, keepdim=True))  # +-1 cells
            colour = torch.tensor(scene.tex_base[s], **f32) + 0.25 * waves + 0.08 * checker
        rgb[idx] = colour * shade[:, None]
    rgb = rgb.clamp(0, 1).reshape(h, w, 3).permute(2, 0, 1)  # H W 3 -> 3 H W
    return rgb, z.reshape(h, w)


def true_flow(
    scene: Scene, depth: torch.Tensor, t: int, s: int, *, depth_s: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact optical flow from frame ``t`` to frame ``s`` of a scene whose objects do not move (``static``).

    depth: float32 ``(H, W)`` metric depth of frame ``t`` (``render``). Returns flow float32 ``(2, H, W)`` in
    pixels (``flow`` module's convention: pixel ``(u, v)`` of ``t`` shows what ``s`` shows at ``(u, v) + flow``)
    and ``valid`` bool ``(H, W)``: the point lands inside frame ``s`` and, when ``depth_s (H, W)`` (frame ``s``'s
    depth) is given, is seen there (not occluded: the depth ``s`` has where it lands agrees within 1 %).
    """
    if np.any(scene.box_velocity) or np.any(scene.sphere_velocity):
        raise ValueError("true_flow: the scene's objects move; make it with static=True")
    h, w = depth.shape
    f32 = dict(dtype=torch.float32, device=depth.device)
    v, u = torch.meshgrid(torch.arange(h, **f32), torch.arange(w, **f32), indexing="ij")
    rays = torch.stack([(u - 0.5 * w) / scene.focal, (v - 0.5 * h) / scene.focal, torch.ones_like(u)], -1)  # unit z
    cam_t = rays * depth[..., None]  # (H, W, 3) camera coordinates in frame t
    (rt, ct), (rs, cs) = _pose(scene, t), _pose(scene, s)
    world = cam_t @ torch.tensor(rt.T, **f32) + torch.tensor(ct, **f32)  # (H, W, 3): x_world = R_t x_cam + c_t
    cam_s = (world - torch.tensor(cs, **f32)) @ torch.tensor(rs, **f32)  # x_cam = R_s^T (x_world - c_s)
    z = cam_s[..., 2]
    us = scene.focal * cam_s[..., 0] / z + 0.5 * w
    vs = scene.focal * cam_s[..., 1] / z + 0.5 * h
    flow = torch.stack([us - u, vs - v])
    valid = (z > 0) & (depth < 1e3) & (us >= 0) & (us <= w - 1) & (vs >= 0) & (vs <= h - 1)
    if depth_s is not None:
        grid = torch.stack([us / max(w - 1, 1) * 2 - 1, vs / max(h - 1, 1) * 2 - 1], -1)[None]  # align_corners=True
        seen = F.grid_sample(depth_s[None, None], grid, mode="nearest", align_corners=True)[0, 0]
        valid &= (seen - z).abs() <= 0.01 * z
    return flow, valid
