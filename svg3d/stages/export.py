"""Exports that players, headsets and glasses-free displays read as 3D, written as a stream.

Layouts (``EXPORTS``; a frame is ``uint8`` RGB ``(T, H, W, 3)``, ``io`` conventions; the layout
functions below are pure):

- ``sbs`` / ``hsbs``: left | right, full (2W x H) or half (each eye squeezed to W/2).
- ``tb`` / ``htb``: left over right, full (W x 2H) or half.
- ``cross``: right | left, for cross-eyed free viewing.
- ``anaglyph``: one image for coloured glasses, of ``ExportSettings.anaglyph`` kind (``ANAGLYPHS``).
- ``left`` / ``right``: one eye.
- ``rgbd`` / ``hrgbd``: the input view | its depth as grey (white = near), full or half, as 3D
  monitors and Looking Glass Bridge take RGB-D.
- ``vr180``: each eye mapped to a 180-degree equirectangular image (the pinhole camera of
  ``camera``, its focal given to the writer), side by side, with the Spherical Video V2 boxes
  YouTube and headsets read.
- ``grid``: every view, tiled with no empty cell where the view count allows (``grid_layout``).
- ``quilt``: a Looking Glass quilt of every view, bottom-left = leftmost camera, rows upwards
  (``quilt_layout``), named ``_qs{columns}x{rows}a{aspect}`` as Looking Glass software parses it.
- ``depth``: the input's disparity, colour-mapped (inferno), near = bright.
- ``eyes_png`` / ``views_png`` / ``depth_png``: lossless frame folders: ``left/`` and ``right/``;
  ``view_000/`` ... (frame-matrix view indices); 16-bit grey depth (65535 = nearest of the range).

Names: ``<stem><suffix>.<container>`` (folders: ``<stem><suffix>/``), with our suffixes or, with
``ExportSettings.naming = "iw3"``, iw3's (nagadomi/nunif ``iw3/utils.py``) where iw3 has that output.
Ours keep full and half apart: full top-bottom is ``_FTB`` (it was ``_TB``, which iw3 and VR players
read as *half* top-bottom). ``docs/exports.md`` lists every name and what reads it.

Metadata: full/half SBS and TB and VR180 carry the mp4 ``st3d`` box (``sv3d`` too for VR180) or the
Matroska ``StereoMode``; half layouts in H.264 also an x264 frame-packing SEI (``encode.StereoTag``).
Every video carries the source's colour tags and audio and has exactly as many frames as were written.

Streaming: ``ExportWriter`` writes every requested export of one clip, chunk by chunk::

    settings = ExportSettings(exports=("sbs", "quilt", "depth"))
    with ExportWriter(out_dir, "clip", settings, fps=Fraction(24), size=(h, w), num_views=8, eyes=(0, 7),
                      colour=colour, audio=audio_m4a, depth_range=(lo, hi)) as writer:
        for chunk in chunks:  # any number of frames per call, 1 included
            writer.write(left, right, views=views if writer.needs_views else None, disparity=d)
    manifest = writer.manifest  # {export name: path, "preview": path}

Each export keeps one open encoder (or one PNG folder) fed frame by frame, so memory is bounded by a
chunk and by one output frame per export, never by the clip. Results do not depend on the chunking
(tested). Depth is normalised over a range given up front (``depth_range``: the clip's, so
brightness means the same depth in every frame) or, for per-shot ranges, with every ``write``
(``depth_range=(lo, hi)`` arrays of one value per frame). Every output is written as a part
(``parts``): ``close()`` renames all of them into place once every one is complete; ``abort()`` (and
an exception inside the ``with``) removes them; a killed run's parts are removed by the next run's
``remove_stale_parts(out_dir)``. An ``OSError`` (disk full, vanished folder) becomes an
``InputError`` naming the file and the cause, with every part removed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .. import io
from ..checks import InputError
from ..colour import ColourInfo
from ..encode import MP4_AUDIO_CODECS, EncoderSettings, StereoTag, VideoEncoder, check_encoder
from ..parts import MAX_NAME, Part, remove_stale_parts

__all__ = [
    "ANAGLYPHS", "DEFAULT_EXPORTS", "EXPORTS", "Export", "ExportSettings", "ExportWriter", "anaglyph", "audio_track",
    "check_export", "cross_eyed", "depth_video", "equirect_maps", "grid", "grid_layout", "needs", "needs_depth", "needs_views",
    "output_path", "parse_exports", "quilt", "quilt_layout", "quilt_suffix", "remove_stale_parts", "rgbd",
    "side_by_side", "top_bottom", "vr180", "write_exports",
]  # fmt: skip

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Export:
    suffix: str  # our name, appended to the clip's stem
    iw3: str | None  # iw3's suffix for the same output (nagadomi/nunif iw3/utils.py), None: iw3 has none
    help: str
    kind: str = "video"  # "video": one file; "frames": a folder of PNG frames
    needs: frozenset[str] = frozenset()  # what write() must be given besides the eyes: "views", "disparity"
    stereo: StereoTag | None = None  # stereo metadata written into the file


_DEPTH = frozenset({"disparity"})
_VIEWS = frozenset({"views"})
EXPORTS: dict[str, Export] = {
    "sbs": Export("_SBS_LR", "_LRF_Full_SBS", "full side-by-side, left | right (2W x H)", stereo=StereoTag("sbs")),
    "hsbs": Export("_HSBS_LR", "_LR", "half side-by-side, each eye squeezed to W/2 (W x H)", stereo=StereoTag("sbs", half=True)),
    "tb": Export("_FTB", "_TBF_fulltb", "full top-bottom, left eye on top (W x 2H)", stereo=StereoTag("tb")),
    "htb": Export("_HTB", "_TB", "half top-bottom, each eye squeezed to H/2 (W x H)", stereo=StereoTag("tb", half=True)),
    "cross": Export("_cross_RL", "_RLF_cross", "cross-eyed: right | left (2W x H)", stereo=StereoTag("sbs", swapped=True)),
    "anaglyph": Export("_anaglyph", "_redcyan", "anaglyph for coloured glasses (kind: --anaglyph)"),
    "left": Export("_left", None, "the left eye alone"),
    "right": Export("_right", None, "the right eye alone"),
    "rgbd": Export("_RGBD", "_RGBD", "the input view | its depth, white = near (2W x H)", needs=_DEPTH),
    "hrgbd": Export("_HRGBD", "_HRGBD", "half RGB-D: the input view | depth, each squeezed to W/2 (W x H)", needs=_DEPTH),
    "vr180": Export("_180_LR", "_180x180_LR", "VR180: each eye as a 180-degree equirectangular image, side by side",
                    stereo=StereoTag("sbs", vr180=True)),  # fmt: skip
    "grid": Export("_grid", None, "every view in a grid, leftmost camera first, row by row", needs=_VIEWS),
    "quilt": Export("_qs{cols}x{rows}a{aspect}", "_qs{cols}x{rows}a{aspect}", "Looking Glass quilt of every view", needs=_VIEWS),
    "depth": Export("_depth", None, "the input's depth, colour-mapped (inferno), near = bright", needs=_DEPTH),
    "eyes_png": Export("_eyes", None, "lossless PNG frames of each eye: left/, right/", kind="frames"),
    "views_png": Export("_views", None, "lossless PNG frames of every view: view_000/ ...", kind="frames", needs=_VIEWS),
    "depth_png": Export("_depth16", None, "16-bit PNG depth frames, 65535 = nearest", kind="frames", needs=_DEPTH),
}
DEFAULT_EXPORTS = ("sbs", "hsbs", "anaglyph")
PREVIEW_SUFFIX = "_preview.png"
GRID_MAX_WIDTH = 1920  # px: a grid wider than this is scaled down (players and H.264 levels cope with it)
QUILT_MAX_SIDE = 4096  # px: the largest standard quilt Looking Glass tooling uses (4096 x 4096)
VR180_MAX_EYE = 2048  # px per eye: 4096 x 2048 side by side stays within H.264 level 5.1, which headsets decode
NAMINGS = ("svg3d", "iw3")
FRAME_NAME = "{frame:06d}.png"  # frames of the PNG folders: six digits sort right up to 9 hours at 30 fps


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


def _check_pair(left: np.ndarray, right: np.ndarray) -> None:
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
    _check_pair(left, right)
    if kind not in ANAGLYPHS:
        raise ValueError(f"anaglyph kind {kind!r}: choose from {', '.join(ANAGLYPHS)}")
    out = np.empty_like(left)
    for t in range(len(left)):  # one frame at a time bounds the float working set
        if kind in ("dubois", "green-magenta"):
            ml, mr = (DUBOIS_LEFT, DUBOIS_RIGHT) if kind == "dubois" else (DUBOIS_GM_LEFT, DUBOIS_GM_RIGHT)
            lin = cv2.transform(_LINEAR[left[t]], ml.astype(np.float32)) + cv2.transform(_LINEAR[right[t]], mr.astype(np.float32))
            out[t] = _SRGB[np.rint(np.clip(lin, 0.0, 1.0) * 65535.0).astype(np.uint16)]  # (H, W, 3)
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
    _check_pair(left, right)
    if half:
        h, w = left.shape[1:3]
        left, right = _resize(left, w // 2, h), _resize(right, w // 2, h)
    return np.concatenate([left, right], axis=2)


def top_bottom(left: np.ndarray, right: np.ndarray, *, half: bool = False) -> np.ndarray:
    """Left over right: ``(T, 2H, W, 3)``, or with ``half`` each eye squeezed to ``H // 2``."""
    _check_pair(left, right)
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


def _check_views(views: np.ndarray) -> None:
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
    _check_views(views)
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
    _check_views(views)
    v, t, h, w, _ = views.shape
    order = list(range(v)) if order is None else list(order)
    cols, rows, th, tw = quilt_layout(v, h, w, max_side=max_side)
    out = np.empty((t, rows * th, cols * tw, 3), np.uint8)
    for k, i in enumerate(order):
        r, c = divmod(k, cols)  # r counts rows from the bottom
        y = (rows - 1 - r) * th
        out[:, y : y + th, c * tw : (c + 1) * tw] = views[i] if (th, tw) == (h, w) else _resize(views[i], tw, th)
    return out


def vr180_eye_size(focal: float) -> int:
    """Per-eye side of a VR180 frame that keeps the input's resolution at its centre: pi * focal (even), capped."""
    return min(VR180_MAX_EYE, max(2, round(math.pi * focal / 2) * 2))


def equirect_maps(height: int, width: int, focal: float, eye: int) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps ``(eye, eye)`` float32 from a 180 x 180-degree equirectangular eye to a pinhole image.

    Output pixel (i, j) centre: longitude ``(j + 0.5) / eye * 180 - 90`` degrees (left to right),
    latitude ``90 - (i + 0.5) / eye * 180`` (top to bottom). Its ray ``(cos lat sin lon, -sin lat,
    cos lat cos lon)`` (``camera``: +x right, +y down, +z forward) projects to ``u = W/2 + f x / z``,
    ``v = H/2 + f y / z`` (pixel centres, principal point ``(W/2, H/2)`` as ``camera``). Rays outside
    the image (or behind the camera) map to -1: black.
    """
    ang = (np.arange(eye, dtype=np.float64) + 0.5) / eye * math.pi - math.pi / 2
    lon = ang[None, :]
    lat = -ang[:, None]
    x = np.cos(lat) * np.sin(lon)
    y = -np.sin(lat) * np.ones_like(lon)
    z = np.cos(lat) * np.cos(lon)
    front = z > 1e-9
    safe = np.where(front, z, 1.0)
    u = np.where(front, width / 2 + focal * x / safe, -1.0)
    v = np.where(front, height / 2 + focal * y / safe, -1.0)
    outside = (u < -0.5) | (u > width - 0.5) | (v < -0.5) | (v > height - 0.5)
    u[outside] = v[outside] = -1e4  # far outside: cv2's constant border (black) with no interpolated edge
    return u.astype(np.float32), v.astype(np.float32)


def vr180(left: np.ndarray, right: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Each eye remapped to 180-degree equirectangular (``equirect_maps``), side by side: ``(T, S, 2S, 3)``."""
    _check_pair(left, right)
    mx, my = maps

    def remap(frames: np.ndarray) -> np.ndarray:
        return np.stack([cv2.remap(f, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0) for f in frames])

    return np.concatenate([remap(left), remap(right)], axis=2)


# --------------------------------------------------------------------------------------------------
# settings and names


@dataclass(frozen=True)
class ExportSettings:
    """Which exports to write and how (``--exports --naming --anaglyph --vr180-fov --vr180-size`` and the encoder flags)."""

    exports: tuple[str, ...] = DEFAULT_EXPORTS  # the reference's SBS result, the half SBS 3D TVs take, an anaglyph to check by eye
    encoder: EncoderSettings = field(default_factory=EncoderSettings)  # every video export's codec, quality, container
    naming: str = "svg3d"  # "svg3d": our suffixes; "iw3": iw3's, for tools and players set up for iw3's files
    anaglyph: str = "dubois"  # the anaglyph kind (ANAGLYPHS): Dubois red-cyan ghosts least
    vr180_fov: float | None = None  # degrees, horizontal field of view of the input; None: from the focal given to the writer
    vr180_size: int | None = None  # pixels per eye side; None: the input's resolution at its centre (pi * focal), <= 2048
    preview: bool = True  # <stem>_preview.png: the first stereo pair side by side

    def __post_init__(self):
        unknown = [n for n in self.exports if n not in EXPORTS]
        if unknown or not self.exports:
            raise InputError(f"--exports: unknown export {', '.join(unknown) or '(none given)'}; choose from {', '.join(EXPORTS)}")
        if len(set(self.exports)) != len(self.exports):
            raise InputError(f"--exports: {', '.join(self.exports)} names an export twice")
        if self.naming not in NAMINGS:
            raise InputError(f"--naming {self.naming}: choose {' or '.join(NAMINGS)}")
        if self.anaglyph not in ANAGLYPHS:
            raise InputError(f"--anaglyph {self.anaglyph}: choose from {', '.join(ANAGLYPHS)}")
        if self.vr180_fov is not None and not 1.0 <= self.vr180_fov < 180.0:
            raise InputError(f"--vr180-fov {self.vr180_fov}: degrees of the input's horizontal view, in 1 .. 179")
        if self.vr180_size is not None and not (16 <= self.vr180_size <= 8192 and self.vr180_size % 2 == 0):
            raise InputError(f"--vr180-size {self.vr180_size}: an even number of pixels per eye, 16 .. 8192")


def parse_exports(text: str) -> tuple[str, ...]:
    """``--exports`` (comma-separated names, or ``all``) to a tuple of known names, in the given order."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return tuple(EXPORTS)
    unknown = [n for n in names if n not in EXPORTS]
    if unknown or not names:
        raise InputError(f"--exports {text!r}: unknown export {', '.join(unknown) or '(none given)'}; choose from {', '.join(EXPORTS)} or all")
    return tuple(dict.fromkeys(names))  # de-duplicated, order kept


def needs(settings: ExportSettings) -> frozenset[str]:
    """What ``ExportWriter.write`` must be given besides the eyes: ``"views"`` and/or ``"disparity"``.

    (An RGB-D export of a layout whose input view is neither eye also needs the views: see
    ``ExportWriter.needs``, which knows the layout.)
    """
    return frozenset().union(*(EXPORTS[n].needs for n in settings.exports))


def needs_views(settings: ExportSettings) -> bool:
    return "views" in needs(settings)


def needs_depth(settings: ExportSettings) -> bool:
    return "disparity" in needs(settings)


def suffix_of(name: str, settings: ExportSettings, *, num_views: int = 2, size: tuple[int, int] = (2, 2)) -> str:
    """The file-name suffix of export ``name`` (without the extension): ours or iw3's (``settings.naming``)."""
    spec = EXPORTS[name]
    suffix = spec.iw3 if settings.naming == "iw3" and spec.iw3 is not None else spec.suffix
    if name == "quilt":
        return quilt_suffix(num_views, *size)
    if name == "anaglyph":
        kind = settings.anaglyph
        if settings.naming == "iw3" and kind in IW3_ANAGLYPHS:
            return f"{suffix}_{IW3_ANAGLYPHS[kind]}"
        return EXPORTS[name].suffix if kind == "dubois" else f"{EXPORTS[name].suffix}_{kind}"  # the default keeps its old name
    return suffix


def output_path(
    out_dir: str | os.PathLike,
    stem: str,
    name: str,
    settings: ExportSettings | None = None,
    *,
    num_views: int | None = None,
    size: tuple[int, int] | None = None,
) -> Path:
    """Where export ``name`` of clip ``stem`` goes (a file, or a folder for the PNG exports).

    ``num_views`` and ``size`` (one view's ``(H, W)``) are needed for the quilt, whose name holds its tiling.
    """
    settings = settings or ExportSettings()
    if name == "quilt" and (num_views is None or size is None):
        raise ValueError("the quilt's name needs num_views and size")
    suffix = suffix_of(name, settings, num_views=num_views or 2, size=size or (2, 2))
    extension = "" if EXPORTS[name].kind == "frames" else settings.encoder.suffix
    return Path(out_dir) / f"{stem}{suffix}{extension}"


# --------------------------------------------------------------------------------------------------
# the streaming writer


@contextlib.contextmanager
def _naming_errors(path: Path):
    """Turn an ``OSError`` into an ``InputError`` naming ``path`` and the cause."""
    try:
        yield
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None


class _FrameFolder:
    """A PNG frame folder (with optional sub-folders), built as a part and renamed into place on commit."""

    def __init__(self, final: Path, subfolders: Sequence[str] = ("",)):
        self.path = final
        self.part = Part(final, folder=True)
        self.subfolders = list(subfolders)
        for sub in self.subfolders:
            if sub:
                (self.part.path / sub).mkdir()
        self.frames = 0

    def write(self, images: Sequence[np.ndarray]) -> None:
        """One frame: an image per sub-folder (``uint8 (H, W, 3)`` RGB or ``uint16 (H, W)`` grey)."""
        try:
            for sub, img in zip(self.subfolders, images, strict=True):
                (self.part.path / sub / FRAME_NAME.format(frame=self.frames)).write_bytes(io.encode_image(img, ".png"))
        except OSError as e:
            self.abort()
            raise InputError(f"{self.path}: cannot write ({e.strerror or e})") from None
        self.frames += 1

    def finish(self) -> None:
        pass

    def commit(self) -> Path:
        return self.part.commit()

    def abort(self) -> None:
        self.part.discard()


def check_export(out_dir: Path, stem: str, settings: ExportSettings, *, num_views: int, size: tuple[int, int]) -> tuple[dict[str, Path], Path]:
    """What ``ExportWriter`` refuses, checkable before anything is computed (``convert`` does): the encoder
    settings (when a video export is asked for, or when they are not the defaults: a flag given for nothing
    is still checked), VR180's container, the names' lengths. Returns the paths of the exports and of the
    preview. ``InputError`` naming the flag or the file."""
    if any(EXPORTS[n].kind == "video" for n in settings.exports) or settings.encoder != EncoderSettings():
        check_encoder(settings.encoder)
    if "vr180" in settings.exports and settings.encoder.container != "mp4":
        raise InputError("--vr180 needs --container mp4: the Spherical Video V2 boxes headsets and YouTube read are mp4 boxes")
    paths = {n: output_path(Path(out_dir), stem, n, settings, num_views=num_views, size=size) for n in settings.exports}
    preview = Path(out_dir) / f"{stem}{PREVIEW_SUFFIX}"
    for p in [*paths.values(), preview]:
        if len(p.name.encode()) > MAX_NAME:
            raise InputError(f"{p}: the file name is {len(p.name.encode())} bytes, over the {MAX_NAME} file systems allow; use a shorter stem")
    return paths, preview


class ExportWriter:
    """Every requested export of one clip, written chunk by chunk (see the module docstring).

    out_dir, stem: outputs are ``out_dir/<stem><suffix>[.ext]``.
    settings:      which exports and how.
    fps:           frame rate (exact ``Fraction``).
    size:          one eye's ``(H, W)``.
    num_views:     the view count V of the frame matrix (for the views exports); 2 for plain stereo.
    eyes:          (left, right) view indices (``camera.eye_views``): the views' left-to-right order
                   follows (index order when left < right, reversed otherwise).
    reference:     index of the view that is the input (``camera.reference_view``), whose depth is
                   given; default: the left eye. RGB-D shows it next to its depth.
    colour:        the source's colour, carried to every video (``None``: ``encode.VideoEncoder``'s default).
    audio:         a media file whose audio is copied into every video (``audio_track`` makes one), or None.
    depth_range:   ``(lo, hi)`` of the disparity for the whole clip, or None to give one per frame with
                   every ``write`` (per-shot ranges); needed when a depth export is asked.
    focal:         the input's focal in pixels at this size (VR180 mapping); default ``camera.default_focal(W)``.

    Every check happens here, before any frame is encoded: unknown or unavailable settings, names
    longer than the file system allows, VR180 in Matroska. ``write`` checks what it is given.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        stem: str,
        settings: ExportSettings,
        *,
        fps: Fraction,
        size: tuple[int, int],
        num_views: int = 2,
        eyes: tuple[int, int] = (0, 1),
        reference: int | None = None,
        colour: ColourInfo | None = None,
        audio: str | os.PathLike | None = None,
        depth_range: tuple[float, float] | None = None,
        focal: float | None = None,
    ):
        from .. import camera

        self.out_dir = Path(out_dir)
        self.stem = stem
        self.settings = settings
        self.fps = Fraction(fps)
        self.size = (int(size[0]), int(size[1]))
        self.num_views = num_views
        self.eyes = tuple(eyes)
        self.reference = self.eyes[0] if reference is None else reference
        self.colour = colour
        self.audio = Path(audio) if audio is not None else None
        self.depth_range = None if depth_range is None else (float(depth_range[0]), float(depth_range[1]))
        self.frames = 0
        self._sinks: dict[str, VideoEncoder | _FrameFolder] = {}
        self._preview: np.ndarray | None = None
        self._done = False
        self.manifest: dict[str, Path] = {}
        h, w = self.size
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if h < 2 or w < 2:
            raise ValueError(f"size: expected (H, W) of at least 2 x 2, got {size}")
        if num_views < 2 or not all(0 <= e < num_views for e in (*self.eyes, self.reference)) or self.eyes[0] == self.eyes[1]:
            raise ValueError(f"eyes {eyes} / reference {reference}: need two different views of 0..{num_views - 1}")
        if self.depth_range is not None and not (math.isfinite(self.depth_range[0]) and math.isfinite(self.depth_range[1])):
            raise ValueError(f"depth_range must be finite, got {depth_range}")
        self.order = list(range(num_views)) if self.eyes[0] < self.eyes[1] else list(range(num_views))[::-1]
        self.paths, self.paths_preview = check_export(self.out_dir, stem, settings, num_views=num_views, size=self.size)
        if "vr180" in settings.exports:
            f = camera.default_focal(w) if focal is None else float(focal)
            if settings.vr180_fov is not None:
                f = (w / 2) / math.tan(math.radians(settings.vr180_fov) / 2)
            eye = settings.vr180_size or vr180_eye_size(f)
            self._vr_maps = equirect_maps(h, w, f, eye)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for name in settings.exports:
                self._sinks[name] = self._open(name)
        except OSError as e:
            self.abort()
            raise InputError(f"{self.out_dir}: cannot write ({e.strerror or e})") from None
        except BaseException:
            self.abort()
            raise

    @property
    def needs(self) -> frozenset[str]:
        """What ``write`` must be given besides the eyes, for these settings and this layout."""
        extra = needs(self.settings)
        if any(n in ("rgbd", "hrgbd") for n in self.settings.exports) and self.reference not in self.eyes:
            extra |= _VIEWS
        return extra

    @property
    def needs_views(self) -> bool:
        return "views" in self.needs

    @property
    def needs_depth(self) -> bool:
        return "disparity" in self.needs

    def _frame_size(self, name: str) -> tuple[int, int]:
        """``(H, W)`` of export ``name``'s frames."""
        h, w = self.size
        if name in ("sbs", "cross", "rgbd"):
            return h, 2 * w
        if name in ("hsbs", "hrgbd"):
            return h, 2 * (w // 2)
        if name == "tb":
            return 2 * h, w
        if name == "htb":
            return 2 * (h // 2), w
        if name == "vr180":
            eye = self._vr_maps[0].shape[0]
            return eye, 2 * eye
        if name == "grid":
            cols, rows, ch, cw = grid_layout(self.num_views, h, w)
            return rows * ch, cols * cw
        if name == "quilt":
            cols, rows, th, tw = quilt_layout(self.num_views, h, w)
            return rows * th, cols * tw
        return h, w

    def _open(self, name: str):
        spec = EXPORTS[name]
        path = self.paths[name]
        if spec.kind == "frames":
            subs = {"eyes_png": ("left", "right"), "views_png": tuple(f"view_{v:03d}" for v in range(self.num_views))}.get(name, ("",))
            return _FrameFolder(path, subs)
        fh, fw = self._frame_size(name)
        return VideoEncoder(path, self.settings.encoder, fps=self.fps, width=fw, height=fh, colour=self.colour, audio=self.audio,
                            stereo=spec.stereo)  # fmt: skip

    def write(
        self,
        left: np.ndarray,
        right: np.ndarray,
        *,
        views: np.ndarray | None = None,
        disparity: np.ndarray | None = None,
        depth_range: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Append ``n`` frames to every export.

        left, right: ``uint8 (n, H, W, 3)``. views: ``uint8 (V, n, H, W, 3)``, every view, when
        ``needs_views``. disparity: ``float32 (n, H, W)`` of the input view when ``needs_depth``.
        depth_range: ``(lo, hi)`` arrays ``(n,)`` for these frames when the writer was made without one.
        """
        if self._done:
            raise ValueError("write after close or abort")
        _check_pair(left, right)
        n = len(left)
        if left.shape[1:3] != self.size:
            raise ValueError(f"left: frames of {left.shape[2]}x{left.shape[1]}, the writer was made for {self.size[1]}x{self.size[0]}")
        need = self.needs
        if "views" in need:
            if views is None:
                raise ValueError(f"views: {', '.join(n for n in self.settings.exports if 'views' in EXPORTS[n].needs) or 'rgbd'} need every view")
            _check_views(views)
            if views.shape[:2] != (self.num_views, n) or views.shape[2:4] != self.size:
                raise ValueError(f"views: expected ({self.num_views}, {n}, {self.size[0]}, {self.size[1]}, 3), got {views.shape}")
        lo = hi = None
        if "disparity" in need:
            if disparity is None:
                raise ValueError(f"disparity: {', '.join(n for n in self.settings.exports if 'disparity' in EXPORTS[n].needs)} need the input's depth")
            if disparity.shape != (n, *self.size):
                raise ValueError(f"disparity: expected ({n}, {self.size[0]}, {self.size[1]}), got {disparity.shape}")
            if self.depth_range is not None and depth_range is not None:
                raise ValueError("depth_range: given to the writer already; per-frame ranges only for a writer made without one")
            if self.depth_range is not None:
                lo, hi = self.depth_range
            elif depth_range is not None:
                lo, hi = (np.asarray(r, np.float64) for r in depth_range)
                if lo.shape != (n,) or hi.shape != (n,):
                    raise ValueError(f"depth_range: expected two arrays of shape ({n},), got {lo.shape} and {hi.shape}")
            else:
                raise ValueError("depth_range: give (lo, hi) to the writer or per-frame arrays with every write")
        if self._preview is None and n and self.settings.preview:
            self._preview = side_by_side(left[:1], right[:1])[0].copy()
        for t in range(n):  # one frame at a time: every export's working set is one output frame
            sl = slice(t, t + 1)
            frame_views = views[:, sl] if views is not None else None
            d01 = None
            if lo is not None:
                lo_t = lo if np.ndim(lo) == 0 else lo[sl]
                hi_t = hi if np.ndim(hi) == 0 else hi[sl]
                d01 = normalise_depth(disparity[sl], lo_t, hi_t)
            try:  # the sinks turn an OSError into an InputError naming their file
                for name, sink in self._sinks.items():
                    self._write_one(name, sink, left[sl], right[sl], frame_views, d01)
            except BaseException:
                self.abort()
                raise
        self.frames += n

    def _source(self, left, right, views):
        if self.reference == self.eyes[0]:
            return left
        if self.reference == self.eyes[1]:
            return right
        return views[self.reference]

    def _write_one(self, name: str, sink, left: np.ndarray, right: np.ndarray, views: np.ndarray | None, d01: np.ndarray | None) -> None:
        """Export ``name``'s frame of one time step. Arrays hold that one frame: eyes ``(1, H, W, 3)``,
        views ``(V, 1, H, W, 3)``, normalised depth ``(1, H, W)`` in [0, 1]."""
        if name == "eyes_png":
            sink.write([left[0], right[0]])
        elif name == "views_png":
            sink.write([views[v, 0] for v in range(self.num_views)])
        elif name == "depth_png":
            sink.write([np.round(d01[0] * 65535.0).astype(np.uint16)])
        elif name in ("sbs", "hsbs"):
            sink.write(side_by_side(left, right, half=name == "hsbs"))
        elif name in ("tb", "htb"):
            sink.write(top_bottom(left, right, half=name == "htb"))
        elif name == "cross":
            sink.write(cross_eyed(left, right))
        elif name == "anaglyph":
            sink.write(anaglyph(left, right, self.settings.anaglyph))
        elif name in ("left", "right"):
            sink.write(left if name == "left" else right)
        elif name in ("rgbd", "hrgbd"):
            sink.write(rgbd(self._source(left, right, views), d01, half=name == "hrgbd"))
        elif name == "vr180":
            sink.write(vr180(left, right, self._vr_maps))
        elif name == "grid":
            sink.write(grid(views, order=self.order))
        elif name == "quilt":
            sink.write(quilt(views, order=self.order))
        elif name == "depth":
            sink.write(depth_video(d01, 0.0, 1.0))
        else:  # a name in EXPORTS that this method does not know: a bug
            raise AssertionError(f"no frame builder for export {name!r}")

    def close(self) -> dict[str, Path]:
        """Finish every export, then rename them all into place; returns the manifest ``{name: path, "preview": path}``."""
        if self._done:
            return self.manifest
        try:
            if self.frames == 0:
                raise ValueError("no frames were written")
            for sink in self._sinks.values():
                if sink.frames != self.frames:  # a writer bug, never the user's
                    raise RuntimeError(f"{sink.path}: {sink.frames} frames written of {self.frames}")
                sink.finish()
            if self._preview is not None:
                with _naming_errors(self.paths_preview):
                    preview = Part(self.paths_preview)
                    self._sinks["preview"] = preview  # type: ignore[assignment]  # committed (or discarded) with the rest
                    preview.path.write_bytes(io.encode_image(self._preview, ".png"))
            for name, sink in self._sinks.items():  # every part is complete: now rename them all
                with _naming_errors(self.paths.get(name, self.paths_preview)):
                    self.manifest[name] = sink.commit()
        except BaseException:
            self.abort()
            raise
        self._done = True
        for name, path in self.manifest.items():
            log.debug("wrote %s: %s", name, path)
        return self.manifest

    def abort(self) -> None:
        """Remove every part (outputs already renamed into place by a failed ``close`` stay)."""
        self._done = True
        for sink in self._sinks.values():
            with contextlib.suppress(Exception):
                if isinstance(sink, Part):
                    sink.discard()
                else:
                    sink.abort()

    def __enter__(self) -> ExportWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# --------------------------------------------------------------------------------------------------
# audio and the whole-clip helper


AAC_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}


def audio_track(
    source: str | os.PathLike, dest: str | os.PathLike, *, start: float = 0.0, duration: float | None = None
) -> Path | None:
    """The audio of ``source`` between ``start`` and ``start + duration`` seconds as an mp4-ready ``.m4a``.

    Copied, not re-encoded, when mp4 can hold the codec (AAC, MP3, Opus, FLAC ...): cut to whole
    packets (AAC: ~21 ms), timestamps shifted to start at 0. Other codecs (PCM from cameras and .mov
    files) are re-encoded to AAC, cut to the sample. ``dest`` is written atomically. Returns ``dest``,
    or None when ``source`` has no audio.
    """
    import av

    if not io.has_audio(source):
        return None
    dest = Path(dest)
    end = math.inf if duration is None else start + duration
    with av.open(str(source)) as src, io.atomic_path(dest) as tmp, av.open(str(tmp), mode="w", format="mp4") as out:
        stream = src.streams.audio[0]
        if stream.codec_context.name in MP4_AUDIO_CODECS:
            _copy_audio(src, stream, out, start, end)
        else:
            log.info("%s: %s audio cannot go into mp4 as is; re-encoding it to AAC", source, stream.codec_context.name)
            _encode_audio(src, stream, out, start, end)
    return dest


def _copy_audio(src, stream, out, start: float, end: float) -> None:
    out_stream = out.add_stream_from_template(stream)
    cut = start > 0 or not math.isinf(end)  # else every packet as it is (an AAC track starts before 0: encoder priming)
    offset = None
    for packet in src.demux(stream):
        if packet.pts is None or packet.dts is None:
            continue
        t = float(packet.pts * stream.time_base)
        if cut and (t < start - 1e-6 or t >= end - 1e-6):
            continue
        if offset is None:
            offset = packet.pts if cut else 0  # a cut starts at 0
        packet.pts -= offset
        packet.dts -= offset
        packet.stream = out_stream
        out.mux(packet)


def _encode_audio(src, stream, out, start: float, end: float) -> None:
    import av

    rate = stream.codec_context.sample_rate
    channels = stream.codec_context.layout.nb_channels
    # Containers such as Matroska may leave the channel order unnamed ("2 channels"), which the AAC
    # encoder refuses: name the usual layout for the channel count.
    layout = AAC_LAYOUTS.get(channels, stream.codec_context.layout.name)
    out_stream = out.add_stream("aac", rate=rate, layout=layout)
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)  # AAC takes planar float
    first, last = round(start * rate), math.inf if math.isinf(end) else round(end * rate)
    for frame in src.decode(stream):
        t0 = round(float(frame.pts * frame.time_base) * rate) if frame.pts is not None else first
        samples = frame.to_ndarray()  # (channels, n) planar or (1, n * channels) packed
        n = frame.samples
        lo, hi = max(0, first - t0), min(n, last - t0)
        if hi <= lo:
            continue
        if (lo, hi) != (0, n):  # cut at the sample
            planar = frame.format.is_planar
            cut = samples[:, lo:hi] if planar else samples.reshape(1, n, -1)[:, lo:hi].reshape(1, -1)
            sub = av.AudioFrame.from_ndarray(cut.copy(), format=frame.format.name, layout=frame.layout.name)
            sub.sample_rate = rate
            frame = sub
        frame.pts = t0 + lo - first
        frame.time_base = Fraction(1, rate)
        for f in resampler.resample(frame):
            out.mux(out_stream.encode(f))
    for f in resampler.resample(None):
        out.mux(out_stream.encode(f))
    out.mux(out_stream.encode(None))


def write_exports(
    out_dir: str | os.PathLike,
    stem: str,
    names: Sequence[str],
    *,
    left: np.ndarray,
    right: np.ndarray,
    fps: float,
    views: np.ndarray | None = None,
    disparity: np.ndarray | None = None,
    audio_from: str | os.PathLike | None = None,
    progress: Callable[[int], None] | None = None,
    settings: ExportSettings | None = None,
) -> dict[str, Path]:
    """Whole-clip arrays through ``ExportWriter`` (for callers that hold the clip; the CLI streams instead).

    left, right: the eyes, ``uint8 (T, H, W, 3)``. views: ``uint8 (V, T, H, W, 3)`` in index order
    (taken as left to right), for the views exports. disparity: ``(T, H, W)`` of the left eye (the
    input), normalised over its min..max. ``audio_from``: a media file whose audio is copied into every
    video. ``progress(1)`` after each export. Returns the manifest.
    """
    _check_pair(left, right)
    settings = ExportSettings(exports=tuple(names)) if settings is None else settings
    v = len(views) if views is not None else 2
    depth_range = (float(disparity.min()), float(disparity.max())) if disparity is not None else None
    writer = ExportWriter(
        out_dir, stem, settings, fps=Fraction(fps).limit_denominator(1001), size=left.shape[1:3], num_views=v, eyes=(0, v - 1),
        audio=audio_from if audio_from is not None and io.has_audio(audio_from) else None, depth_range=depth_range,
    )  # fmt: skip
    with writer:
        writer.write(left, right, views=views if writer.needs_views else None, disparity=disparity if writer.needs_depth else None)
    if progress is not None:
        for _ in settings.exports:
            progress(1)
    return writer.manifest


# --------------------------------------------------------------------------------------------------
# the stage


class ExportStage:
    """The exports in the pipeline (``svg3d.stages``): every requested export, encoded as the filled chunks arrive.

    Its store is a ``work.OutputStore``: the files are written whole (each atomically) by every run that is not
    current. ``views`` are the views ``ExportWriter`` needs (all of the plan's, or the eyes and the reference); the
    input's own view is its decoded frames, never a float round trip.
    """

    name = "export"
    lookahead = 0

    def __init__(self, clip, config, plan, *, out_dir: Path, stem: str, disparity: str, device, work_dir: Path) -> None:
        self.clip, self.config, self.plan, self.out_dir, self.stem = clip, config, plan, out_dir, stem
        self.disparity, self.device, self.work_dir = disparity, device, work_dir
        self.needs = ("depth", disparity, "filled") if disparity != "depth" else ("depth", "filled")

    def params(self) -> dict:
        from dataclasses import asdict

        info = self.clip.info
        return {
            "settings": asdict(self.config.exports), "stem": self.stem, "fps": str(info.rate), "audio": info.has_audio,
            "plan": asdict(self.plan), "out": str(self.out_dir.resolve()),
        }  # fmt: skip

    def check(self) -> None:
        check_export(self.out_dir, self.stem, self.config.exports, num_views=self.plan.num_views, size=self.clip.info.size)

    def run(self, inputs: dict, store, chunks: list[tuple[int, int]], progress) -> None:
        from .. import work
        from .depth import resize_depth
        from .fill.stage import matrix_source, views

        info, plan = self.clip.info, self.plan
        source = matrix_source(self.clip, self.name, inputs, self.disparity, plan, self.config, self.device, self.config.chunk_frames)
        disparity = inputs[self.disparity]
        writer = ExportWriter(
            self.out_dir, self.stem, self.config.exports, fps=info.rate, size=info.size, num_views=plan.num_views, eyes=plan.eyes,
            reference=plan.reference, colour=info.colour, audio=self._audio(), focal=plan.focal,
        )  # fmt: skip
        wanted = tuple(range(plan.num_views)) if writer.needs_views else tuple(sorted({*plan.eyes, plan.reference}))
        frames = self.clip.reader(self.name)
        with writer:
            for a, b in chunks:
                out = views(source, inputs["filled"], plan.fill_views, tuple(v for v in wanted if v != plan.reference), a, b)
                if plan.reference in wanted:
                    out[plan.reference] = frames(a, b)  # the input itself
                all_views = None
                if writer.needs_views:  # views that are not made (the plan fills the eyes only) stay black
                    blank = np.zeros_like(out[plan.reference])
                    all_views = np.stack([out.get(v, blank) for v in range(plan.num_views)])
                d, depth_range = None, None
                if writer.needs_depth:  # the input view's disparity, normalised as the matrix used it
                    d = resize_depth(disparity.read(a, b, "disparity"), info.size)
                    depth_range = source.ranges(a, b)
                writer.write(out[plan.eyes[0]], out[plan.eyes[1]], views=all_views, disparity=d, depth_range=depth_range)
                progress(b - a)
                work.release_memory()  # no store commits here: trim as they do (RSS crept over a long export)
            store.outputs = writer.close()

    def _audio(self) -> Path | None:
        """The clip's span of the input's audio, in a form mp4 takes (``audio_track``)."""
        info = self.clip.info
        if not info.has_audio:
            return None
        trimmed = info.start > 0 or info.num_frames < info.total_frames
        return audio_track(
            self.clip.path, self.work_dir / "audio.m4a", start=info.start / info.fps, duration=info.duration if trimmed else None,
        )  # fmt: skip
