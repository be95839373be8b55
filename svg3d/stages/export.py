"""Exports written as a stream: every layout of ``layouts`` a clip asks for, chunk by chunk, encoded concurrently.

The layouts (what each export is, its name, size and metadata) are rows of ``layouts.EXPORTS``; this module
streams them into files. Names: ``<stem><suffix>.<container>`` (folders: ``<stem><suffix>/``), with our
suffixes or, with ``ExportSettings.naming = "iw3"``, iw3's (nagadomi/nunif ``iw3/utils.py``) where iw3 has
that output. Ours keep full and half apart: full top-bottom is ``_FTB`` (it was ``_TB``, which iw3 and VR
players read as *half* top-bottom). ``docs/exports.md`` lists every name and what reads it.

Metadata: full/half SBS and TB and VR180 carry the mp4 ``st3d`` box (``sv3d`` too for VR180) or the
Matroska ``StereoMode`` (and ``Projection`` for VR180); half layouts in H.264 also an x264 frame-packing SEI
(``encode.StereoTag``). Every mp4 has its index first (fast start). Every video carries the source's colour
tags and every audio track, and has exactly as many frames as were written.

Which views: ``needs(settings)`` is the one answer. A layout that shows every view (grid, quilt, views_png)
needs them all; every other layout is built from the eyes and the input view (``reference``), which a
conversion always has. ``ExportWriter.needs`` gives the same answer.

Streaming: ``ExportWriter`` writes every requested export of one clip, chunk by chunk::

    settings = ExportSettings(exports=("sbs", "quilt", "depth"))
    with ExportWriter(out_dir, "clip", settings, fps=Fraction(24), size=(h, w), num_views=8, eyes=(0, 7),
                      colour=colour, audio=audio_m4a, depth_range=(lo, hi)) as writer:
        for chunk in chunks:  # any number of frames per call, 1 included
            writer.write(left, right, reference=ref, views=views if writer.needs_views else None, disparity=d)
    manifest = writer.manifest  # {export name: path, "preview": path}

Each export keeps one open encoder (or one PNG folder) fed frame by frame, so memory is bounded by a
chunk and by one output frame per export, never by the clip. The exports of a chunk are built and encoded
concurrently, one thread per export, each encoder on ``encode.encoder_threads`` threads (the machine's
cores shared among the video exports); each export's frames still reach its encoder in order, so the bytes
do not depend on the concurrency, nor on the chunking (tested). Eyes given as torch tensors (on a GPU: the pipeline's
own, ``ExportStage``) stay where they are for every layout with a device build (``ExportLayout.on_device``: the eye
layouts): the chunk is composed and converted to YUV there at once (``colour.encode_planes_torch``) and only each
export's planes come back, in one copy into pinned memory, for its encoder; the other layouts take host copies. Those
planes are within 1 code value of the numpy path's (both within 1 of the float64 formula; tested). Depth is normalised over a range given up
front (``depth_range``: the clip's, so brightness means the same depth in every frame) or, for per-shot
ranges, with every ``write`` (``depth_range=(lo, hi)`` arrays of one value per frame). Every output is
written as a part (``parts``): ``close()`` renames all of them into place once every one is complete;
``abort()`` (and an exception inside the ``with``) removes them; a killed run's parts are removed by the
next run's ``remove_stale_parts(out_dir)``. An ``OSError`` (disk full, vanished folder) becomes an
``InputError`` naming the file and the cause, with every part removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import io, layouts, threads
from ..checks import InputError
from ..colour import ColourInfo
from ..config import ExportSettings
from ..encode import MP4_AUDIO_CODECS, EncoderSettings, VideoEncoder, check_encoder, encoder_threads
from ..layouts import (  # the table and its pure functions (anaglyph, depth_video: re-exported for ui's previews)
    ANAGLYPHS,
    DEFAULT_EXPORTS,
    EXPORTS,
    Geometry,
    Step,
    anaglyph,
    check_pair,
    check_views,
    depth_video,
    normalise_depth,
    quilt_suffix,
    side_by_side,
    vr180_view,
)  # fmt: skip
from ..parts import MAX_NAME, Part, remove_stale_parts

if TYPE_CHECKING:
    import torch

__all__ = [
    "ANAGLYPHS", "DEFAULT_EXPORTS", "EXPORTS", "anaglyph", "depth_video", "ExportSettings", "ExportWriter", "audio_track", "check_export", "needs", "needs_depth", "needs_views", "output_path",
    "parse_exports", "remove_stale_parts", "write_exports",
]  # fmt: skip

log = logging.getLogger(__name__)

PREVIEW_SUFFIX = "_preview.png"
FRAME_NAME = "{frame:06d}.png"  # frames of the PNG folders: six digits sort right up to 9 hours at 30 fps
IW3_ANAGLYPHS = {"dubois": "dubois", "half-colour": "half-color", "grey": "gray", "colour": "color"}  # iw3's --anaglyph names
# pixels of eye frames built on the device at once (8 frames of 1080p): the anaglyph's float32 temporaries, ~50 bytes a
# pixel at their peak (counted from its code), stay near 0.8 GB beside the models; a chunk's planes still come back in
# one copy per export
DEVICE_PIXELS = 1 << 24


# --------------------------------------------------------------------------------------------------
# settings and names


def parse_exports(text: str) -> tuple[str, ...]:
    """``--exports`` (comma-separated names, or ``all``) to a tuple of known names, in the given order."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return tuple(EXPORTS)
    unknown = [n for n in names if n not in EXPORTS]
    if unknown or not names:
        raise InputError(f"--exports {text!r}: unknown export {', '.join(unknown) or '(none given)'}; choose from {', '.join(EXPORTS)} or all")
    twice = [n for n in dict.fromkeys(names) if names.count(n) > 1]
    if twice:  # a typo more often than a wish: say so rather than guess
        raise InputError(f"--exports {text!r}: {', '.join(twice)} named more than once; name each export once")
    return tuple(names)


def needs(settings: ExportSettings) -> frozenset[str]:
    """What ``ExportWriter.write`` must be given besides the eyes and the input view: ``"views"`` (every view of the
    frame matrix) and/or ``"depth"`` (the input view's disparity). The one answer for any view layout
    (``layouts.needs``): no layout needs a view other than the eyes and the input view unless it needs them all."""
    return layouts.needs(settings.exports)


def needs_views(settings: ExportSettings) -> bool:
    """Whether every view of the frame matrix must be made (and given to ``ExportWriter.write``)."""
    return "views" in needs(settings)


def needs_depth(settings: ExportSettings) -> bool:
    return "depth" in needs(settings)


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


def _host(x):
    """A tensor (or None, or an array) as a numpy array on the host."""
    return x if x is None or isinstance(x, np.ndarray) else x.cpu().numpy()


def check_export(out_dir: Path, stem: str, settings: ExportSettings, *, num_views: int, size: tuple[int, int]) -> tuple[dict[str, Path], Path]:
    """What ``ExportWriter`` refuses, checkable before anything is computed (``convert`` does): the encoder
    settings (when a video export is asked for, or when they are not the defaults: a flag given for nothing
    is still checked), the names' lengths. Returns the paths of the exports and of the preview. ``InputError``
    naming the flag or the file."""
    if any(EXPORTS[n].kind == "video" for n in settings.exports) or settings.encoder != EncoderSettings():
        check_encoder(settings.encoder)
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
    audio:         a media file whose audio tracks are copied into every video (``audio_track`` makes one), or None.
    depth_range:   ``(lo, hi)`` of the disparity for the whole clip, or None to give one per frame with
                   every ``write`` (per-shot ranges); needed when a depth export is asked.
    focal:         the input's focal in pixels at this size (VR180 mapping); default ``camera.default_focal(W)``.
    workers:       how many exports are built and encoded at once (threads); default all of them. The files do
                   not depend on it: each encoder's threads are ``encode.encoder_threads`` of the video exports.

    Every check happens here, before any frame is encoded: unknown or unavailable settings, names
    longer than the file system allows. ``write`` checks what it is given.
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
        workers: int | None = None,
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
        self._pool: ThreadPoolExecutor | None = None
        self._pinned: dict[str, torch.Tensor] = {}  # per export: host memory the device's planes are copied into
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
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        order = tuple(range(num_views)) if self.eyes[0] < self.eyes[1] else tuple(range(num_views))[::-1]
        self.order = list(order)
        self.paths, self.paths_preview = check_export(self.out_dir, stem, settings, num_views=num_views, size=self.size)
        vr = None
        if "vr180" in settings.exports:
            vr = vr180_view(self.size, camera.default_focal(w) if focal is None else float(focal), fov=settings.vr180_fov,
                            eye_width=settings.vr180_size)  # fmt: skip
        self.geometry = Geometry(self.size, num_views, order, settings.anaglyph, vr)
        videos = [n for n in settings.exports if EXPORTS[n].kind == "video"]
        self.threads = settings.encoder.threads or encoder_threads(len(videos))  # per encoder; all of them run at once
        self.workers = min(workers or len(settings.exports), len(settings.exports))
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
        if self.workers > 1:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="export")

    @property
    def needs(self) -> frozenset[str]:
        """What ``write`` must be given besides the eyes and the input view: ``needs(settings)``, whatever the layout."""
        return needs(self.settings)

    @property
    def needs_views(self) -> bool:
        return "views" in self.needs

    @property
    def needs_depth(self) -> bool:
        return "depth" in self.needs

    def _open(self, name: str):
        layout = EXPORTS[name]
        path = self.paths[name]
        if layout.kind == "frames":
            return _FrameFolder(path, layout.folders(self.geometry))
        fh, fw = layout.size(self.geometry)
        stereo = layout.stereo
        if stereo is not None and stereo.equirect is not None:  # where this clip's window lies on the sphere
            stereo = dataclasses.replace(stereo, equirect=self.geometry.vr180.bounds())
        return VideoEncoder(path, self.settings.encoder, fps=self.fps, width=fw, height=fh, colour=self.colour, audio=self.audio,
                            stereo=stereo, threads=self.threads)  # fmt: skip

    def write(
        self,
        left: np.ndarray,
        right: np.ndarray,
        *,
        reference: np.ndarray | None = None,
        views: np.ndarray | None = None,
        disparity: np.ndarray | None = None,
        depth_range: tuple[np.ndarray, np.ndarray] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Append ``n`` frames to every export; ``progress(k)`` as the frames are written to every one of them.

        left, right: ``uint8 (n, H, W, 3)``, numpy arrays or torch tensors (any device: the eye layouts are then made
        there, see the module docstring). reference: ``uint8 (n, H, W, 3)``, the input view, when it is
        neither eye (else ignored; taken from ``views`` when those are given). views: ``uint8 (V, n, H, W, 3)``,
        every view, when ``needs_views``. disparity: ``float32 (n, H, W)`` of the input view when ``needs_depth``.
        depth_range: ``(lo, hi)`` arrays ``(n,)`` for these frames when the writer was made without one.
        """
        if self._done:
            raise ValueError("write after close or abort")
        planes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if not isinstance(left, np.ndarray):  # tensors: the layouts that can are built and converted on their device
            planes = self._planes_on_device(left, right)
            if self._preview is None and len(left) and self.settings.preview:
                self._preview = side_by_side(_host(left[:1]), _host(right[:1]))[0]
            if all(name in planes for name in self.settings.exports):  # nothing else to build: no host copy of the frames
                return self._feed(len(left), planes, None, progress)
            left, right, reference, views, disparity = map(_host, (left, right, reference, views, disparity))  # for the others
        check_pair(left, right)
        n = len(left)
        if left.shape[1:3] != self.size:
            raise ValueError(f"left: frames of {left.shape[2]}x{left.shape[1]}, the writer was made for {self.size[1]}x{self.size[0]}")
        need = self.needs
        if "views" in need:
            if views is None:
                raise ValueError(f"views: {', '.join(n for n in self.settings.exports if 'views' in EXPORTS[n].needs)} need every view")
            check_views(views)
            if views.shape[:2] != (self.num_views, n) or views.shape[2:4] != self.size:
                raise ValueError(f"views: expected ({self.num_views}, {n}, {self.size[0]}, {self.size[1]}, 3), got {views.shape}")
        source = self._source(left, right, reference, views)
        lo = hi = None
        if "depth" in need:
            if disparity is None:
                raise ValueError(f"disparity: {', '.join(n for n in self.settings.exports if 'depth' in EXPORTS[n].needs)} need the input's depth")
            if disparity.shape != (n, *self.size):
                raise ValueError(f"disparity: expected ({n}, {self.size[0]}, {self.size[1]}), got {disparity.shape}")
            if self.depth_range is not None and depth_range is not None:
                raise ValueError("depth_range: given to the writer already; per-frame ranges only for a writer made without one")
            if self.depth_range is not None:
                lo, hi = (np.full(n, r, np.float64) for r in self.depth_range)
            elif depth_range is not None:
                lo, hi = (np.asarray(r, np.float64) for r in depth_range)
                if lo.shape != (n,) or hi.shape != (n,):
                    raise ValueError(f"depth_range: expected two arrays of shape ({n},), got {lo.shape} and {hi.shape}")
            else:
                raise ValueError("depth_range: give (lo, hi) to the writer or per-frame arrays with every write")
        if self._preview is None and n and self.settings.preview:
            self._preview = side_by_side(left[:1], right[:1])[0].copy()

        def step(t: int) -> Step:  # one time step, every array of it a view (no copy)
            sl = slice(t, t + 1)
            depth = normalise_depth(disparity[sl], lo[sl], hi[sl]) if lo is not None else None
            return Step(left[sl], right[sl], source[sl], views[:, sl] if views is not None and "views" in need else None, depth)

        self._feed(n, planes, step, progress)

    def _feed(self, n: int, planes: dict, step: Callable[[int], Step] | None, progress: Callable[[int], None] | None) -> None:
        """Every export's ``n`` frames to its sink, the exports at once: its ``planes`` (made on the device) or the frames its
        layout builds from ``step(t)``; ``progress`` as every export has taken a frame."""
        written = dict.fromkeys(self.settings.exports, 0)  # frames each export has taken
        reported = [0]  # frames every export has taken, as told to progress
        lock = threading.Lock()

        def tell(name: str, count: int) -> None:
            with lock:
                written[name] = count
                low = min(written.values(), default=n)
                if progress is not None and low > reported[0]:
                    progress(low - reported[0])
                reported[0] = max(reported[0], low)

        def run(name: str) -> None:  # one export's frames, in order: one output frame in memory at a time
            layout, sink = EXPORTS[name], self._sinks[name]
            for t in range(n):
                if name in planes:  # converted on the device already
                    sink.write_planes(*(p[t : t + 1] for p in planes[name]))
                else:
                    sink.write(layout.build(step(t), self.geometry))
                tell(name, t + 1)

        try:  # the sinks turn an OSError into an InputError naming their file
            if self._pool is None:
                for name in self.settings.exports:
                    run(name)
            else:
                futures = [self._pool.submit(run, name) for name in self.settings.exports]
                errors = [f.exception() for f in futures]  # waits for every one: none is still writing when we abort
                first = next((e for e in errors if isinstance(e, InputError)), None) or next((e for e in errors if e is not None), None)
                if first is not None:
                    raise first
        except BaseException:
            self.abort()
            raise
        if progress is not None and reported[0] < n:  # (no export takes frames: every one is done)
            progress(n - reported[0])
        self.frames += n

    def _planes_on_device(self, left: torch.Tensor, right: torch.Tensor) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The Y', Cb, Cr planes ``(n, ...)`` on the host of every video export with a device layout (``ExportLayout.on_device``),
        built and converted from the eyes' ``uint8 (n, H, W, 3)`` tensors on their device for the whole chunk at once, each
        export's planes brought back in one copy (into pinned memory from a GPU)."""
        import torch

        from ..colour import encode_planes_torch

        if not (isinstance(left, torch.Tensor) and isinstance(right, torch.Tensor)) or left.ndim != 4 or left.shape[3] != 3 \
                or left.dtype != torch.uint8 or right.shape != left.shape or right.dtype != left.dtype or right.device != left.device:  # fmt: skip
            raise ValueError(f"left, right: expected two uint8 (n, H, W, 3) arrays or tensors on one device, got "
                             f"{getattr(left, 'dtype', type(left))} {tuple(left.shape)} and {getattr(right, 'dtype', type(right))} {tuple(right.shape)}")  # fmt: skip
        if tuple(left.shape[1:3]) != self.size:
            raise ValueError(f"left: frames of {left.shape[2]}x{left.shape[1]}, the writer was made for {self.size[1]}x{self.size[0]}")
        cuda = left.device.type == "cuda"
        n, h, w = left.shape[:3]
        step = max(1, DEVICE_PIXELS // (h * w))  # frames built at once: bounds the float working set, not the result
        copies = {}
        for name in self.settings.exports:
            layout, sink = EXPORTS[name], self._sinks[name]
            if layout.on_device is None or layout.kind != "video" or n == 0:
                continue
            parts, shapes = [], None
            for a in range(0, n, step):
                x = layout.on_device(left[a : a + step], right[a : a + step], self.geometry)  # (k, h', w', 3)
                if sink.pad[0]:  # odd sides repeat the last row / column, as the encoder does with numpy frames
                    x = torch.cat([x, x[:, -1:]], dim=1)
                if sink.pad[1]:
                    x = torch.cat([x, x[:, :, -1:]], dim=2)
                yuv = encode_planes_torch(x, sink.colour, sink.settings.pix_fmt)
                shapes = [p.shape[1:] for p in yuv]
                parts.append(torch.cat([p.reshape(len(x), -1) for p in yuv], dim=1))  # (k, samples of Y' + Cb + Cr)
            flat = torch.cat(parts) if len(parts) > 1 else parts[0]  # (n, samples): one copy per export
            if cuda:
                buffer = self._pinned.get(name)
                if buffer is None or buffer.shape[1] != flat.shape[1] or buffer.dtype != flat.dtype or len(buffer) < n:
                    buffer = self._pinned[name] = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
                flat = buffer[:n].copy_(flat, non_blocking=True)
            copies[name] = (flat, shapes)
        if cuda and copies:  # every copy has landed (an event: not waiting on work other threads queue after ours)
            landed = torch.cuda.Event()
            landed.record(torch.cuda.current_stream(left.device))
            landed.synchronize()
        out = {}
        for name, (flat, shapes) in copies.items():
            host, first = flat.numpy(), 0
            out[name] = []
            for ph, pw in shapes:
                out[name].append(host[:, first : first + ph * pw].reshape(len(host), ph, pw))
                first += ph * pw
        return {name: tuple(p) for name, p in out.items()}

    def _source(self, left: np.ndarray, right: np.ndarray, reference: np.ndarray | None, views: np.ndarray | None) -> np.ndarray:
        """The input view's frames: an eye, or one of ``views``, or ``reference``."""
        if self.reference == self.eyes[0]:
            return left
        if self.reference == self.eyes[1]:
            return right
        if views is not None:
            return views[self.reference]
        if reference is None:
            if not any(n in ("rgbd", "hrgbd") for n in self.settings.exports):
                return left  # no layout shows the input view
            raise ValueError(f"reference: the input view (view {self.reference}) is neither eye: give its frames")
        if reference.shape != left.shape or reference.dtype != np.uint8:
            raise ValueError(f"reference: expected uint8 {left.shape}, got {reference.dtype} {reference.shape}")
        return reference

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
            if self._pool is not None:  # flushing an encoder is encoding too: at once
                list(self._pool.map(lambda sink: sink.finish(), self._sinks.values()))
            else:
                for sink in self._sinks.values():
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
        self._shutdown()
        for name, path in self.manifest.items():
            log.debug("wrote %s: %s", name, path)
        return self.manifest

    def abort(self) -> None:
        """Remove every part (outputs already renamed into place by a failed ``close`` stay)."""
        self._done = True
        self._shutdown()
        for sink in self._sinks.values():
            with contextlib.suppress(Exception):
                if isinstance(sink, Part):
                    sink.discard()
                else:
                    sink.abort()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

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
    """Every audio track of ``source`` between ``start`` and ``start + duration`` seconds, as one mp4-ready ``.m4a``.

    Each track is copied, not re-encoded, when mp4 can hold its codec (AAC, MP3, Opus, FLAC ...): cut to
    whole packets (AAC: ~21 ms), timestamps shifted to start at 0. Other codecs (PCM from cameras and .mov
    files) are re-encoded to AAC, cut to the sample. Tracks keep their order, language and title. A track
    that can be neither copied nor decoded is dropped with one warning naming it. ``dest`` is written
    atomically. Returns ``dest``, or None when ``source`` has no audio (or none that could be kept).
    """
    import av

    if not io.has_audio(source):
        return None
    dest = Path(dest)
    end = math.inf if duration is None else start + duration
    with av.open(str(source)) as src, io.atomic_path(dest) as tmp, av.open(str(tmp), mode="w", format="mp4") as out:
        tracks, dropped = {}, []
        for k, stream in enumerate(src.streams.audio):
            codec = stream.codec_context.name if stream.codec_context is not None else "unknown"
            try:
                if codec in MP4_AUDIO_CODECS:
                    tracks[stream.index] = _CopyTrack(stream, out, start, end)
                else:
                    log.info("%s: audio track %d: %s cannot go into mp4 as is; re-encoding it to AAC", source, k + 1, codec)
                    tracks[stream.index] = _EncodeTrack(stream, out, start, end)
            except (av.error.FFmpegError, ValueError, AttributeError) as e:
                dropped.append(f"track {k + 1} ({codec}: {e})")
            else:
                for key in ("language", "title"):
                    if key in stream.metadata:
                        tracks[stream.index].out_stream.metadata[key] = stream.metadata[key]
        if dropped:
            log.warning("%s: audio %s dropped: neither mp4 nor this FFmpeg's decoders take it", source, "; ".join(dropped))
        if not tracks:
            return None
        for packet in src.demux(*[s for s in src.streams.audio if s.index in tracks]):
            for p in tracks[packet.stream.index].packets(packet):
                out.mux(p)
        for track in tracks.values():
            for p in track.flush():
                out.mux(p)
    return dest


class _CopyTrack:
    """One audio track copied packet by packet, cut to whole packets, timestamps from 0."""

    def __init__(self, stream, out, start: float, end: float) -> None:
        self.stream, self.start, self.end = stream, start, end
        self.out_stream = out.add_stream_from_template(stream)
        self.cut = start > 0 or not math.isinf(end)  # else every packet as it is (an AAC track starts before 0: encoder priming)
        self.offset = None

    def packets(self, packet):
        if packet.pts is None or packet.dts is None:
            return
        t = float(packet.pts * self.stream.time_base)
        if self.cut and (t < self.start - 1e-6 or t >= self.end - 1e-6):
            return
        if self.offset is None:
            self.offset = packet.pts if self.cut else 0  # a cut starts at 0
        packet.pts -= self.offset
        packet.dts -= self.offset
        packet.stream = self.out_stream
        yield packet

    def flush(self):
        return ()


class _EncodeTrack:
    """One audio track decoded, cut at the sample, and encoded to AAC."""

    def __init__(self, stream, out, start: float, end: float) -> None:
        import av

        self.rate = rate = stream.codec_context.sample_rate
        channels = stream.codec_context.layout.nb_channels
        # Containers such as Matroska may leave the channel order unnamed ("2 channels"), which the AAC
        # encoder refuses: name the usual layout for the channel count.
        layout = AAC_LAYOUTS.get(channels, stream.codec_context.layout.name)
        self.out_stream = out.add_stream("aac", rate=rate, layout=layout)
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)  # AAC takes planar float
        self.first, self.last = round(start * rate), math.inf if math.isinf(end) else round(end * rate)

    def packets(self, packet):
        import av

        rate = self.rate
        for frame in packet.decode():  # the last, empty packet flushes the decoder
            t0 = round(float(frame.pts * frame.time_base) * rate) if frame.pts is not None else self.first
            n = frame.samples
            lo, hi = max(0, self.first - t0), min(n, self.last - t0)
            if hi <= lo:
                continue
            if (lo, hi) != (0, n):  # cut at the sample
                samples = frame.to_ndarray()  # (channels, n) planar or (1, n * channels) packed
                cut = samples[:, lo:hi] if frame.format.is_planar else samples.reshape(1, n, -1)[:, lo:hi].reshape(1, -1)
                sub = av.AudioFrame.from_ndarray(cut.copy(), format=frame.format.name, layout=frame.layout.name)
                sub.sample_rate = rate
                frame = sub
            frame.pts = t0 + lo - self.first
            frame.time_base = Fraction(1, rate)
            for f in self.resampler.resample(frame):
                yield from self.out_stream.encode(f)

    def flush(self):
        for f in self.resampler.resample(None):
            yield from self.out_stream.encode(f)
        yield from self.out_stream.encode(None)


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
    check_pair(left, right)
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
    """The exports in the pipeline (``svg3d.stages``): every requested export, encoded as the filled chunks arrive, one
    chunk in flight (encoded while the next is read and warped). On CUDA the eyes stay on the GPU (``ExportWriter``).

    Its store is a ``work.OutputStore``: the files are written whole (each atomically) by every run that is not
    current. ``views`` are the views ``ExportWriter`` needs (all of the plan's, or the eyes and the reference); the
    input's own view is its decoded frames, never a float round trip.
    """

    name = "export"
    lookahead = 0

    def __init__(self, clip, config, plan, *, out_dir: Path, stem: str, disparity: str, device, work_dir: Path, effect,
                 take_from=None) -> None:  # fmt: skip
        self.clip, self.config, self.plan, self.out_dir, self.stem = clip, config, plan, out_dir, stem
        self.disparity, self.device, self.work_dir, self.effect = disparity, device, work_dir, effect
        self.take_from = take_from  # the fill's cells handed on (matrix.HandOn), taken instead of warped again
        self.needs = ("depth", disparity, "filled") if disparity != "depth" else ("depth", "filled")

    def params(self) -> dict:
        from dataclasses import asdict

        info = self.clip.info
        return {
            "settings": asdict(self.config.exports), "stem": self.stem, "fps": str(info.rate), "audio": info.has_audio,
            "plan": asdict(self.plan), "out": str(self.out_dir.resolve()), "matrix": asdict(self.config.matrix),
        }  # fmt: skip

    def check(self) -> None:
        check_export(self.out_dir, self.stem, self.config.exports, num_views=self.plan.num_views, size=self.clip.info.size)

    def run(self, inputs: dict, store, chunks: list[tuple[int, int]], progress) -> None:
        import torch

        from .. import comfort, work
        from ..graphs import to_device
        from .depth import resize_depth
        from .fill.stage import views
        from .matrix import matrix_source

        info, plan = self.clip.info, self.plan
        source = matrix_source(self.clip, self.name, inputs, self.disparity, plan, self.config, self.device, self.config.chunk_frames,
                               effect=self.effect, take_from=self.take_from)  # fmt: skip
        disparity = inputs[self.disparity]
        writer = ExportWriter(
            self.out_dir, self.stem, self.config.exports, fps=info.rate, size=info.size, num_views=plan.num_views, eyes=plan.eyes,
            reference=plan.reference, colour=info.colour, audio=self._audio(), focal=plan.focal,
        )  # fmt: skip
        wanted = tuple(range(plan.num_views)) if writer.needs_views else tuple(sorted({*plan.eyes, plan.reference}))
        frames = self.clip.reader(self.name)
        on_device = torch.device(self.device).type == "cuda"  # the eyes stay there: the writer composes the layouts it can there
        # One chunk in flight: chunk i is encoded (the writer's threads) while chunk i + 1 is read and warped here; the
        # writer takes the chunks one at a time and in order, so the bytes are the same. The executor is left (and the
        # chunk in flight finished) before the writer closes or aborts.
        write = threads.on_callers_stream(writer.write, self.device)  # on CUDA the feeder composes on this stage's stream
        with writer, ThreadPoolExecutor(1, thread_name_prefix="export-chunk") as feeder:
            pending = None
            for a, b in chunks:
                out = views(source, inputs["filled"], plan.fill_views, tuple(v for v in wanted if v != plan.reference), a, b,
                            on_device=on_device)  # fmt: skip
                if plan.reference in wanted:
                    out[plan.reference] = frames(a, b)  # the input itself
                    if on_device and plan.reference in plan.eyes:
                        out[plan.reference] = to_device(out[plan.reference], self.device)  # (copied: frames may be read-only)
                all_views = None
                if writer.needs_views:  # views that are not made (the plan fills the eyes only) stay black
                    host = {v: _host(x) for v, x in out.items()}
                    blank = np.zeros_like(host[plan.reference])
                    all_views = np.stack([host.get(v, blank) for v in range(plan.num_views)])
                d, depth_range = None, None
                if writer.needs_depth:  # the input view's disparity, normalised as the matrix used it
                    d = resize_depth(disparity.read(a, b, "disparity"), info.size)
                    depth_range = source.ranges(a, b)
                left, right = out[plan.eyes[0]], out[plan.eyes[1]]
                bars = self.effect.windows(inputs, a, b) if self.effect.warps else None
                if bars is not None and bars.any():  # window violations handled by floating windows
                    left, right = comfort.float_window(_host(left), _host(right), bars)
                if pending is not None:
                    pending.result()  # the chunk before is written (its errors raised here)
                    work.release_memory()  # no store commits here: trim as they do (RSS crept over a long export)
                pending = feeder.submit(write, left, right, reference=out[plan.reference], views=all_views, disparity=d,
                                        depth_range=depth_range, progress=progress)  # fmt: skip
            if pending is not None:
                pending.result()
            store.outputs = writer.close()
        store.outputs |= self._report(inputs)

    def _report(self, inputs: dict) -> dict[str, Path]:
        """The 3D report beside the exports (``report``): the effect per frame against the screen's budget."""
        from .. import comfort, report, shots

        track, scan, near, far, cuts, lo, hi = self.effect.get(inputs)
        matrix, info = self.config.matrix, self.clip.info
        numbers = report.build_report(
            near=near, far=far, histogram=scan.histogram, budget=comfort.screen_budget(matrix.screen),
            shots=shots.shot_bounds(info.num_frames, cuts), fps=info.fps, track=track, width=info.size[1],
            lo=None if matrix.metric_depth else lo, hi=None if matrix.metric_depth else hi,
            physical=None if track is not None else (comfort.physical_scale(self.plan, info.size[1]), self.plan.screen),
        )  # fmt: skip
        return report.write_report(self.out_dir, self.stem, numbers)

    def _audio(self) -> Path | None:
        """The clip's span of the input's audio, in a form mp4 takes (``audio_track``)."""
        info = self.clip.info
        if not info.has_audio:
            return None
        trimmed = info.start > 0 or info.num_frames < info.total_frames
        return audio_track(
            self.clip.path, self.work_dir / "audio.m4a", start=info.start / info.fps, duration=info.duration if trimmed else None,
        )  # fmt: skip
