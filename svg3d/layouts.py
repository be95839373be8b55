"""Export layouts: one row per layout (``EXPORTS``), each a suffix, a frame size, a pure build function, metadata.

A layout turns one time step of the conversion (``Step``: the eyes, the input view, every view, the input's
depth) into one output frame (videos) or one image per sub-folder (PNG folders). Everything here is pure
(numpy in, numpy out, no files); the eye layouts also have a torch build (``ExportLayout.on_device``: a chunk of
tensors on their device, batched, the same frames within 1 level), which ``stages.export`` uses for the GPU's frames.
``stages.export`` streams the frames into encoders and folders.

Frames are ``uint8`` RGB ``(T, H, W, 3)`` (``io`` conventions); views ``uint8 (V, T, H, W, 3)``; depth
normalised to [0, 1], 1 = nearest.

- ``sbs`` / ``hsbs``: left | right, full (2W x H) or half (each eye squeezed to W/2).
- ``tb`` / ``htb``: left over right, full (W x 2H) or half.
- ``cross``: right | left, for cross-eyed free viewing.
- ``anaglyph``: one image for coloured glasses, of ``ExportSettings.anaglyph`` kind (``ANAGLYPHS``).
- ``left`` / ``right``: one eye.
- ``rgbd`` / ``hrgbd``: the input view | its depth as grey (white = near), full or half, as 3D
  monitors and Looking Glass Bridge take RGB-D.
- ``vr180``: each eye mapped to an equirectangular image of the input's field of view (``vr180_view``),
  side by side; the file's metadata (Spherical Video V2) places it on the sphere straight ahead.
- ``grid``: every view, tiled with no empty cell where the view count allows (``grid_layout``).
- ``quilt``: a Looking Glass quilt of every view, bottom-left = leftmost camera, rows upwards
  (``quilt_layout``), named ``_qs{columns}x{rows}a{aspect}`` as Looking Glass software parses it.
- ``depth``: the input's disparity, colour-mapped (inferno), near = bright.
- ``eyes_png`` / ``views_png`` / ``depth_png``: lossless frame folders: ``left/`` and ``right/``;
  ``view_000/`` ... (frame-matrix view indices); 16-bit grey depth (65535 = nearest of the range).

Adding a layout is one row of ``EXPORTS`` (and, if it needs more than the eyes, its ``needs``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .encode import StereoTag
from .isobmff import HALF_SPHERE

if TYPE_CHECKING:
    import torch

__all__ = [
    "ANAGLYPHS", "DEFAULT_EXPORTS", "EXPORTS", "ExportLayout", "Geometry", "Step", "VR180View", "anaglyph", "check_pair", "check_views", "cross_eyed",
    "depth_video", "equirect_maps", "grid", "grid_layout", "needs", "normalise_depth", "quilt", "quilt_layout", "quilt_suffix",
    "rgbd", "side_by_side", "side_by_side_torch", "squeeze_torch", "top_bottom", "top_bottom_torch", "anaglyph_torch", "vr180", "vr180_view",
]  # fmt: skip

GRID_MAX_WIDTH = 1920  # px: a grid wider than this is scaled down (players and H.264 levels cope with it)
QUILT_MAX_SIDE = 4096  # px: the largest standard quilt Looking Glass tooling uses (4096 x 4096)
VR180_MAX_EYE = 2048  # px of one eye's width: two eyes side by side stay within H.264 level 5.1, which headsets decode


# --------------------------------------------------------------------------------------------------
# anaglyphs


# Dubois (2001), "A projection method to generate anaglyph stereo images", red-cyan matrices: the
# least-squares fit, in linear RGB, of what the filtered eyes see to what each eye should see.
DUBOIS_LEFT = np.array([[0.456, 0.500, 0.176], [-0.040, -0.038, -0.016], [-0.015, -0.021, -0.005]])
DUBOIS_RIGHT = np.array([[-0.043, -0.088, -0.002], [0.378, 0.734, -0.018], [-0.072, -0.113, 1.226]])
# Dubois' green-magenta pair (his anaglyph page; the values Camera3D's AnaglyphConstants and Dolphin's
# shaders use): the left eye behind green, the right behind magenta. Linear RGB as well.
DUBOIS_GM_LEFT = np.array([[-0.062, -0.158, -0.039], [0.284, 0.668, 0.143], [-0.015, -0.027, 0.021]])
DUBOIS_GM_RIGHT = np.array([[0.529, 0.705, 0.024], [-0.016, -0.015, -0.065], [0.009, 0.075, 0.937]])
ANAGLYPHS = {
    "dubois": "red-cyan, Dubois' least-squares matrices in linear light (least ghosting, darker reds)",
    "half-colour": "red-cyan: the left eye's luma in red, the right eye's green and blue (less retinal rivalry)",
    "grey": "red-cyan from both eyes' luma (no colour, no rivalry)",
    "colour": "red-cyan: the left eye's red, the right eye's green and blue (most colour, most rivalry)",
    "green-magenta": "green-magenta, Dubois' matrices (for green/magenta glasses such as TriOviz)",
}
IW3_ANAGLYPHS = {"dubois": "dubois", "half-colour": "half-color", "grey": "gray", "colour": "color"}  # iw3's --anaglyph names
LUMA_601 = np.array([0.299, 0.587, 0.114], np.float32)  # the luma the simple anaglyphs mix (on gamma-encoded values)


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


_LINEAR = _srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)  # uint8 sRGB -> linear, as a table
# linear (quantised to 16 bits: < 0.06 of an output level near black, where the curve is steepest) -> uint8 sRGB
_SRGB = np.round(_linear_to_srgb(np.arange(65536) / 65535.0) * 255.0).astype(np.uint8)


def check_pair(left: np.ndarray, right: np.ndarray) -> None:
    if left.ndim != 4 or left.shape[-1] != 3 or left.dtype != np.uint8:
        raise ValueError(f"left: expected uint8 (T, H, W, 3), got {left.dtype} {left.shape}")
    if right.shape != left.shape or right.dtype != np.uint8:
        raise ValueError(f"right {right.dtype} {right.shape} does not match left {left.shape}")


def anaglyph(left: np.ndarray, right: np.ndarray, kind: str = "dubois") -> np.ndarray:
    """Anaglyph ``(T, H, W, 3)`` of one of the ``ANAGLYPHS`` kinds.

    The Dubois kinds apply his matrices in linear light as published (applying them to
    gamma-encoded values, as many tools do, darkens mid-tones and shifts hues); the simple kinds mix
    channels and Rec. 601 luma of the encoded values, as they are usually defined.
    """
    check_pair(left, right)
    if kind not in ANAGLYPHS:
        raise ValueError(f"anaglyph kind {kind!r}: choose from {', '.join(ANAGLYPHS)}")
    out = np.empty_like(left)
    for t in range(len(left)):  # one frame at a time bounds the float working set
        if kind in ("dubois", "green-magenta"):
            ml, mr = (DUBOIS_LEFT, DUBOIS_RIGHT) if kind == "dubois" else (DUBOIS_GM_LEFT, DUBOIS_GM_RIGHT)
            # cv2.LUT: the table lookup in one pass (numpy's fancy indexing took 8x as long)
            lin = cv2.transform(cv2.LUT(left[t], _LINEAR), ml.astype(np.float32)) + cv2.transform(cv2.LUT(right[t], _LINEAR), mr.astype(np.float32))
            lin *= np.float32(65535.0)
            # to uint16 rounded half to even and saturated in one pass: rint(clip(lin, 0, 1) * 65535) (3 numpy passes)
            out[t] = _SRGB[cv2.add(lin, 0.0, dtype=cv2.CV_16U)]  # (H, W, 3)
            continue
        lt, rt = left[t].astype(np.float32), right[t].astype(np.float32)
        red = lt[..., 0] if kind == "colour" else lt @ LUMA_601
        gb = rt[..., 1:] if kind in ("colour", "half-colour") else np.repeat((rt @ LUMA_601)[..., None], 2, axis=2)
        out[t, ..., 0] = np.clip(np.round(red), 0, 255)
        out[t, ..., 1:] = np.clip(np.round(gb), 0, 255)
    return out


# --------------------------------------------------------------------------------------------------
# frame layouts (pure)


def _resize(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(T, H, W, C)`` -> ``(T, height, width, C)``, area interpolation (the squeeze of half formats)."""
    out = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames]
    return np.stack([o if o.ndim == frames.ndim - 1 else o[..., None] for o in out])


def side_by_side(left: np.ndarray, right: np.ndarray, *, half: bool = False) -> np.ndarray:
    """Left | right: ``(T, H, 2W, 3)``, or with ``half`` each eye squeezed to ``W // 2``: ``(T, H, 2 (W // 2), 3)``."""
    check_pair(left, right)
    if half:
        h, w = left.shape[1:3]
        left, right = _resize(left, w // 2, h), _resize(right, w // 2, h)
    return np.concatenate([left, right], axis=2)


def top_bottom(left: np.ndarray, right: np.ndarray, *, half: bool = False) -> np.ndarray:
    """Left over right: ``(T, 2H, W, 3)``, or with ``half`` each eye squeezed to ``H // 2``."""
    check_pair(left, right)
    if half:
        h, w = left.shape[1:3]
        left, right = _resize(left, w, h // 2), _resize(right, w, h // 2)
    return np.concatenate([left, right], axis=1)


def cross_eyed(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Right | left ``(T, H, 2W, 3)``: crossing the eyes brings the right image to the right eye."""
    return side_by_side(right, left)


def normalise_depth(disparity: np.ndarray, lo, hi) -> np.ndarray:
    """Disparity ``(T, H, W)`` -> ``float32`` in [0, 1] over ``lo .. hi`` (scalars or ``(T,)`` arrays), clipped.

    A range of zero width (a flat clip or shot) gives 0 everywhere rather than dividing by zero.
    """
    if disparity.ndim != 3:
        raise ValueError(f"disparity: expected (T, H, W), got {disparity.shape}")
    lo = np.broadcast_to(np.asarray(lo, np.float64), (len(disparity),))[:, None, None]
    hi = np.broadcast_to(np.asarray(hi, np.float64), (len(disparity),))[:, None, None]
    width = hi - lo
    d = np.where(width > 0, (disparity - lo) / np.where(width > 0, width, 1.0), 0.0)
    return np.clip(d, 0.0, 1.0).astype(np.float32)


def rgbd(colour: np.ndarray, depth01: np.ndarray, *, half: bool = False) -> np.ndarray:
    """Colour | depth as grey (white = near) ``(T, H, 2W, 3)``; ``half`` squeezes each to ``W // 2``.

    colour: ``uint8 (T, H, W, 3)``, the view the depth belongs to; depth01: ``(T, H, W)`` in [0, 1]
    (``normalise_depth``), 1 = nearest.
    """
    grey = np.round(np.clip(depth01, 0, 1) * 255.0).astype(np.uint8)
    return side_by_side(colour, np.repeat(grey[..., None], 3, axis=3), half=half)


def depth_video(disparity: np.ndarray, lo: float | np.ndarray | None = None, hi: float | np.ndarray | None = None) -> np.ndarray:
    """Colour-mapped disparity ``(T, H, W)`` -> ``uint8 (T, H, W, 3)``, near = bright (inferno).

    Normalised over ``lo .. hi`` (default: the min and max of the given frames, i.e. the whole clip
    when given the whole clip), not per frame (``depth.preview_image`` does per frame), so that
    brightness means the same depth in every frame and the video does not pump.
    """
    if disparity.ndim != 3:
        raise ValueError(f"disparity: expected (T, H, W), got {disparity.shape}")
    lo = float(disparity.min()) if lo is None else lo
    hi = float(disparity.max()) if hi is None else hi
    grey = np.round(normalise_depth(disparity, lo, hi) * 255).astype(np.uint8)
    return np.stack([cv2.cvtColor(cv2.applyColorMap(g, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB) for g in grey])


def check_views(views: np.ndarray) -> None:
    if views.ndim != 5 or views.shape[-1] != 3 or views.dtype != np.uint8:
        raise ValueError(f"views: expected uint8 (V, T, H, W, 3), got {views.dtype} {views.shape}")


def grid_layout(num_views: int, height: int, width: int, *, max_width: int = GRID_MAX_WIDTH, aspect: float = 16 / 9) -> tuple[int, int, int, int]:
    """``(columns, rows, cell height, cell width)`` of the grid of ``num_views`` views of ``height x width``.

    Among the factorisations columns x rows = V (no empty cell) the one whose grid is closest to
    ``aspect`` (16:9, a screen) is taken, if within a factor 2.5 of it; otherwise (a prime V) the
    near-square ``ceil(sqrt(V))`` columns, whose empty cells ``grid`` fills with a checkerboard.
    Cells are scaled down (area, even sides) when the grid would be wider than ``max_width``.
    """
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    target = math.log(aspect)

    def score(cols: int, rows: int) -> float:
        return abs(math.log(cols * width / (rows * height)) - target)

    exact = [(score(c, num_views // c), c, num_views // c) for c in range(1, num_views + 1) if num_views % c == 0]
    best, cols, rows = min(exact)
    if best > math.log(2.5):
        cols = math.ceil(math.sqrt(num_views))
        rows = math.ceil(num_views / cols)
    scale = min(1.0, max_width / (cols * width))
    ch, cw = max(2, round(height * scale)) // 2 * 2, max(2, round(width * scale)) // 2 * 2  # even cells keep 4:2:0 exact
    if scale == 1.0:
        ch, cw = height, width
    return cols, rows, ch, cw


def _checkerboard(h: int, w: int, square: int = 16) -> np.ndarray:
    """``uint8 (h, w, 3)`` grey checkerboard: the usual "nothing here" of image editors, never mistaken for a view."""
    yy, xx = np.mgrid[:h, :w]
    cells = ((yy // square + xx // square) % 2).astype(np.uint8)
    return np.repeat((96 + 64 * cells)[..., None], 3, axis=2)


def grid(views: np.ndarray, *, order: Sequence[int] | None = None, max_width: int = GRID_MAX_WIDTH) -> np.ndarray:
    """Every view in a grid (``grid_layout``), row-major from the top left, in ``order`` (default: index order).

    views: ``uint8 (V, T, H, W, 3)``. Returns ``(T, rows * ch, cols * cw, 3)``; empty cells (only for
    view counts with no fitting factorisation) are a grey checkerboard.
    """
    check_views(views)
    v, t, h, w, _ = views.shape
    order = list(range(v)) if order is None else list(order)
    cols, rows, ch, cw = grid_layout(v, h, w, max_width=max_width)
    out = np.empty((t, rows * ch, cols * cw, 3), np.uint8)
    out[:] = _checkerboard(rows * ch, cols * cw, max(2, min(ch, cw) // 4))  # four squares across a cell
    for cell, i in enumerate(order):
        tile = views[i] if (ch, cw) == (h, w) else _resize(views[i], cw, ch)
        r, c = divmod(cell, cols)
        out[:, r * ch : (r + 1) * ch, c * cw : (c + 1) * cw] = tile
    return out


def quilt_layout(num_views: int, height: int, width: int, *, max_side: int = QUILT_MAX_SIDE) -> tuple[int, int, int, int]:
    """``(columns, rows, tile height, tile width)`` of a Looking Glass quilt of ``num_views`` views.

    Every tile holds a view (columns x rows = V: a quilt's tile count is its view count), as square a
    factorisation as V has with columns >= rows. Tiles are scaled down (area, even sides) to keep
    the quilt's longer side within ``max_side``.
    """
    cols = min(c for c in range(math.ceil(math.sqrt(num_views)), num_views + 1) if num_views % c == 0)
    rows = num_views // cols
    scale = min(1.0, max_side / (cols * width), max_side / (rows * height))
    if scale == 1.0:
        return cols, rows, height, width
    return cols, rows, max(2, round(height * scale)) // 2 * 2, max(2, round(width * scale)) // 2 * 2


def quilt_suffix(num_views: int, height: int, width: int, *, max_side: int = QUILT_MAX_SIDE) -> str:
    """``_qs{columns}x{rows}a{aspect}``: the quilt settings Looking Glass software reads from a file name.

    ``aspect`` is one view's width / height (of the views, not of the rounded tiles), up to 5 decimals.
    """
    cols, rows, _, _ = quilt_layout(num_views, height, width, max_side=max_side)
    aspect = f"{width / height:.5f}".rstrip("0").rstrip(".")
    return f"_qs{cols}x{rows}a{aspect}"


def quilt(views: np.ndarray, *, order: Sequence[int] | None = None, max_side: int = QUILT_MAX_SIDE) -> np.ndarray:
    """A Looking Glass quilt ``(T, rows * th, cols * tw, 3)`` of ``views`` ``uint8 (V, T, H, W, 3)``.

    ``order``: view indices from the leftmost camera to the rightmost (default: index order). The
    first goes to the bottom-left tile, then left to right along the bottom row, then the row above,
    up to the top-right: the order Looking Glass displays expect (Looking Glass forum, as quoted by
    surf-visualization/looking-glass ``make_quilt.py``: "from the bottom left as the leftmost view,
    to the top right being the furthest right").
    """
    check_views(views)
    v, t, h, w, _ = views.shape
    order = list(range(v)) if order is None else list(order)
    cols, rows, th, tw = quilt_layout(v, h, w, max_side=max_side)
    out = np.empty((t, rows * th, cols * tw, 3), np.uint8)
    for k, i in enumerate(order):
        r, c = divmod(k, cols)  # r counts rows from the bottom
        y = (rows - 1 - r) * th
        out[:, y : y + th, c * tw : (c + 1) * tw] = views[i] if (th, tw) == (h, w) else _resize(views[i], tw, th)
    return out


def vr180_view(size: tuple[int, int], focal: float, *, fov: float | None = None, eye_width: int | None = None,
               max_width: int = VR180_MAX_EYE) -> VR180View:  # fmt: skip
    """Where one eye of ``size`` ``(H, W)`` lies on the sphere, and the equirectangular frame that holds it.

    The eye spans ``2 atan(W / 2f)`` of longitude and ``2 atan(H / 2f)`` of latitude (``fov``: the horizontal
    span in degrees instead, which sets ``f``). The frame covers exactly that window, at the input's
    resolution at its centre (``f`` pixels per radian) unless ``eye_width`` sets the width, scaled down to
    ``max_width``; sides even (4:2:0). The rest of the sphere is not stored: the file's projection bounds
    crop it (``VR180View.bounds``), so no pixel is spent on black.
    """
    h, w = size
    f = (w / 2) / math.tan(math.radians(fov) / 2) if fov is not None else float(focal)
    if not (f > 0 and math.isfinite(f)):
        raise ValueError(f"focal must be a positive number, got {f}")
    lon, lat = math.atan(w / 2 / f), math.atan(h / 2 / f)  # half-angles, radians
    natural = 2 * lon * f  # px across the window at the input's central resolution
    scale = min(natural if eye_width is None else eye_width, max_width) / natural
    width, height = (max(2, round(side * scale / 2) * 2) for side in (natural, 2 * lat * f))
    return VR180View(height, width, lon, lat, equirect_maps(h, w, f, height, width, lon, lat))


@dataclass(frozen=True)
class VR180View:
    """One eye's equirectangular frame ``height x width`` covering longitudes ``-lon .. lon`` and latitudes
    ``-lat .. lat`` (radians), and the ``cv2.remap`` maps from it to the pinhole eye (``equirect_maps``)."""

    height: int
    width: int
    lon: float
    lat: float
    maps: tuple[np.ndarray, np.ndarray]

    def bounds(self) -> tuple[int, int, int, int]:
        """Spherical Video V2 ``equi`` projection bounds ``(top, bottom, left, right)``, 0.32 fixed point: the share
        of the full 360 x 180-degree frame cropped on each side (google/spatial-media, spherical-video-v2-rfc)."""
        side = (math.pi - self.lon) / (2 * math.pi)
        cap = (math.pi / 2 - self.lat) / math.pi
        return tuple(min((1 << 32) - 1, round(x * (1 << 32))) for x in (cap, cap, side, side))  # type: ignore[return-value]


def equirect_maps(height: int, width: int, focal: float, eye_h: int, eye_w: int, lon: float, lat: float) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps ``(eye_h, eye_w)`` float32 from an equirectangular window to a pinhole image ``height x width``.

    Output pixel (i, j) centre: longitude ``-lon + (j + 0.5) / eye_w * 2 lon`` (left to right), latitude
    ``lat - (i + 0.5) / eye_h * 2 lat`` (top to bottom), radians. Its ray ``(cos lat sin lon, -sin lat,
    cos lat cos lon)`` (``camera``: +x right, +y down, +z forward) projects to ``u = W/2 + f x / z``,
    ``v = H/2 + f y / z`` (principal point ``(W/2, H/2)`` as ``camera``). Rays outside the image map far
    outside: black.
    """
    lons = -lon + (np.arange(eye_w, dtype=np.float64) + 0.5) / eye_w * 2 * lon
    lats = lat - (np.arange(eye_h, dtype=np.float64) + 0.5) / eye_h * 2 * lat
    lo, la = lons[None, :], lats[:, None]
    x = np.cos(la) * np.sin(lo)
    y = -np.sin(la) * np.ones_like(lo)
    z = np.cos(la) * np.cos(lo)  # > 0: the window lies within 90 degrees of straight ahead
    u = width / 2 + focal * x / z
    v = height / 2 + focal * y / z
    outside = (u < -0.5) | (u > width - 0.5) | (v < -0.5) | (v > height - 0.5)
    u[outside] = v[outside] = -1e4  # far outside: cv2's constant border (black) with no interpolated edge
    return u.astype(np.float32), v.astype(np.float32)


def vr180(left: np.ndarray, right: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Each eye remapped to its equirectangular window (``equirect_maps``), side by side: ``(T, Se, 2 We, 3)``."""
    check_pair(left, right)
    mx, my = maps

    def remap(frames: np.ndarray) -> np.ndarray:
        return np.stack([cv2.remap(f, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0) for f in frames])

    return np.concatenate([remap(left), remap(right)], axis=2)


# --------------------------------------------------------------------------------------------------
# the same layouts on the frames' device (torch), batched over a chunk


def _area_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's ``INTER_AREA`` downscale ``n_in -> n_out`` as taps: ``(first input index (n_out,), weights (n_out, K))``.

    Output pixel ``x`` averages the input interval ``[x s, (x + 1) s)``, ``s = n_in / n_out``, each input pixel
    weighted by its overlap (``cv2.resize``'s area table for a shrink); an exact 2:1 has taps (0.5, 0.5).
    """
    scale = n_in / n_out
    taps = math.ceil(scale) + 1
    first = np.floor(np.arange(n_out) * scale).astype(np.int64)
    weights = np.zeros((n_out, taps))
    for k in range(taps):
        i = first + k
        weights[:, k] = np.clip(np.minimum((np.arange(n_out) + 1) * scale, i + 1) - np.maximum(np.arange(n_out) * scale, i), 0, None) / scale
    return np.minimum(first, n_in - 1), weights


def squeeze_torch(frames: torch.Tensor, n_out: int, dim: int) -> torch.Tensor:
    """``_resize`` along one axis on the frames' device: ``uint8 (n, H, W, 3)``, axis ``dim`` (1: H, 2: W) shrunk to ``n_out``.

    The weighted sums are elementwise float32 (no matmul, so no TF32), rounded half to even as ``cv2.resize`` is:
    the same bytes as ``_resize`` on the frames tested, within 1 level where a float32 sum lands on a half.
    """
    import torch

    n_in = frames.shape[dim]
    x = frames.float()
    if n_in == 2 * n_out:  # the usual 2:1 (even sides): a pair's sum times 0.5, the taps' exact value, in one pass
        pairs = x.unflatten(dim, (n_out, 2)).sum(dim + 1)  # (.., n_out, 2, ..) summed over the pair
        return pairs.mul_(0.5).round_().clamp_(0, 255).to(torch.uint8)
    out = torch.zeros(*x.shape[:dim], n_out, *x.shape[dim + 1 :], device=x.device)
    shape = [1] * x.ndim
    shape[dim] = n_out  # the weights broadcast along every axis but ``dim``
    for idx, weight in _area_taps_on(n_in, n_out, x.device):
        out += x.index_select(dim, idx) * weight.view(shape)
    return out.round_().clamp_(0, 255).to(torch.uint8)


@functools.lru_cache(maxsize=16)
def _area_taps_on(n_in: int, n_out: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``_area_taps`` as (input indices, float32 weights) on ``device``, one pair per tap that weighs anything: uploaded
    once per size and device, not per batch (an upload from pageable memory waits for the device's queued work)."""
    import torch

    first, weights = _area_taps(n_in, n_out)
    return [
        (torch.from_numpy(np.minimum(first + k, n_in - 1)).to(device), torch.from_numpy(weights[:, k].astype(np.float32)).to(device))
        for k in range(weights.shape[1])
        if weights[:, k].any()
    ]


def side_by_side_torch(left: torch.Tensor, right: torch.Tensor, *, half: bool = False) -> torch.Tensor:
    """``side_by_side`` of ``uint8 (n, H, W, 3)`` tensors on their device."""
    import torch

    if half:
        w = left.shape[2]
        left, right = squeeze_torch(left, w // 2, 2), squeeze_torch(right, w // 2, 2)
    return torch.cat([left, right], dim=2)


def top_bottom_torch(left: torch.Tensor, right: torch.Tensor, *, half: bool = False) -> torch.Tensor:
    """``top_bottom`` of ``uint8 (n, H, W, 3)`` tensors on their device."""
    import torch

    if half:
        h = left.shape[1]
        left, right = squeeze_torch(left, h // 2, 1), squeeze_torch(right, h // 2, 1)
    return torch.cat([left, right], dim=1)


def _mix(x: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    """``(..., 3) @ m.T`` of a ``(3, 3)`` matrix as elementwise float32 sums in ``cv2.transform``'s order (no TF32)."""
    import torch

    m = m.astype(np.float32)
    return torch.stack([x[..., 0] * float(r[0]) + x[..., 1] * float(r[1]) + x[..., 2] * float(r[2]) for r in m], dim=-1)


@functools.lru_cache(maxsize=8)
def _transfer_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The sRGB -> linear and linear -> sRGB tables on ``device``, uploaded once (an upload from pageable memory
    would wait for the work queued on the device, once per batch)."""
    import torch

    return torch.from_numpy(_LINEAR).to(device), torch.from_numpy(_SRGB).to(device)


def anaglyph_torch(left: torch.Tensor, right: torch.Tensor, kind: str = "dubois") -> torch.Tensor:
    """``anaglyph`` of ``uint8 (n, H, W, 3)`` tensors on their device: the same tables and formulas, batched."""
    import torch

    if kind not in ANAGLYPHS:
        raise ValueError(f"anaglyph kind {kind!r}: choose from {', '.join(ANAGLYPHS)}")
    if kind in ("dubois", "green-magenta"):
        ml, mr = (DUBOIS_LEFT, DUBOIS_RIGHT) if kind == "dubois" else (DUBOIS_GM_LEFT, DUBOIS_GM_RIGHT)
        linear, srgb = _transfer_tables(left.device)
        lin = _mix(linear[left.int()], ml) + _mix(linear[right.int()], mr)  # (n, H, W, 3) linear light
        index = (lin.clamp_(0.0, 1.0) * 65535.0).round_().int()
        return srgb[index]
    lt, rt = left.float(), right.float()
    luma = [float(c) for c in LUMA_601]

    def grey(x: torch.Tensor) -> torch.Tensor:  # (n, H, W, 3) -> (n, H, W): Rec. 601 luma, as ``x @ LUMA_601``
        return x[..., 0] * luma[0] + x[..., 1] * luma[1] + x[..., 2] * luma[2]

    red = lt[..., 0] if kind == "colour" else grey(lt)
    gb = rt[..., 1:] if kind in ("colour", "half-colour") else grey(rt)[..., None].expand(*rt.shape[:3], 2)
    return torch.cat([red[..., None], gb], dim=-1).round_().clamp_(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------------------------------
# the table


@dataclass(frozen=True)
class Step:
    """One time step of a conversion, what a layout builds a frame from.

    left, right, source: ``uint8 (1, H, W, 3)``, the eyes and the input view (the view the depth belongs to).
    views: ``uint8 (V, 1, H, W, 3)`` in index order, or None when no layout asked for them (``needs``).
    depth: ``float32 (1, H, W)`` in [0, 1], 1 = nearest, or None when no layout asked for it.
    """

    left: np.ndarray
    right: np.ndarray
    source: np.ndarray
    views: np.ndarray | None = None
    depth: np.ndarray | None = None


@dataclass(frozen=True)
class Geometry:
    """What the layouts of one clip share: one view's ``size (H, W)``, the view count, the views' left-to-right
    ``order``, the anaglyph kind, the VR180 window (None when no VR180 is made)."""

    size: tuple[int, int]
    num_views: int = 2
    order: tuple[int, ...] = (0, 1)
    anaglyph: str = "dubois"
    vr180: VR180View | None = None


@dataclass(frozen=True)
class ExportLayout:
    suffix: str  # our name, appended to the clip's stem
    iw3: str | None  # iw3's suffix for the same output (nagadomi/nunif iw3/utils.py), None: iw3 has none
    help: str
    build: Callable[[Step, Geometry], np.ndarray | list[np.ndarray]]  # a video frame (1, h, w, 3), or one image per folder
    size: Callable[[Geometry], tuple[int, int]] | None = None  # (h, w) of a video's frames
    folders: Callable[[Geometry], tuple[str, ...]] | None = None  # a PNG folder's sub-folders ("": the folder itself)
    needs: frozenset[str] = frozenset()  # what a Step must hold besides the eyes and the input view: "views", "depth"
    stereo: StereoTag | None = None  # stereo metadata written into the file
    # the same frame built from the eyes' ``uint8 (n, H, W, 3)`` tensors on their device, batched; None: numpy only
    on_device: Callable[[torch.Tensor, torch.Tensor, Geometry], torch.Tensor] | None = None

    @property
    def kind(self) -> str:
        """"video": one file; "frames": a folder of PNG frames."""
        return "frames" if self.folders is not None else "video"


def _same(g: Geometry) -> tuple[int, int]:
    return g.size


def _wide(g: Geometry) -> tuple[int, int]:
    return g.size[0], 2 * g.size[1]


def _half_wide(g: Geometry) -> tuple[int, int]:
    return g.size[0], 2 * (g.size[1] // 2)


def _grid_size(g: Geometry) -> tuple[int, int]:
    cols, rows, ch, cw = grid_layout(g.num_views, *g.size)
    return rows * ch, cols * cw


def _quilt_size(g: Geometry) -> tuple[int, int]:
    cols, rows, th, tw = quilt_layout(g.num_views, *g.size)
    return rows * th, cols * tw


def _vr180_size(g: Geometry) -> tuple[int, int]:
    return g.vr180.height, 2 * g.vr180.width


_VIEWS, _DEPTH = frozenset({"views"}), frozenset({"depth"})
EXPORTS: dict[str, ExportLayout] = {
    "sbs": ExportLayout("_SBS_LR", "_LRF_Full_SBS", "full side-by-side, left | right (2W x H)",
                        lambda s, g: side_by_side(s.left, s.right), _wide, stereo=StereoTag("sbs"),
                        on_device=lambda lt, rt, g: side_by_side_torch(lt, rt)),
    "hsbs": ExportLayout("_HSBS_LR", "_LR", "half side-by-side, each eye squeezed to W/2 (W x H)",
                         lambda s, g: side_by_side(s.left, s.right, half=True), _half_wide, stereo=StereoTag("sbs", half=True),
                         on_device=lambda lt, rt, g: side_by_side_torch(lt, rt, half=True)),
    "tb": ExportLayout("_FTB", "_TBF_fulltb", "full top-bottom, left eye on top (W x 2H)",
                       lambda s, g: top_bottom(s.left, s.right), lambda g: (2 * g.size[0], g.size[1]), stereo=StereoTag("tb"),
                       on_device=lambda lt, rt, g: top_bottom_torch(lt, rt)),
    "htb": ExportLayout("_HTB", "_TB", "half top-bottom, each eye squeezed to H/2 (W x H)",
                        lambda s, g: top_bottom(s.left, s.right, half=True), lambda g: (2 * (g.size[0] // 2), g.size[1]),
                        stereo=StereoTag("tb", half=True), on_device=lambda lt, rt, g: top_bottom_torch(lt, rt, half=True)),
    "cross": ExportLayout("_cross_RL", "_RLF_cross", "cross-eyed: right | left (2W x H)",
                          lambda s, g: cross_eyed(s.left, s.right), _wide, stereo=StereoTag("sbs", swapped=True),
                          on_device=lambda lt, rt, g: side_by_side_torch(rt, lt)),
    "anaglyph": ExportLayout("_anaglyph", "_redcyan", "anaglyph for coloured glasses (kind: --anaglyph)",
                             lambda s, g: anaglyph(s.left, s.right, g.anaglyph), _same,
                             on_device=lambda lt, rt, g: anaglyph_torch(lt, rt, g.anaglyph)),
    "left": ExportLayout("_left", None, "the left eye alone", lambda s, g: s.left, _same, on_device=lambda lt, rt, g: lt),
    "right": ExportLayout("_right", None, "the right eye alone", lambda s, g: s.right, _same, on_device=lambda lt, rt, g: rt),
    "rgbd": ExportLayout("_RGBD", "_RGBD", "the input view | its depth, white = near (2W x H)",
                         lambda s, g: rgbd(s.source, s.depth), _wide, needs=_DEPTH),
    "hrgbd": ExportLayout("_HRGBD", "_HRGBD", "half RGB-D: the input view | depth, each squeezed to W/2 (W x H)",
                          lambda s, g: rgbd(s.source, s.depth, half=True), _half_wide, needs=_DEPTH),
    "vr180": ExportLayout("_180_LR", "_180x180_LR", "VR180: each eye as an equirectangular image of its field of view, side by side",
                          lambda s, g: vr180(s.left, s.right, g.vr180.maps), _vr180_size, stereo=StereoTag("sbs", equirect=HALF_SPHERE)),
    "grid": ExportLayout("_grid", None, "every view in a grid, leftmost camera first, row by row",
                         lambda s, g: grid(s.views, order=g.order), _grid_size, needs=_VIEWS),
    "quilt": ExportLayout("_qs{cols}x{rows}a{aspect}", "_qs{cols}x{rows}a{aspect}", "Looking Glass quilt of every view",
                          lambda s, g: quilt(s.views, order=g.order), _quilt_size, needs=_VIEWS),
    "depth": ExportLayout("_depth", None, "the input's depth, colour-mapped (inferno), near = bright",
                          lambda s, g: depth_video(s.depth, 0.0, 1.0), _same, needs=_DEPTH),
    "eyes_png": ExportLayout("_eyes", None, "lossless PNG frames of each eye: left/, right/",
                             lambda s, g: [s.left[0], s.right[0]], folders=lambda g: ("left", "right")),
    "views_png": ExportLayout("_views", None, "lossless PNG frames of every view: view_000/ ...",
                              lambda s, g: [s.views[v, 0] for v in range(g.num_views)],
                              folders=lambda g: tuple(f"view_{v:03d}" for v in range(g.num_views)), needs=_VIEWS),
    "depth_png": ExportLayout("_depth16", None, "16-bit PNG depth frames, 65535 = nearest",
                              lambda s, g: [np.round(s.depth[0] * 65535.0).astype(np.uint16)], folders=lambda g: ("",), needs=_DEPTH),
}  # fmt: skip
DEFAULT_EXPORTS = ("sbs", "hsbs", "anaglyph")  # the reference's SBS result, the half SBS 3D TVs take, an anaglyph to check by eye


def needs(names: Iterable[str]) -> frozenset[str]:
    """What the layouts ``names`` build from besides the eyes and the input view: ``"views"`` (every view of the
    frame matrix) and/or ``"depth"`` (the input view's depth). The one answer to "which views are needed":
    every view when ``"views"`` is in it, else the eyes and the input view."""
    return frozenset().union(*(EXPORTS[n].needs for n in names))
