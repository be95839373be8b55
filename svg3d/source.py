"""The input clip as a stream: probed once, then read by frame range, never held whole in memory.

``open_source(path, start=, count=, size=)`` probes a video file or a folder of frames and returns a
``Source``: ``source.info`` (frame count, rate, size, names, audio) and ``source.frames(a, b)``, the
frames ``a .. b-1`` of the selected range as ``uint8 (b - a, H, W, 3)`` RGB (``io`` conventions).

A video's frames are converted to RGB with its own colour matrix and range (``colour.decode_rgb``), and
an HDR video is refused at the probe (``colour.check_colour``). A video is probed by demuxing every packet (no decoding: a fraction of a second per minute of video)
and decoding its first frame: the packet count is the frame count the stages plan their chunks with,
and a container whose index promises more frames than its packets hold (a file cut short) is refused
before any stage runs. Decoding runs on FFmpeg's frame and slice threads (``threads``), in order;
``frames`` keeps a sliding window of recent frames so that stages reading overlapping ranges (a chunk and
its temporal context) decode each frame once. A range before the window reopens the file and decodes
from the start (only a resumed run does that). Every decoded frame is counted, so a file that decodes
fewer frames than it demuxed fails loudly instead of making a shorter video.

Frames of a folder are its image files in natural order (``io.list_images``: ``2.png`` before
``10.png``), read one file per frame; numbered files with numbers missing are used as consecutive
frames, and the log says which number is missing first. A single image file is a clip of one frame.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from . import io
from .checks import InputError
from .colour import ColourInfo, check_colour, colour_of_stream, decode_rgb

log = logging.getLogger(__name__)

MIN_SIDE = 16  # px: smaller videos cannot be converted (optical flow and the VAE need some pixels)
VFR_TOLERANCE = 0.1  # relative spread of frame durations above which a video counts as variable-rate
TEXT_DEMUXERS = ("tty",)  # FFmpeg demuxers that read any file as text rendered into frames: not a video


@dataclass(frozen=True)
class SourceInfo:
    """What a probe found, for the selected frame range.

    num_frames: frames in the range; total_frames: in the whole input. size: (H, W) as the stages see the
    frames (upright, resized if asked); stored_size: before that. fps: the rate exports are written at
    (``io.DEFAULT_FPS`` for folders). names: one stem per frame of the range (folder file stems, or
    ``00000`` ... for videos, numbered from the input's first frame).
    """

    path: Path
    kind: str  # "video" or "frames"
    num_frames: int
    total_frames: int
    start: int
    fps: float
    rate: Fraction  # fps as an exact fraction (mp4 time bases)
    size: tuple[int, int]
    stored_size: tuple[int, int]
    names: tuple[str, ...]
    has_audio: bool = False
    rotation: int = 0  # degrees counter-clockwise the frames are turned by (display matrix)
    variable_rate: bool = False
    colour: ColourInfo | None = None  # what the video's samples mean (``colour``); None: frame files, sRGB

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def describe(self) -> str:
        h, w = self.size
        return f"{self.num_frames} frames {w}x{h} at {self.fps:.3g} fps"


class Source:
    """Frames of a probed input by index range (module docstring). Not thread-safe."""

    def __init__(
        self, info: SourceInfo, *, window: int = 64, files: tuple[Path, ...] | None = None, threads: int = 0
    ) -> None:
        self.info = info
        self.window = window  # frames kept decoded behind the newest one
        self.threads = threads  # decoder threads (FFmpeg's frame and slice threads); 0: FFmpeg's choice, one per core
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._decoder: Iterator[np.ndarray] | None = None
        self._next = 0  # index (in the range) of the frame the decoder yields next
        self._files = files if info.kind == "frames" else None

    def frames(self, a: int, b: int) -> np.ndarray:
        """Frames ``a .. b-1`` of the range: ``uint8 (b - a, H, W, 3)``."""
        if not 0 <= a < b <= self.info.num_frames:
            raise ValueError(f"frames {a}..{b - 1} are outside the clip's 0..{self.info.num_frames - 1}")
        return np.stack([self.frame(i) for i in range(a, b)])

    def frame(self, i: int) -> np.ndarray:
        if i in self._cache:
            return self._cache[i]
        if self._files is not None:
            image = self._read_file(i)
        else:
            if i < self._next:  # behind the decoder: start again (a resumed run, or a stage going back)
                self._decoder, self._next = None, 0
            if self._decoder is None:
                self._decoder = self._decode()
            image = None
            while self._next <= i:
                image = next(self._decoder)
                self._store(self._next, image)
                self._next += 1
        self._store(i, image)
        return image

    @property
    def next_frame(self) -> int:
        """The frame the decoder yields next (0 before it starts)."""
        return self._next

    def decoded_from(self) -> int:
        """The first frame ``frame`` gives without decoding from the start again."""
        return min(self._cache, default=self._next)

    def close(self) -> None:
        self._decoder = None
        self._cache.clear()

    def _store(self, i: int, image: np.ndarray) -> None:
        self._cache[i] = image
        self._cache.move_to_end(i)
        while len(self._cache) > self.window:
            self._cache.popitem(last=False)

    def _resize(self, image: np.ndarray) -> np.ndarray:
        h, w = self.info.size
        if image.shape[:2] == (h, w):
            return image
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)

    def _read_file(self, i: int) -> np.ndarray:
        f = self._files[self.info.start + i]
        image = io.read_image(f)
        if image.shape[:2] != self.info.stored_size:
            h, w = self.info.stored_size
            raise InputError(f"{f}: frame size {image.shape[1]}x{image.shape[0]} differs from {self._files[0].name} ({w}x{h})")
        return self._resize(image)

    def _decode(self) -> Iterator[np.ndarray]:
        """Every frame of the range, upright and resized; counts them against the probe."""
        import av

        info, path = self.info, self.info.path
        seen = 0
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                # frame and slice threads (FFmpeg's "AUTO"): the same frames as one thread, in the same order (tested)
                stream.thread_type = "AUTO"
                stream.codec_context.thread_count = self.threads
                for index, frame in enumerate(container.decode(stream)):
                    if index < info.start:
                        continue
                    if seen >= info.num_frames:
                        return
                    image = io.upright(decode_rgb(frame, info.colour), frame.rotation)
                    seen += 1
                    yield self._resize(image)
        except av.error.FFmpegError as e:
            raise InputError(f"{path}: cannot decode frame {info.start + seen} ({e.strerror or type(e).__name__}); the file is damaged") from None
        if seen < info.num_frames:
            raise InputError(
                f"{path}: {info.start + seen} of its {info.total_frames} frames decode; the file is truncated or damaged"
            )


def open_source(
    path: str | os.PathLike,
    *,
    start: int = 0,
    count: int | None = None,
    size: tuple[int, int] | None = None,
    suffix: str | None = None,
    window: int = 64,
    fps: float | None = None,
    threads: int = 0,
) -> Source:
    """Probe ``path`` (a video file, or a folder of frames / a clip folder with ``images/``) and select a range.

    ``start``: first frame; ``count``: frames from there (None = to the end); ``size``: (H, W) to resize
    to (area interpolation; None = as stored). ``fps``: a folder's frame rate (None: its ``fps.txt``, else
    ``io.DEFAULT_FPS``). ``suffix``: a folder's frames with this suffix only (the seed's
    ``--file_suffix``). ``threads``: a video's decoder threads (``threads.ThreadPlan.decoder``; 0 = FFmpeg's choice).
    ``InputError`` (naming the parameter or the file) for a
    missing path, an unreadable input, a range outside the clip, or a video smaller than ``MIN_SIDE``.
    """
    path = Path(path)
    if start < 0:
        raise InputError(f"start_frame {start}: must be >= 0", params=("start_frame",))
    if count is not None and count < 1:
        raise InputError(f"num_frames {count}: must be >= 1", params=("num_frames",))
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        info = _probe_folder(path, suffix)
    elif path.suffix.lower() in io.IMAGE_SUFFIXES:  # a photo: a clip of one frame (FFmpeg would read it as RGB "video")
        info = _probe_files([path], path.parent)
    else:
        info = _probe_video(path)
    total = info["total"]
    if start >= total:
        raise InputError(f"start_frame {start}: the clip has {total} frames (0..{total - 1})", params=("start_frame",))
    num = total - start if count is None else count
    if start + num > total:
        raise InputError(
            f"num_frames {num}: the clip has {total} frames, so from frame {start} at most {total - start}",
            params=("num_frames",),
        )
    stored = info["size"]
    if min(stored) < MIN_SIDE:
        raise InputError(f"{path}: {stored[1]}x{stored[0]} frames are too small (at least {MIN_SIDE} px a side)")
    if size is not None and min(size) < MIN_SIDE:
        raise InputError(f"size {size[1]}x{size[0]}: at least {MIN_SIDE} px a side", params=("size",))
    names = info["names"][start : start + num] if info["names"] else tuple(f"{i:05d}" for i in range(start, start + num))
    rate = info["rate"]
    if fps is not None:  # frames carry no rate: the user's (a video's own rate is what its frames are)
        if info["kind"] != "frames":
            raise InputError(f"fps {fps}: a video has its own rate ({float(rate):.3g} fps); fps is for folders of frames", params=("fps",))
        if not (math.isfinite(fps) and 0 < fps <= 1000):
            raise InputError(f"fps {fps}: must be a number of frames per second in (0, 1000]", params=("fps",))
        rate = Fraction(fps).limit_denominator(1001)
    result = SourceInfo(
        path=path,
        kind=info["kind"],
        num_frames=num,
        total_frames=total,
        start=start,
        fps=float(rate),
        rate=rate,
        size=tuple(size) if size is not None else stored,
        stored_size=stored,
        names=tuple(names),
        has_audio=info.get("audio", False),
        rotation=info.get("rotation", 0),
        variable_rate=info.get("vfr", False),
        colour=info.get("colour"),
    )
    return Source(result, window=window, files=info.get("files"), threads=threads)


def frame_files(path: Path, suffix: str | None = None) -> list[Path]:
    """A folder's frame files in natural order (``io.list_images``), only those ending in ``suffix`` if given."""
    folder = io.frames_folder(path)
    files = io.list_images(folder)
    if suffix is not None:
        suffix = suffix if suffix.startswith(".") else f".{suffix}"
        files = [f for f in files if f.suffix.lower() == suffix.lower()]
        if not files:
            raise InputError(f"{folder}: no {suffix} frames (file_suffix)", params=("file_suffix",))
    return files


def _probe_folder(path: Path, suffix: str | None) -> dict:
    files = frame_files(path, suffix)
    return _probe_files(files, io.frames_folder(path))


RATE_FILE = "fps.txt"  # beside frame files: their rate (one number, e.g. 23.976 or 24000/1001)


def folder_rate(folder: Path) -> Fraction | None:
    """The rate written beside a folder's frames (``RATE_FILE``, in the folder or the clip folder above it), or None."""
    for candidate in (folder / RATE_FILE, folder.parent / RATE_FILE):
        if candidate.is_file():
            text = candidate.read_text().strip()
            try:
                rate = Fraction(text).limit_denominator(1001)
            except (ValueError, ZeroDivisionError):
                raise InputError(f"{candidate}: {text!r} is not a frame rate (write e.g. 25 or 24000/1001)") from None
            if not 0 < rate <= 1000:
                raise InputError(f"{candidate}: {text!r} is not a frame rate (write e.g. 25 or 24000/1001)")
            return rate
    return None


def _probe_files(files: list[Path], folder: Path) -> dict:
    _warn_gaps(files, folder)
    first = io.read_image(files[0])
    return {
        "kind": "frames",
        "total": len(files),
        "size": first.shape[:2],
        "names": tuple(f.stem for f in files),
        "files": tuple(files),
        "rate": folder_rate(folder) or Fraction(io.DEFAULT_FPS).limit_denominator(1001),
    }


def _warn_gaps(files: list[Path], folder: Path) -> None:
    """Say so when numbered frame files skip numbers (``00001, 00003``: a frame lost on the way?)."""
    parts = [re.fullmatch(r"(.*?)(\d+)", f.stem) for f in files]
    if len(files) < 2 or not all(parts) or len({m.group(1) for m in parts}) > 1:
        return
    numbers = [int(m.group(2)) for m in parts]
    missing = sum(b - a - 1 for a, b in zip(numbers, numbers[1:], strict=False) if b > a + 1)
    if missing:
        i = next(i for i in range(len(numbers) - 1) if numbers[i + 1] > numbers[i] + 1)
        first = f"{parts[i].group(1)}{numbers[i] + 1:0{len(parts[i].group(2))}d}"
        log.warning("%s: %d frame number(s) missing, the first %s; the frames are used as consecutive frames", folder, missing, first)


def _probe_video(path: Path) -> dict:
    """Count the video packets (a demux pass) and decode the first frame (size, rotation)."""
    import av

    try:
        with av.open(str(path)) as container:
            if container.format.name in TEXT_DEMUXERS:
                raise InputError(f"{path}: not a video (FFmpeg reads it as text)")
            if not container.streams.video:
                kind = "audio only" if container.streams.audio else "no video stream"
                raise InputError(f"{path}: not a video ({kind})")
            stream = container.streams.video[0]
            claimed = stream.frames  # the container's index (mp4: the sample table), 0 when it has none
            rate = stream.average_rate or stream.guessed_rate
            audio = bool(container.streams.audio)
            pts = []
            try:
                for packet in container.demux(stream):
                    if packet.size and packet.pts is not None:
                        pts.append(packet.pts)
            except av.error.FFmpegError:
                if not claimed or len(pts) >= claimed:
                    raise
                truncated = True  # the index (written first: a "faststart" file) points past the end of the file
            else:
                truncated = bool(claimed) and len(pts) < claimed
            if truncated:
                raise InputError(f"{path}: its index lists {claimed} frames but only {len(pts)} are in the file; it is truncated")
            container.seek(0)
            first = next(container.decode(stream), None)
            rotation = first.rotation if first is not None else 0
            shape = None if first is None else (first.height, first.width)
            time_base = stream.time_base
            colour = colour_of_stream(stream, path)
    except av.error.FFmpegError as e:
        raise InputError(f"{path}: cannot read as a video ({e.strerror or type(e).__name__})") from None
    if first is None or not pts:
        raise InputError(f"{path}: the video has no frames")
    rate = Fraction(rate).limit_denominator(1001) if rate else Fraction(io.DEFAULT_FPS).limit_denominator(1001)
    vfr = False
    if len(pts) > 2 and time_base:
        steps = np.diff(np.sort(np.asarray(pts, dtype=np.float64))) * float(time_base)
        steps = steps[steps > 0]
        if steps.size and (steps.max() - steps.min()) > VFR_TOLERANCE * float(1 / rate):
            vfr = True
            log.warning(
                "%s: variable frame rate (frame durations %.4g..%.4g s); frames are written at a constant %.3g fps, "
                "so timing can drift from the audio",
                path, steps.min(), steps.max(), float(rate),
            )  # fmt: skip
    if rotation % 90:
        log.warning("%s: display rotation %d degrees is not a quarter turn; frames kept as stored", path, rotation)
    elif rotation % 360:
        log.info("%s: turned %d degrees counter-clockwise, as its display matrix says", path, rotation)
    turns = (rotation // 90) % 2 if rotation % 90 == 0 else 0
    size = (shape[1], shape[0]) if turns else shape
    check_colour(colour, path)  # HDR and unknown matrices are refused before any stage runs
    return {"kind": "video", "total": len(pts), "size": size, "names": (), "rate": rate, "audio": audio, "rotation": rotation,
            "vfr": vfr, "colour": colour}  # fmt: skip


@dataclass(frozen=True)
class Clip:
    """A clip held whole in memory (short clips, tests): frames ``uint8 (T, H, W, 3)`` RGB and what the probe found."""

    frames: np.ndarray
    info: SourceInfo

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.frames.shape[1], self.frames.shape[2]

    @property
    def fps(self) -> float:
        return self.info.fps

    @property
    def names(self) -> tuple[str, ...]:
        return self.info.names

    @property
    def has_audio(self) -> bool:
        return self.info.has_audio


def read_clip(path: str | os.PathLike, *, max_frames: int | None = None, start: int = 0, size: tuple[int, int] | None = None) -> Clip:
    """Every frame of a range in memory: ``open_source`` then ``frames``. For short clips; stages stream instead."""
    source = open_source(path, start=start, count=max_frames, size=size)
    return Clip(source.frames(0, source.info.num_frames), source.info)


def stem_of(path: str | os.PathLike) -> str:
    """The name exports are called after: a video's file stem, or a frames folder's name (``clip/images`` -> ``clip``)."""
    path = Path(path)
    if path.is_file():
        return path.stem
    path = path.resolve()
    return path.parent.name if path.name == "images" else path.name
