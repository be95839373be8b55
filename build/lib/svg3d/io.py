"""Clips, images, depth maps and videos on disk.

Every write is atomic: data goes to a temporary file in the destination folder, which is renamed over
the destination only once it is complete, so an interrupted run never leaves a file that looks whole.
Every read validates what it reads and raises ``InputError`` naming the file at fault.

In-memory conventions: images are ``uint8`` RGB arrays ``(H, W, 3)``; a clip's frames are
``(T, H, W, 3)``; depth maps are ``float32`` ``(H, W)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .checks import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
DEPTH_SUFFIXES = (".npy", ".png", ".pfm")
DEFAULT_FPS = 8.0  # zeroscope's clips are 8 fps; used for frame folders, which carry no rate
TEMP_STEM_BYTES = 64  # of a file's stem kept in its temporary name (atomic_path)
_UMASK = os.umask(0)
os.umask(_UMASK)  # read the process umask once (it can only be read by setting it)


# --------------------------------------------------------------------------------------------------
# atomic writes


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else delete it.

    The temporary name keeps the suffix so that writers choosing a format by extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name that fits must not overflow as a temporary: keep the stem short (file systems allow 255 bytes).
    stem = path.stem.encode()[:TEMP_STEM_BYTES].decode(errors="ignore")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as e:
        # A full disk fails a write with no file name (or the temporary one): name the file being written.
        if e.filename is None or e.filename == str(tmp_path):
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


# --------------------------------------------------------------------------------------------------
# images


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``uint8`` RGB ``(H, W, 3)``, upright (a JPEG's EXIF orientation applied); grey images
    are expanded to 3 channels, alpha is dropped, and 16-bit images are rounded to 8 bits (as 10-bit videos are:
    the stages work on 8 bits)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such image file")
    data = np.fromfile(path, dtype=np.uint8)
    # A JPEG is turned as its EXIF orientation says, as viewers show a phone's photo (IMREAD_UNCHANGED ignores
    # it); JPEG has neither alpha nor 16 bits to keep.
    flag = cv2.IMREAD_COLOR if path.suffix.lower() in (".jpg", ".jpeg") else cv2.IMREAD_UNCHANGED
    img = cv2.imdecode(data, flag) if data.size else None
    if img is None:
        raise InputError(f"{path}: cannot decode image (corrupt or not an image)")
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(v / 257): 65535 -> 255
    if img.dtype != np.uint8:
        raise InputError(f"{path}: expected an 8- or 16-bit image, got {img.dtype}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def encode_image(img: np.ndarray, suffix: str, *, jpeg_quality: int = 95) -> bytes:
    """Encode ``uint8`` RGB ``(H, W, 3)`` or grey ``(H, W)`` (``uint16`` allowed for PNG) to bytes."""
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix, img, params)
    if not ok:
        raise ValueError(f"cannot encode image as {suffix}")
    return buf.tobytes()


def write_image(path: str | os.PathLike, img: np.ndarray, *, jpeg_quality: int = 95) -> None:
    """Atomically write ``uint8`` RGB ``(H, W, 3)`` or grey ``(H, W)``; format from the suffix."""
    path = Path(path)
    write_bytes(path, encode_image(img, path.suffix, jpeg_quality=jpeg_quality))


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders the numbers inside a name by value: ``frame2`` before ``frame10``.

    The name is split into text and digit runs; text compares case-insensitively, digit runs as integers.
    """
    parts = _DIGITS.split(name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts))


def natural_sorted(files: Sequence[Path], what: str = "files") -> list[Path]:
    """``files`` in natural order of their stems (``2.png`` before ``10.png``).

    Two files whose stems have the same natural key (``1.png`` and ``01.png``, ``a.jpg`` and ``a.png``)
    cannot be ordered unambiguously: ``InputError`` naming both.
    """
    keyed = sorted(((natural_key(f.stem), f.name, f) for f in files), key=lambda k: k[:2])
    for (k1, _, f1), (k2, _, f2) in zip(keyed, keyed[1:], strict=False):
        if k1 == k2:
            raise InputError(f"{f1.parent}: {f1.name} and {f2.name} are the same frame number; cannot order the {what}, rename one")
    return [f for _, _, f in keyed]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files (``.jpg .jpeg .png``) of a folder in natural order; error if it is missing or has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    files = natural_sorted([p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")], "frames")
    if not files:
        raise InputError(f"{folder}: no .jpg or .png frames in this folder")
    return files


# --------------------------------------------------------------------------------------------------
# frames and videos (streamed input: ``svg3d.source``)


def frames_folder(path: str | os.PathLike) -> Path:
    """The folder holding a clip's frames: ``path/images`` when it exists (seed layout), else ``path``."""
    path = Path(path)
    return path / "images" if (path / "images").is_dir() else path


def read_frames(files: Sequence[Path]) -> np.ndarray:
    """Read image files that must all have one size into ``uint8`` ``(T, H, W, 3)``."""
    frames = []
    for f in files:
        img = read_image(f)
        if frames and img.shape != frames[0].shape:
            raise InputError(
                f"{f}: frame size {img.shape[1]}x{img.shape[0]} differs from "
                f"{files[0].name} ({frames[0].shape[1]}x{frames[0].shape[0]})"
            )
        frames.append(img)
    return np.stack(frames)


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """A decoded frame turned as its display matrix says (phones store portrait video as landscape).

    ``rotation``: degrees counter-clockwise (PyAV's ``VideoFrame.rotation``), as players and FFmpeg's
    autorotate apply it. Angles that are not quarter turns are left alone (``source`` warns once).
    """
    if rotation % 90:
        return image
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def has_audio(path: str | os.PathLike) -> bool:
    """Whether a media file has an audio stream (``False`` for folders and unreadable files)."""
    path = Path(path)
    if not path.is_file():
        return False
    import av

    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except av.error.FFmpegError:
        return False




def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    *,
    audio_from: str | os.PathLike | None = None,
    crf: int = 18,
) -> None:
    """Atomically write ``uint8`` RGB ``(T, H, W, 3)`` as H.264 yuv420p, colour-tagged, copying an audio stream.

    A thin wrapper over ``encode.VideoEncoder`` (which streams; use it for long clips): converted and
    tagged as players take an untagged video of that size (BT.601 for SD, BT.709 for HD, limited range;
    ``colour.guess_colour``). The container follows the suffix (``.mkv``: Matroska, else mp4).
    ``audio_from``: a media file whose first audio stream is copied (not re-encoded) into the output;
    its codec must be one mp4 holds (``encode.MP4_AUDIO_CODECS``), else ``ValueError`` before anything is
    written (``svg3d.stages.export.audio_track`` re-encodes any audio to AAC first). yuv420p needs even sides:
    an odd last row/column is repeated (and said in the log).
    """
    from .encode import EncoderSettings, VideoEncoder

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames: expected uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    settings = EncoderSettings(crf=crf, container="mkv" if Path(path).suffix.lower() == ".mkv" else "mp4")
    audio = audio_from if audio_from is not None and has_audio(audio_from) else None
    rate = Fraction(fps).limit_denominator(1001)
    with VideoEncoder(path, settings, fps=rate, width=frames.shape[2], height=frames.shape[1], audio=audio) as video:
        video.write(frames)


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float) -> None:
    """Atomically write ``uint8`` RGB ``(T, H, W, 3)`` as a looping GIF."""
    import imageio.v3 as iio

    with atomic_path(path) as tmp:
        iio.imwrite(tmp, frames, extension=".gif", duration=1000.0 / fps, loop=0)


# --------------------------------------------------------------------------------------------------
# depth maps


def read_depth(path: str | os.PathLike) -> np.ndarray:
    """Read a depth (or disparity) map as ``float32`` ``(H, W)`` from ``.npy``, 16-bit ``.png`` or ``.pfm``.

    PNG values are returned as stored (the reference reads them raw). Raises ``InputError`` for a
    missing or unreadable file, a wrong shape, or a NaN/inf value.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such depth file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            depth = np.load(path, allow_pickle=False)
        elif suffix == ".png":
            depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if depth is None:
                raise ValueError("cannot decode PNG")
        elif suffix == ".pfm":
            depth = _read_pfm(path)
        else:
            raise InputError(f"{path}: unknown depth format (expected one of {', '.join(DEPTH_SUFFIXES)})")
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: cannot read depth map ({e})") from None
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise InputError(f"{path}: a depth map must be one channel (H, W), got shape {depth.shape}")
    if not (np.issubdtype(depth.dtype, np.integer) or np.issubdtype(depth.dtype, np.floating)):
        raise InputError(f"{path}: depth must be real numbers, got {depth.dtype}")
    depth = depth.astype(np.float32)
    if not np.isfinite(depth).all():
        raise InputError(f"{path}: depth has {int((~np.isfinite(depth)).sum())} NaN/inf values")
    if not (depth > 0).any():
        raise InputError(f"{path}: depth is zero (or negative) everywhere")
    return depth


def write_depth(path: str | os.PathLike, depth: np.ndarray, *, png_scale: float = 1.0) -> None:
    """Atomically write ``(H, W)`` depth; format from the suffix.

    ``.npy`` and ``.pfm`` keep float32 exactly; ``.png`` stores ``round(depth * png_scale)`` as
    uint16 (values outside 0..65535 are an error rather than silently clipped).
    """
    path = Path(path)
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth: expected (H, W), got {depth.shape}")
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, depth)
        elif suffix == ".png":
            scaled = np.round(depth.astype(np.float64) * png_scale)
            if scaled.min() < 0 or scaled.max() > 65535:
                raise ValueError(f"{path}: depth x {png_scale} is outside the 16-bit range")
            tmp.write_bytes(encode_image(scaled.astype(np.uint16), ".png"))
        elif suffix == ".pfm":
            _write_pfm(tmp, depth)
        else:
            raise ValueError(f"{path}: unknown depth format (expected one of {', '.join(DEPTH_SUFFIXES)})")


def list_depths(folder: str | os.PathLike, suffix: str | None = None, *, choosable: bool = False) -> list[Path]:
    """Depth files of a folder, in natural order (``2_depth.npy`` before ``10_depth.npy``).

    ``suffix`` (``.npy``/``.png``/``.pfm``) picks the format; ``None`` takes the one format present
    (``choosable``: the caller has a ``depth_suffix`` parameter, which the mixed-formats error then names).
    Sub-folders and hidden files are ignored; any other file is reported (a foreign file in a depth
    folder usually means the wrong folder was given).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such depth folder")
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    for f in files:
        if f.suffix.lower() not in DEPTH_SUFFIXES:
            raise InputError(f"{f}: not a depth map (expected {', '.join(DEPTH_SUFFIXES)} files in {folder})")
    if suffix is None:
        kinds = sorted({f.suffix.lower() for f in files})
        if len(kinds) > 1:
            pick = ", or pick one with depth_suffix" if choosable else ""
            raise InputError(f"{folder}: mixed depth formats {kinds}; keep one format in this folder{pick}", params=("depth_suffix",) if choosable else ())
        suffix = kinds[0] if kinds else ".npy"
    files = natural_sorted([f for f in files if f.suffix.lower() == suffix], "depth maps")
    if not files:
        raise InputError(f"{folder}: no {suffix} depth maps in this folder")
    return files


def read_depths(
    folder: str | os.PathLike,
    *,
    suffix: str | None = None,
    count: int | None = None,
    size: tuple[int, int] | None = None,
    start: int = 0,
) -> np.ndarray:
    """Read a folder of depth maps into ``float32`` ``(T, H, W)``.

    ``count``: the number of frames they belong to: fewer maps is an error, and the first ``count``
    from ``start`` are used. ``size``: the frames' ``(H, W)``, which every map must have.
    """
    files = list_depths(folder, suffix)
    if count is not None:
        if len(files) < start + count:
            raise InputError(f"{folder}: {len(files)} depth maps for {start + count} frames")
        files = files[start : start + count]
    depths = []
    for f in files:
        d = read_depth(f)
        if size is not None and d.shape != tuple(size):
            raise InputError(f"{f}: depth size {d.shape[1]}x{d.shape[0]} differs from the frame size {size[1]}x{size[0]}")
        if depths and d.shape != depths[0].shape:
            raise InputError(f"{f}: depth size {d.shape[1]}x{d.shape[0]} differs from {files[0].name}")
        depths.append(d)
    return np.stack(depths)


def _read_pfm(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        header = f.readline().strip()
        if header not in (b"Pf", b"PF"):
            raise ValueError("not a PFM file")
        dims = f.readline().split()
        if len(dims) != 2:
            raise ValueError("bad PFM size line")
        w, h = int(dims[0]), int(dims[1])
        scale = float(f.readline().strip())
        channels = 3 if header == b"PF" else 1
        data = np.frombuffer(f.read(), dtype="<f4" if scale < 0 else ">f4")
    if data.size != w * h * channels:
        raise ValueError(f"PFM holds {data.size} values, header says {w}x{h}x{channels}")
    img = data.reshape(h, w, channels)[::-1]  # PFM rows run bottom to top
    return img[..., 0] if channels == 1 else img


def _write_pfm(path: Path, depth: np.ndarray) -> None:
    h, w = depth.shape
    with open(path, "wb") as f:
        f.write(f"Pf\n{w} {h}\n-1.0\n".encode())
        f.write(np.ascontiguousarray(depth[::-1], dtype="<f4").tobytes())
