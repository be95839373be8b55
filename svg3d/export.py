"""Stereo exports: side-by-side, top-bottom, anaglyph, single eyes, a grid of all views, the depth video.

Every export is an H.264 yuv420p mp4 at the clip's frame rate with the input's audio copied
(``io.write_video``), named ``<stem><suffix>.mp4`` with the tags VR and 3D-TV players read from file
names: ``_SBS_LR`` (full side-by-side, left eye left), ``_HSBS_LR`` (half: each eye squeezed to half
the width), ``_TB`` / ``_HTB`` (top-bottom, left eye on top), ``_anaglyph``. ``<stem>_preview.png`` is
the first stereo pair side by side.

Frames are ``uint8`` RGB ``(T, H, W, 3)`` (``io`` conventions); the functions building them are pure.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from . import io
from .checks import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Export:
    suffix: str  # appended to the clip's stem
    help: str
    needs_all_views: bool = False


EXPORTS: dict[str, Export] = {
    "sbs": Export("_SBS_LR", "full side-by-side, left | right (2W x H)"),
    "hsbs": Export("_HSBS_LR", "half side-by-side, each eye squeezed to W/2 (W x H)"),
    "tb": Export("_TB", "full top-bottom, left eye on top (W x 2H)"),
    "htb": Export("_HTB", "half top-bottom, each eye squeezed to H/2 (W x H)"),
    "anaglyph": Export("_anaglyph", "red-cyan anaglyph (Dubois least-squares matrices)"),
    "left": Export("_left", "the left eye alone"),
    "right": Export("_right", "the right eye alone"),
    "grid": Export("_grid", "every view of the frame matrix in a grid, left to right, top to bottom", True),
    "depth": Export("_depth", "the input's depth (stabilised disparity), colour-mapped, near = bright"),
}
DEFAULT_EXPORTS = ("sbs", "hsbs", "anaglyph")
PREVIEW_SUFFIX = "_preview.png"
GRID_MAX_WIDTH = 1920  # px: a grid wider than this is scaled down (players and H.264 levels cope with it)


def parse_exports(text: str) -> tuple[str, ...]:
    """``--exports`` (comma-separated names, or ``all``) to a tuple of known names, in the given order."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return tuple(EXPORTS)
    unknown = [n for n in names if n not in EXPORTS]
    if unknown or not names:
        raise InputError(f"--exports {text!r}: unknown export {', '.join(unknown) or '(none given)'}; choose from {', '.join(EXPORTS)} or all")
    return tuple(dict.fromkeys(names))  # de-duplicated, order kept


def output_path(out_dir: str | os.PathLike, stem: str, name: str) -> Path:
    return Path(out_dir) / f"{stem}{EXPORTS[name].suffix}.mp4"


# --------------------------------------------------------------------------------------------------
# frame layouts (pure)


def _check_pair(left: np.ndarray, right: np.ndarray) -> None:
    if left.ndim != 4 or left.shape[-1] != 3 or left.dtype != np.uint8:
        raise ValueError(f"left: expected uint8 (T, H, W, 3), got {left.dtype} {left.shape}")
    if right.shape != left.shape or right.dtype != np.uint8:
        raise ValueError(f"right {right.dtype} {right.shape} does not match left {left.shape}")


def _resize(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(T, H, W, 3)`` -> ``(T, height, width, 3)``, area interpolation (the squeeze of half formats)."""
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])


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


# Dubois (2001), "A projection method to generate anaglyph stereo images", red-cyan matrices: the
# least-squares fit, in linear RGB, of what the filtered eyes see to what each eye should see.
DUBOIS_LEFT = np.array([[0.456, 0.500, 0.176], [-0.040, -0.038, -0.016], [-0.015, -0.021, -0.005]])
DUBOIS_RIGHT = np.array([[-0.043, -0.088, -0.002], [0.378, 0.734, -0.018], [-0.072, -0.113, 1.226]])


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


_LINEAR = _srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)  # uint8 sRGB -> linear, as a table


def anaglyph(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Red-cyan anaglyph ``(T, H, W, 3)`` by Dubois' matrices, applied in linear light as published.

    (Applying them to gamma-encoded values, as many tools do, darkens mid-tones and shifts hues.)
    """
    _check_pair(left, right)
    out = np.empty_like(left)
    ml, mr = DUBOIS_LEFT.astype(np.float32), DUBOIS_RIGHT.astype(np.float32)
    for t in range(len(left)):  # one frame at a time bounds the float working set
        lin = _LINEAR[left[t]] @ ml.T + _LINEAR[right[t]] @ mr.T  # (H, W, 3)
        out[t] = np.round(_linear_to_srgb(lin) * 255.0).astype(np.uint8)
    return out


def grid(views: np.ndarray) -> np.ndarray:
    """Every view in a grid of ``ceil(sqrt(V))`` columns, row-major, black where a cell is empty.

    views: ``uint8 (V, T, H, W, 3)``. Cells are scaled down (area) when the grid would be wider than
    ``GRID_MAX_WIDTH``. Returns ``(T, rows * h, cols * w, 3)``.
    """
    if views.ndim != 5 or views.shape[-1] != 3 or views.dtype != np.uint8:
        raise ValueError(f"views: expected uint8 (V, T, H, W, 3), got {views.dtype} {views.shape}")
    v, t, h, w, _ = views.shape
    cols = math.ceil(math.sqrt(v))
    rows = math.ceil(v / cols)
    scale = min(1.0, GRID_MAX_WIDTH / (cols * w))
    ch, cw = max(2, round(h * scale)) // 2 * 2, max(2, round(w * scale)) // 2 * 2  # even cells keep yuv420p exact
    out = np.zeros((t, rows * ch, cols * cw, 3), np.uint8)
    for i in range(v):
        cell = views[i] if (ch, cw) == (h, w) else _resize(views[i], cw, ch)
        r, c = divmod(i, cols)
        out[:, r * ch : (r + 1) * ch, c * cw : (c + 1) * cw] = cell
    return out


def depth_video(disparity: np.ndarray) -> np.ndarray:
    """Colour-mapped disparity ``(T, H, W)`` -> ``uint8 (T, H, W, 3)``, near = bright (inferno).

    Normalised over the whole clip, not per frame (``depth.preview_image`` does per frame), so that
    brightness means the same depth in every frame and the video does not pump.
    """
    if disparity.ndim != 3:
        raise ValueError(f"disparity: expected (T, H, W), got {disparity.shape}")
    lo, hi = float(disparity.min()), float(disparity.max())
    norm = (disparity - lo) / (hi - lo) if hi > lo else np.zeros_like(disparity)
    grey = np.round(np.clip(norm, 0, 1) * 255).astype(np.uint8)
    return np.stack([cv2.cvtColor(cv2.applyColorMap(g, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB) for g in grey])


# --------------------------------------------------------------------------------------------------
# audio and files


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
        if stream.codec_context.name in io.MP4_AUDIO_CODECS:
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
) -> dict[str, Path]:
    """Write the exports ``names`` (keys of ``EXPORTS``) and the preview; return ``{name: path}``.

    left, right: the eyes, ``uint8 (T, H, W, 3)``. views: ``uint8 (V, T, H, W, 3)``, for ``grid``.
    disparity: ``(T, H, W)`` of the input view, for ``depth``. ``audio_from``: a media file whose
    audio is copied into every video. ``progress(1)`` after each file.
    """
    _check_pair(left, right)
    builders: dict[str, Callable[[], np.ndarray]] = {
        "sbs": lambda: side_by_side(left, right),
        "hsbs": lambda: side_by_side(left, right, half=True),
        "tb": lambda: top_bottom(left, right),
        "htb": lambda: top_bottom(left, right, half=True),
        "anaglyph": lambda: anaglyph(left, right),
        "left": lambda: left,
        "right": lambda: right,
        "grid": lambda: grid(_need(views, "views", "grid")),
        "depth": lambda: depth_video(_need(disparity, "disparity", "depth")),
    }
    written = {}
    for name in names:
        path = output_path(out_dir, stem, name)
        io.write_video(path, builders[name](), fps, audio_from=audio_from)
        written[name] = path
        log.debug("wrote %s", path)
        if progress is not None:
            progress(1)
    preview = Path(out_dir) / f"{stem}{PREVIEW_SUFFIX}"
    io.write_image(preview, side_by_side(left[:1], right[:1])[0])
    written["preview"] = preview
    return written


def _need(x: np.ndarray | None, what: str, name: str) -> np.ndarray:
    if x is None:
        raise ValueError(f"the {name} export needs {what}")
    return x


def needs_views(names: Sequence[str]) -> bool:
    return any(EXPORTS[n].needs_all_views for n in names)


def needs_depth(names: Sequence[str]) -> bool:
    return "depth" in names
