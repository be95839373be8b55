"""Video files written frame by frame: encoder settings, colour tags, stereo metadata, audio, atomic.

``VideoEncoder`` keeps one PyAV encoder open and takes RGB frames in chunks of any size, so memory is
bounded by a chunk whatever the clip's length. Each frame is converted to the encoder's pixel
format with the source's matrix and range (``colour.encode_frame``), or comes as those planes made elsewhere
(``write_planes``: on the GPU, ``colour.encode_planes_torch``), and the file is tagged with the
source's primaries, transfer, matrix and range. Every audio track of a given file is copied packet by
packet, interleaved with the video as it is written. Stereo metadata (``StereoTag``): mp4 gets the Spherical
Video V2 ``st3d`` box (and ``sv3d`` for VR180; ``isobmff``), mkv the Matroska ``StereoMode``
element (FFmpeg writes it from the stream's ``stereo_mode`` tag) and for VR180 the ``Projection`` element
(``matroska``), and half side-by-side / top-bottom H.264 an x264 frame-packing SEI, which 3D TVs read. An mp4
gets its index first (fast start, ``isobmff.finish_mp4``). The encoder runs on a chosen number of threads
(``encoder_threads``), never on what it finds: the bytes must not depend on the CPUs a run happened to
have (``encoder_threads`` says why), and x264 without its AVX-512 code, which gave identical frames other bytes from
one encode to the next (``x264_asm``). The file is written as a part
(``parts``) and renamed into place only when complete; an ``OSError`` (disk full, folder removed)
becomes an ``InputError`` naming the file, with the part removed.

``EncoderSettings`` are the user's ``--codec --crf --preset --pix-fmt --container`` (and ``threads``);
``check_encoder`` validates them in one line each, listing what this FFmpeg build offers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from . import isobmff, matroska
from .checks import InputError
from .colour import LUMA_WEIGHTS, PLANAR_YUV, ColourInfo, encode_frame, guess_colour, planes_frame
from .parts import Part

log = logging.getLogger(__name__)

X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
PIX_FMTS = ("yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le", "yuv444p10le")  # what colour.encode_frame writes
CONTAINERS = {"mp4": "mp4", "mkv": "matroska"}  # --container -> FFmpeg muxer


@dataclass(frozen=True)
class CodecSpec:
    """How to drive one encoder: its quality and speed options, and where it can go."""

    crf: tuple[str, int, int] | None  # (option, lowest, highest) of its constant-quality mode; None: lossless only
    preset: tuple[str, tuple[str, ...]] | None  # (option, choices); "medium" on another scale means the codec's default
    mp4: bool = True  # whether the mp4 muxer takes it (else mkv only)
    tag: str | None = None  # mp4 sample-entry tag to use instead of FFmpeg's default
    options: dict[str, str] = field(default_factory=dict)  # always set


CODECS: dict[str, CodecSpec] = {
    "libx264": CodecSpec(("crf", 0, 51), ("preset", X26X_PRESETS)),
    # hvc1, not FFmpeg's default hev1: Apple players (and YouTube's docs) want parameter sets in the sample entry
    "libx265": CodecSpec(("crf", 0, 51), ("preset", X26X_PRESETS), tag="hvc1", options={"x265-params": "log-level=error"}),
    "libsvtav1": CodecSpec(("crf", 1, 63), ("preset", tuple(str(i) for i in range(14)))),
    "libaom-av1": CodecSpec(("crf", 0, 63), ("cpu-used", tuple(str(i) for i in range(9))), options={"row-mt": "1"}),
    "libvpx-vp9": CodecSpec(("crf", 0, 63), ("deadline", ("good", "best", "realtime")), options={"row-mt": "1"}),
    "ffv1": CodecSpec(None, None, mp4=False),  # lossless archive codec (mkv)
}


MP4_AUDIO_CODECS = ("aac", "mp3", "ac3", "eac3", "opus", "flac", "alac")  # what the mp4 muxer takes as is


@dataclass(frozen=True)
class EncoderSettings:
    """How every video export is encoded (``--codec --crf --preset --pix-fmt --container``)."""

    codec: str = "libx264"  # H.264: what every player, TV and headset decodes in hardware
    crf: int = 18  # constant quality; 18 is x264's "visually lossless" end (the value exports always used)
    preset: str = "medium"  # x264/x265's default speed/size trade-off; on a codec with another scale, its default
    pix_fmt: str = "yuv420p"  # 4:2:0 8-bit: what hardware decoders take; yuv444p keeps anaglyph colour edges
    container: str = "mp4"  # mp4: st3d/sv3d metadata, every player; mkv: Matroska StereoMode, any codec
    threads: int | None = None  # threads per encoder; None: the machine's cores shared among the exports (encoder_threads)

    @property
    def suffix(self) -> str:
        return f".{self.container}"


@functools.cache
def codec_available(name: str) -> bool:
    """Whether this FFmpeg build has encoder ``name`` and it opens here (hardware encoders need their device)."""
    import av

    if name == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner and warnings to stderr unless told errors only
    try:
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 64, 64, "yuv420p", Fraction(1, 25)
        ctx.options = dict(CODECS[name].options) if name in CODECS else {}
        ctx.open()
    except (av.error.FFmpegError, ValueError, OSError):
        return False
    return True


def available_codecs() -> tuple[str, ...]:
    """The encoders of ``CODECS`` that this FFmpeg build has and can open here (each probed once)."""
    return tuple(name for name in CODECS if codec_available(name))


def check_encoder(settings: EncoderSettings) -> None:
    """``InputError`` (one line, naming the flag) unless ``settings`` can encode here."""
    import av

    if settings.container not in CONTAINERS:
        raise InputError(f"--container {settings.container}: choose {' or '.join(CONTAINERS)}")
    if settings.codec not in CODECS or not codec_available(settings.codec):
        raise InputError(f"--codec {settings.codec}: not available; this FFmpeg build has {', '.join(available_codecs())}")
    spec = CODECS[settings.codec]
    if settings.container == "mp4" and not spec.mp4:
        raise InputError(f"--codec {settings.codec} cannot go into mp4; use --container mkv")
    formats = {f.name for f in av.codec.Codec(settings.codec, "w").video_formats or ()}
    usable = [p for p in PIX_FMTS if p in formats]
    if settings.pix_fmt not in usable:
        raise InputError(f"--pix-fmt {settings.pix_fmt}: {settings.codec} takes {', '.join(usable)}")
    if spec.crf is not None:
        _, lo, hi = spec.crf
        if not lo <= settings.crf <= hi:
            raise InputError(f"--crf {settings.crf}: {settings.codec} takes {lo}..{hi}")
    if spec.preset is not None and settings.preset != "medium" and settings.preset not in spec.preset[1]:
        raise InputError(f"--preset {settings.preset}: {settings.codec} takes {', '.join(spec.preset[1])}")
    if spec.preset is None and settings.preset != "medium":
        raise InputError(f"--preset {settings.preset}: {settings.codec} has no presets")
    if settings.threads is not None and not (isinstance(settings.threads, int) and 1 <= settings.threads <= 256):
        raise InputError(f"--encoder-threads {settings.threads}: a whole number of threads, 1 .. 256")


def encoder_threads(concurrent: int = 1, *, cpus: int | None = None) -> int:
    """Threads for each of ``concurrent`` encoders working at once: the machine's cores shared out, at least one.

    Chosen, not inherited: left to itself (PyAV's default, ``thread_count`` 0) x264 counts the CPUs this process
    may run on *when the encoder opens* and cuts every frame into that many slices, so the same frames gave other
    bytes in every frame when a run was resumed under another CPU set (``taskset``, a container's cpuset, a Ray
    worker). ``os.cpu_count()`` is the machine's, whatever the affinity: runs and resumes on one machine agree.
    The bytes of a lossy file depend on this count (x264 and x265 frame threads); ``EncoderSettings.threads``
    pins it, e.g. for identical files from machines with other core counts.
    """
    cpus = (os.cpu_count() or 1) if cpus is None else cpus
    return max(1, cpus // max(1, concurrent))


def threading_options(codec: str, threads: int) -> tuple[dict[str, str], int, str]:
    """(extra codec options, ``thread_count``, ``thread_type``) that run ``codec`` on exactly ``threads`` threads.

    x264: frame threads (one frame per thread in flight; sliced threads cut every frame into ``threads`` slices,
    costing compression). x265: a pool of ``threads`` workers (wavefront rows) and frame threads as x265 picks
    them for that many cores, both given so that nothing depends on the machine it runs on.
    """
    if codec == "libx265":
        frame_threads = 1 if threads < 4 else 2 if threads < 8 else 3 if threads < 16 else 4
        return {"x265-params": f"pools={threads}:frame-threads={frame_threads}"}, 0, "FRAME"
    return {}, threads, "FRAME"


@functools.cache
def x264_asm() -> str | None:
    """The CPU capabilities x264 finds here less AVX-512, as its ``asm`` option takes them; None where it finds no AVX-512.

    x264's AVX-512 code reads memory it did not write: at 96x64 with a frame-packing SEI the same frames gave other
    bytes whenever the heap held other leftovers (every second encode of one process, 1 resumed run in 5; never with
    the same capabilities less AVX-512 — nor with ``MALLOC_PERTURB_`` — in 10 of 10). x264 names what it detected in
    its log when an encoder opens (names its ``asm`` option reads back); a probe encoder is opened once to read them.
    """
    import av
    import av.logging

    level = av.logging.get_level()
    av.logging.set_level(av.logging.INFO)
    try:
        with av.logging.Capture(local=True) as logs:
            ctx = av.CodecContext.create("libx264", "w")
            ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 64, 64, "yuv420p", Fraction(1, 25)
            ctx.open()
    finally:
        av.logging.set_level(level)
    found = [line.split(":", 1)[1].split() for _, _, line in logs if line.startswith("using cpu capabilities:")]
    if not found or "AVX512" not in found[0]:
        return None
    return ",".join(name for name in found[0] if name != "AVX512")


def codec_options(settings: EncoderSettings) -> dict[str, str]:
    """The PyAV options for ``settings`` (validated by ``check_encoder``)."""
    spec = CODECS[settings.codec]
    options = dict(spec.options)
    if spec.crf is not None:
        options[spec.crf[0]] = str(settings.crf)
    if spec.preset is not None and settings.preset in spec.preset[1]:
        options[spec.preset[0]] = settings.preset
    return options


@dataclass(frozen=True)
class StereoTag:
    """Stereo metadata of a frame-packed video: which packing, whether the eyes are swapped or squeezed, VR180."""

    packing: str  # "sbs" (eyes side by side) or "tb" (top and bottom)
    swapped: bool = False  # right eye first (cross-eyed viewing)
    half: bool = False  # each eye squeezed to half the width (sbs) or height (tb)
    equirect: tuple[int, int, int, int] | None = None  # each eye equirectangular: projection bounds (top, bottom, left, right; 0.32)

    def __post_init__(self):
        if self.packing not in ("sbs", "tb"):
            raise ValueError(f"StereoTag.packing: 'sbs' or 'tb', got {self.packing!r}")

    def matroska(self) -> str:
        """Matroska StereoMode name, as FFmpeg's muxer takes it in the ``stereo_mode`` tag."""
        if self.packing == "sbs":
            return "right_left" if self.swapped else "left_right"
        return "bottom_top" if self.swapped else "top_bottom"

    def mp4_boxes(self) -> bytes:
        """``st3d`` (+ ``sv3d`` for VR180). Swapped eyes get no box: FFmpeg 8 ignores the RFC's "right-left" mode 4."""
        if self.swapped:
            return b""
        boxes = isobmff.st3d(isobmff.ST3D_LEFT_RIGHT if self.packing == "sbs" else isobmff.ST3D_TOP_BOTTOM)
        if self.equirect is not None:
            top, bottom, left, right = self.equirect
            boxes += isobmff.sv3d_equirect(top=top, bottom=bottom, left=left, right=right)
        return boxes

    def x264_frame_packing(self) -> int | None:
        """H.264 frame-packing SEI type (3 side by side, 4 top-bottom) for half layouts, which 3D TVs expect."""
        if not self.half or self.swapped:
            return None
        return 3 if self.packing == "sbs" else 4


class VideoEncoder:
    """One video file, written chunk by chunk; a context manager (closes on success, aborts on an exception).

    path:   the output file (its part is written beside it).
    fps:    frame rate, exact (``Fraction``; 30000/1001 stays NTSC).
    width, height: frame size; odd sides are padded by repeating the last column/row (4:2:0 needs even).
    colour: the source's colour. ``None`` (frame folders, rendered clips): what players take an untagged
            video of this size to be (``colour.guess_colour``: BT.601 for SD, BT.709 for HD, limited
            range), so that even readers that ignore the tags (PyAV's ``to_ndarray``) decode it right.
    audio:  a media file whose audio streams are all copied in (they must suit the container:
            ``export.audio_track`` makes an mp4-ready file of every track); ``None``: no audio.
    stereo: stereo metadata, or ``None`` for a flat video.
    threads: encoder threads (``encoder_threads``); default ``settings.threads``, else every core.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        settings: EncoderSettings,
        *,
        fps: Fraction,
        width: int,
        height: int,
        colour: ColourInfo | None = None,
        audio: str | os.PathLike | None = None,
        stereo: StereoTag | None = None,
        threads: int | None = None,
    ):
        import av

        check_encoder(settings)
        if width < 1 or height < 1:
            raise ValueError(f"frame size {width}x{height}")
        self.path = Path(path)
        self.settings = settings
        self.fps = Fraction(fps)
        self.size = (height, width)
        sx, sy, _ = PLANAR_YUV[settings.pix_fmt]
        self.pad = (height % 2 if sy else 0, width % 2 if sx else 0)  # (rows, columns) added for chroma subsampling
        self.colour = colour or guess_colour(width + self.pad[1], height + self.pad[0])
        if self.colour.is_hdr or self.colour.matrix not in LUMA_WEIGHTS:  # colour.check_colour refuses such inputs first
            raise ValueError(f"colour {self.colour.describe()}: SDR with a matrix of {', '.join(LUMA_WEIGHTS)} only")
        self.stereo = stereo
        self.threads = threads or settings.threads or encoder_threads()
        self.frames = 0
        self._audio_src = self._pending = None
        self._audio_map: dict = {}
        self._out = None
        self._part = None
        self._closed = False
        if any(self.pad):
            log.info("%s: %dx%d padded to even sides for %s", self.path, width, height, settings.pix_fmt)
        if audio is not None:
            self._check_audio(Path(audio))
        self._part = Part(self.path)
        try:
            self._open(av, audio)
        except BaseException as e:
            self.abort()
            if isinstance(e, (OSError, av.error.FFmpegError)):
                raise self._error(e) from None
            raise

    def _check_audio(self, audio: Path) -> None:
        import av

        with av.open(str(audio)) as src:
            if not src.streams.audio:
                raise ValueError(f"{audio}: no audio stream to copy")
            codecs = [a.codec_context.name for a in src.streams.audio]
        if self.settings.container == "mp4" and any(c not in MP4_AUDIO_CODECS for c in codecs):
            raise ValueError(f"{audio}: {', '.join(codecs)} audio cannot be copied into mp4; re-encode it first (export.audio_track)")

    def _open(self, av, audio) -> None:
        spec = CODECS[self.settings.codec]
        self._out = av.open(str(self._part.path), mode="w", format=CONTAINERS[self.settings.container])
        stream = self._out.add_stream(self.settings.codec, rate=self.fps)
        stream.width, stream.height = self.size[1] + self.pad[1], self.size[0] + self.pad[0]
        stream.pix_fmt = self.settings.pix_fmt
        for name, value in self.colour.codec_values().items():
            setattr(stream.codec_context, name, value)
        options = codec_options(self.settings)
        packing = self.stereo.x264_frame_packing() if self.stereo is not None else None
        if self.settings.codec == "libx264":
            params = [f"frame-packing={packing}"] if packing is not None else []
            params += [f"asm={x264_asm()}"] if x264_asm() is not None else []  # the same bytes every time (x264_asm)
            if params:
                options["x264-params"] = ":".join(params)
        extra, stream.codec_context.thread_count, stream.codec_context.thread_type = threading_options(self.settings.codec, self.threads)
        for key, value in extra.items():  # x265-params: one string of key=value pairs joined by ':'
            options[key] = f"{options[key]}:{value}" if key in options else value
        stream.options = options
        if spec.tag and self.settings.container == "mp4":
            stream.codec_tag = spec.tag
        if self.stereo is not None and self.settings.container == "mkv":
            stream.metadata["stereo_mode"] = self.stereo.matroska()
        self._stream = stream
        if audio is not None:
            self._audio_src = av.open(str(audio))
            for track in self._audio_src.streams.audio:  # every track, in order, with its language and title
                out = self._out.add_stream_from_template(track)
                for key in ("language", "title"):
                    if key in track.metadata:
                        out.metadata[key] = track.metadata[key]
                self._audio_map[track.index] = out
            self._audio_packets = self._demux_audio()
            self._pending = next(self._audio_packets, None)

    def _demux_audio(self) -> Iterator:
        for packet in self._audio_src.demux(*self._audio_src.streams.audio):
            if packet.dts is not None:
                yield packet

    def _mux_audio_until(self, seconds: float) -> None:
        """Mux the audio packets that start before ``seconds`` (all of them for ``inf``): interleaved with the video."""
        while self._pending is not None and (self._pending.pts is None or float(self._pending.pts * self._pending.time_base) < seconds):
            self._pending.stream = self._audio_map[self._pending.stream.index]
            self._out.mux(self._pending)
            self._pending = next(self._audio_packets, None)

    def write(self, frames: np.ndarray) -> None:
        """Encode ``uint8 (n, H, W, 3)`` RGB frames (any ``n``, including 0)."""
        if self._closed:
            raise ValueError(f"{self.path}: write after close")
        if frames.ndim != 4 or frames.shape[1:] != (*self.size, 3) or frames.dtype != np.uint8:
            raise ValueError(f"frames: expected uint8 (n, {self.size[0]}, {self.size[1]}, 3), got {frames.dtype} {frames.shape}")
        pad = ((0, self.pad[0]), (0, self.pad[1]), (0, 0))
        self._encode(encode_frame(np.pad(rgb, pad, mode="edge") if any(self.pad) else rgb, self.colour, self.settings.pix_fmt) for rgb in frames)

    def write_planes(self, y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> None:
        """Encode frames given as the planes of ``colour.encode_planes`` (made elsewhere, e.g. on a GPU:
        ``colour.encode_planes_torch``) of frames padded to even sides (``pad``): ``y (n, H', W')``, ``cb`` and
        ``cr (n, H' >> sy, W' >> sx)``, ``uint8`` for 8-bit formats, else ``uint16`` (or ``int16`` holding the same codes)."""
        if self._closed:
            raise ValueError(f"{self.path}: write after close")
        sx, sy, bits = PLANAR_YUV[self.settings.pix_fmt]
        h, w = self.size[0] + self.pad[0], self.size[1] + self.pad[1]
        dtype = np.uint8 if bits == 8 else np.uint16
        if bits > 8 and y.dtype == np.int16:  # torch's 16-bit integers are signed; the codes are < 2 ** 15
            y, cb, cr = y.view(np.uint16), cb.view(np.uint16), cr.view(np.uint16)
        n = len(y)
        want = ((n, h, w), (n, h >> sy, w >> sx), (n, h >> sy, w >> sx))
        if tuple(p.shape for p in (y, cb, cr)) != want or any(p.dtype != dtype for p in (y, cb, cr)):
            raise ValueError(f"planes: expected {np.dtype(dtype).name} {want} for {self.settings.pix_fmt}, got "
                             f"{', '.join(f'{p.dtype} {p.shape}' for p in (y, cb, cr))}")  # fmt: skip
        self._encode(planes_frame((y[t], cb[t], cr[t]), self.colour, self.settings.pix_fmt) for t in range(n))

    def _encode(self, frames: Iterator) -> None:
        """Number, encode and mux PyAV frames in the encoder's format, then the audio up to the last one."""
        import av

        try:
            for frame in frames:
                frame.pts = self.frames
                frame.time_base = 1 / self.fps
                self._out.mux(self._stream.encode(frame))
                self.frames += 1
            if self._pending is not None:
                self._mux_audio_until(float(self.frames / self.fps))
        except (OSError, av.error.FFmpegError) as e:
            self.abort()
            raise self._error(e) from None

    def finish(self) -> Path:
        """Flush the encoder, copy the rest of the audio, add the stereo boxes; the part is then complete. Returns it."""
        import av

        try:
            self._out.mux(self._stream.encode())
            if self._pending is not None:
                self._mux_audio_until(float("inf"))
            self._out.close()
            self._out = None
            self._close_audio()
            if self.settings.container == "mp4":  # the stereo boxes, and the index before the media (fast start)
                isobmff.finish_mp4(self._part.path, self.stereo.mp4_boxes() if self.stereo is not None else b"")
            elif self.stereo is not None and self.stereo.equirect is not None:
                matroska.add_projection(self._part.path, matroska.projection_equirect(self.stereo.equirect))
        except (OSError, av.error.FFmpegError) as e:
            self.abort()
            raise self._error(e) from None
        self._closed = True
        return self._part.path

    def commit(self) -> Path:
        """Rename the finished part over the output; returns the output's path."""
        try:
            return self._part.commit()
        except OSError as e:
            self.abort()
            raise self._error(e) from None

    def close(self) -> Path:
        """``finish`` then ``commit``."""
        self.finish()
        return self.commit()

    def abort(self) -> None:
        """Drop everything written; the output (if it existed before) is left as it was."""
        self._closed = True
        if self._out is not None:
            with contextlib.suppress(Exception):
                self._out.close()
            self._out = None
        self._close_audio()
        if self._part is not None:
            self._part.discard()

    def _close_audio(self) -> None:
        if self._audio_src is not None:
            with contextlib.suppress(Exception):
                self._audio_src.close()
            self._audio_src = None

    def _error(self, e: BaseException) -> InputError:
        cause = getattr(e, "strerror", None) or str(e) or type(e).__name__
        return InputError(f"{self.path}: cannot write ({cause})")

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
