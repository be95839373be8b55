"""Colour of a video: what its YUV samples mean, decoded to RGB and encoded back with the same tags.

A video stores Y'CbCr samples. Turning them into RGB needs the *matrix* (the luma weights Kr, Kb) and
the *range* (limited "tv": Y' in 16..235, chroma 16..240 at 8 bits; full "pc": 0..255); the
*primaries* and *transfer* say what the resulting R'G'B' values mean on a display. Decoders that
ignore the tags (PyAV's ``to_ndarray(format="rgb24")`` uses BT.601 limited whatever the file says)
shift colours; encoders that drop them let players guess (BT.709 for HD, BT.601 for SD), and a
side-by-side export of an SD input is "HD" to a player. So: ``read_colour`` reads the tags once
(filling unset ones the way players guess, and saying so in the log), ``decode_rgb`` converts each
frame with them, and ``encode_frame`` converts RGB back with the same matrix and range into the
encoder's pixel format (``encode_planes_torch``: the same planes of a chunk on its device, the GPU's exports);
``encode.VideoEncoder`` writes the same four tags into every export.

Conventions: RGB is ``uint8 (H, W, 3)``, the R'G'B' (gamma-encoded) values of the source's
primaries and transfer: nothing here converts between colour spaces, so a BT.2020 SDR input stays
BT.2020 and is tagged so. Chroma is resampled bilinearly with centred sample positions (what
swscale does by default; MPEG's left-sited 4:2:0 chroma is a quarter-pixel off, invisible here).

HDR (PQ, HLG transfer) is refused by ``check_colour``: the models work on SDR frames, and an HDR
export would need tone mapping both ways. Names are FFmpeg's (``av_color_*_name``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .checks import InputError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import av
    import torch

log = logging.getLogger(__name__)

# FFmpeg's enum values (libavutil/pixfmt.h) and names.
PRIMARIES = {1: "bt709", 2: "unspecified", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film", 9: "bt2020",
             10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}  # fmt: skip
TRANSFERS = {1: "bt709", 2: "unspecified", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear", 9: "log100",
             10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12",
             16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}  # fmt: skip
MATRICES = {0: "gbr", 1: "bt709", 2: "unspecified", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco",
            9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc", 13: "chroma-derived-c", 14: "ictcp"}  # fmt: skip
RANGES = {0: "unspecified", 1: "tv", 2: "pc"}
HDR_TRANSFERS = ("smpte2084", "arib-std-b67")  # PQ (HDR10, Dolby Vision base) and HLG

# Luma weights (Kr, Kb) of the matrices we convert (ITU-T H.273 table 4); Kg = 1 - Kr - Kb.
LUMA_WEIGHTS = {
    "bt709": (0.2126, 0.0722),
    "bt470bg": (0.299, 0.114),  # BT.601 625-line
    "smpte170m": (0.299, 0.114),  # BT.601 525-line: the same weights
    "smpte240m": (0.212, 0.087),
    "fcc": (0.30, 0.11),
    "bt2020nc": (0.2627, 0.0593),
}

# Planar YUV layouts we read and write directly: pix_fmt -> (chroma subsampling (x, y) as shifts, bits).
PLANAR_YUV = {
    "yuv420p": (1, 1, 8), "yuvj420p": (1, 1, 8), "yuv422p": (1, 0, 8), "yuvj422p": (1, 0, 8),
    "yuv444p": (0, 0, 8), "yuvj444p": (0, 0, 8),
    "yuv420p10le": (1, 1, 10), "yuv422p10le": (1, 0, 10), "yuv444p10le": (0, 0, 10),
    "yuv420p12le": (1, 1, 12), "yuv422p12le": (1, 0, 12), "yuv444p12le": (0, 0, 12),
    "yuv420p16le": (1, 1, 16), "yuv422p16le": (1, 0, 16), "yuv444p16le": (0, 0, 16),
}  # fmt: skip


@dataclass(frozen=True)
class ColourInfo:
    """What a video's samples mean. Fields hold FFmpeg's names (see the tables above).

    The defaults are what an untagged HD video is taken to be (BT.709, limited range, 8 bits) and what
    exports of frame folders (sRGB PNG/JPEG frames) are tagged with.
    """

    primaries: str = "bt709"  # chromaticities of R, G, B and white
    transfer: str = "bt709"  # the R'G'B' <-> light curve
    matrix: str = "bt709"  # R'G'B' <-> Y'CbCr
    range: str = "tv"  # "tv": limited (16-235 at 8 bits), "pc": full (0-255)
    bit_depth: int = 8  # bits per sample of the source (exports pick theirs with --pix-fmt)

    def __post_init__(self):
        for value, table, what in ((self.primaries, PRIMARIES, "primaries"), (self.transfer, TRANSFERS, "transfer"),
                                   (self.matrix, MATRICES, "matrix"), (self.range, RANGES, "range")):  # fmt: skip
            if value not in table.values():
                raise ValueError(f"ColourInfo.{what}: unknown {value!r}; FFmpeg's names are {', '.join(table.values())}")
        if self.bit_depth not in (8, 9, 10, 12, 14, 16):
            raise ValueError(f"ColourInfo.bit_depth: {self.bit_depth} is not a video bit depth")

    @property
    def is_hdr(self) -> bool:
        return self.transfer in HDR_TRANSFERS

    def codec_values(self) -> dict[str, int]:
        """The four tags as FFmpeg's enum values, keyed by PyAV's codec-context attribute names."""
        return {
            "color_primaries": _code(PRIMARIES, self.primaries),
            "color_trc": _code(TRANSFERS, self.transfer),
            "colorspace": _code(MATRICES, self.matrix),
            "color_range": _code(RANGES, self.range),
        }

    def describe(self) -> str:
        return f"{self.matrix}/{self.primaries}/{self.transfer} {'full' if self.range == 'pc' else 'limited'} range, {self.bit_depth}-bit"


def _code(table: dict[int, str], name: str) -> int:
    return next(k for k, v in table.items() if v == name)


def guess_colour(width: int, height: int, *, bit_depth: int = 8, full_range: bool = False) -> ColourInfo:
    """What players assume for an untagged video of this size: BT.709 for HD, BT.601 for SD.

    The split (HD when wider than 1024 or taller than 576) is mpv's and most players'; 576-line SD
    gets the PAL primaries (bt470bg), other SD the NTSC ones (smpte170m).
    """
    if width > 1024 or height > 576:
        return ColourInfo("bt709", "bt709", "bt709", "pc" if full_range else "tv", bit_depth)
    prim = "bt470bg" if height == 576 else "smpte170m"
    return ColourInfo(prim, "smpte170m", "smpte170m" if prim == "smpte170m" else "bt470bg", "pc" if full_range else "tv", bit_depth)


def colour_of_stream(stream: av.video.stream.VideoStream, path: str | os.PathLike = "video") -> ColourInfo:
    """``ColourInfo`` of an open PyAV video stream; unset tags are filled as players would (logged)."""
    import av

    ctx = stream.codec_context
    pix_fmt = ctx.pix_fmt or "yuv420p"
    try:
        fmt = av.VideoFormat(pix_fmt)
        bits, rgb = fmt.components[0].bits, fmt.is_rgb or fmt.has_palette
    except (ValueError, IndexError):
        bits, rgb = 8, False
    guess = guess_colour(ctx.width, ctx.height, bit_depth=bits, full_range=pix_fmt.startswith("yuvj"))
    prim = PRIMARIES.get(ctx.color_primaries, "unspecified")
    trc = TRANSFERS.get(ctx.color_trc, "unspecified")
    matrix = MATRICES.get(ctx.colorspace, "unspecified")
    rng = RANGES.get(ctx.color_range, "unspecified")
    if rgb:  # R'G'B' samples (PNG or QuickTime Animation in MOV, x264rgb): decoded as they are (``decode_rgb``);
        # the matrix and range describe the YUV exports, written as players take an untagged video of this size
        matrix, rng = "unspecified", "unspecified"
    unset = [what for what, v in (("primaries", prim), ("transfer", trc), ("matrix", matrix), ("range", rng)) if v == "unspecified"]
    if unset:
        log.info("%s: no %s tag; taking %s as players do", path, "/".join(unset), guess.describe())
    return ColourInfo(
        guess.primaries if prim == "unspecified" else prim,
        guess.transfer if trc == "unspecified" else trc,
        guess.matrix if matrix == "unspecified" else matrix,
        guess.range if rng == "unspecified" else rng,
        bits,
    )


def read_colour(path: str | os.PathLike) -> ColourInfo:
    """``ColourInfo`` of the first video stream of a media file (``InputError`` if it has none)."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: not a video (no video stream)")
            return colour_of_stream(container.streams.video[0], path)
    except av.error.FFmpegError as e:
        raise InputError(f"{path}: cannot read as a video ({e.strerror or type(e).__name__})") from None


def check_colour(colour: ColourInfo, path: str | os.PathLike) -> None:
    """Refuse, in one line naming the file, a video whose colour we cannot carry through."""
    if colour.is_hdr:
        kind = "PQ (HDR10)" if colour.transfer == "smpte2084" else "HLG"
        raise InputError(
            f"{path}: HDR video ({kind}, {colour.primaries}) is not supported; convert it to SDR first, "
            "e.g. ffmpeg -i IN -vf zscale=t=linear,tonemap=hable,zscale=t=bt709:m=bt709:p=bt709,format=yuv420p OUT.mp4"
        )
    if colour.matrix not in LUMA_WEIGHTS:
        raise InputError(f"{path}: colour matrix {colour.matrix} is not supported (supported: {', '.join(LUMA_WEIGHTS)})")


# --------------------------------------------------------------------------------------------------
# the conversions (pure)


def _levels(bits: int, full: bool) -> tuple[float, float, float, float]:
    """(luma offset, luma scale, chroma offset, chroma scale) in code values of ``bits`` bits (H.273 eq. 20-31)."""
    if full:
        peak = float((1 << bits) - 1)
        return 0.0, peak, float(1 << (bits - 1)), peak
    k = float(1 << (bits - 8))
    return 16.0 * k, 219.0 * k, 128.0 * k, 224.0 * k


def rgb_to_yuv_matrix(colour: ColourInfo, bits: int) -> np.ndarray:
    """``(3, 4)`` float64: R'G'B' in [0, 1] (homogeneous) -> Y', Cb, Cr code values of ``bits`` bits."""
    if colour.matrix not in LUMA_WEIGHTS:
        raise ValueError(f"matrix {colour.matrix}: no conversion (check_colour refuses it); supported: {', '.join(LUMA_WEIGHTS)}")
    kr, kb = LUMA_WEIGHTS[colour.matrix]
    kg = 1.0 - kr - kb
    m = np.array([[kr, kg, kb], [-kr / (1 - kb) / 2, -kg / (1 - kb) / 2, 0.5], [0.5, -kg / (1 - kr) / 2, -kb / (1 - kr) / 2]])
    y0, ys, c0, cs = _levels(bits, colour.range == "pc")
    scale = np.array([ys, cs, cs])[:, None]
    return np.concatenate([m * scale, np.array([[y0], [c0], [c0]])], axis=1)


def yuv_to_rgb_matrix(colour: ColourInfo, bits: int) -> np.ndarray:
    """``(3, 4)`` float64: Y', Cb, Cr code values of ``bits`` bits (homogeneous) -> R'G'B' in [0, 255]."""
    fwd = rgb_to_yuv_matrix(colour, bits)
    inv = np.linalg.inv(fwd[:, :3])
    return np.concatenate([inv, -inv @ fwd[:, 3:]], axis=1) * 255.0


def _plane(frame: av.VideoFrame, index: int, height: int, width: int, dtype) -> np.ndarray:
    """A frame's plane as ``(height, width)`` (line padding cropped), a view of PyAV's buffer."""
    plane = frame.planes[index]
    itemsize = np.dtype(dtype).itemsize
    buf = np.frombuffer(plane, dtype=dtype)
    return buf.reshape(-1, plane.line_size // itemsize)[:height, :width]


def decode_rgb(frame: av.VideoFrame, colour: ColourInfo) -> np.ndarray:
    """A decoded PyAV frame as ``uint8 (H, W, 3)`` R'G'B', converted with ``colour``'s matrix and range.

    Planar YUV formats are read directly, RGB ones (of any depth, and palettes) as RGB; any other (NV12
    from hardware decoders, packed 4:2:2) goes through swscale to planar YUV 4:4:4 first, which keeps the
    code values. Out-of-range values
    (limited-range "super-whites") are clipped. ``colour.bit_depth`` is not used: the frame's format
    says how many bits its samples have.
    """
    fmt = frame.format.name
    if frame.format.is_rgb or frame.format.has_palette:  # RGB of any depth and packing: no matrix applies
        return frame.to_ndarray(format="rgb24")
    if fmt in ("gray", "gray10le", "gray12le", "gray16le"):  # no chroma: grey is grey in every matrix
        bits = frame.format.components[0].bits
        y = _plane(frame, 0, frame.height, frame.width, np.uint8 if bits == 8 else np.uint16).astype(np.float32)
        lo, scale, _, _ = _levels(bits, colour.range == "pc")
        g = np.clip(np.rint((y - lo) / scale * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if fmt not in PLANAR_YUV:
        frame = frame.reformat(format="yuv444p16le")
        fmt = "yuv444p16le"
    sx, sy, bits = PLANAR_YUV[fmt]
    h, w = frame.height, frame.width
    dtype = np.uint8 if bits == 8 else np.uint16
    ch, cw = -(-h // (1 << sy)), -(-w // (1 << sx))  # ceil: odd sizes keep the last chroma sample
    work = np.uint8 if bits == 8 else np.float32  # 8 bits: OpenCV's saturating uint8 arithmetic end to end (fast)
    y = _plane(frame, 0, h, w, dtype).astype(work)
    cb = _plane(frame, 1, ch, cw, dtype).astype(work)
    cr = _plane(frame, 2, ch, cw, dtype).astype(work)
    if (ch, cw) != (h, w):  # (8-bit chroma is interpolated to whole code values: at most half a step, < 1 RGB level)
        cb = cv2.resize(cb, (w, h), interpolation=cv2.INTER_LINEAR)
        cr = cv2.resize(cr, (w, h), interpolation=cv2.INTER_LINEAR)
    ycc = cv2.merge([y, cb, cr])  # (H, W, 3)
    rgb = cv2.transform(ycc, yuv_to_rgb_matrix(colour, bits).astype(np.float32))  # uint8 in: rounded and clipped to uint8
    return rgb if bits == 8 else np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def encode_planes(rgb: np.ndarray, colour: ColourInfo, pix_fmt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``uint8 (H, W, 3)`` R'G'B' -> the Y', Cb, Cr planes of ``pix_fmt`` with ``colour``'s matrix and range.

    Returns ``uint8`` (8-bit formats) or ``uint16`` planes; chroma is box-averaged for subsampled
    formats (``H`` and ``W`` must then be even). Values are rounded to the nearest code value.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb: expected uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    sx, sy, bits = _planar(pix_fmt)
    h, w = rgb.shape[:2]
    if (sx and w % 2) or (sy and h % 2):
        raise ValueError(f"{pix_fmt} needs even sides, got {w}x{h}")
    m = rgb_to_yuv_matrix(colour, bits)
    m[:, :3] /= 255.0  # take uint8 values directly
    m = m.astype(np.float32)
    if sx or sy:  # the matrix is linear: chroma of the 2x box-averaged RGB = the box average of the chroma
        small = cv2.resize(rgb.astype(np.float32), (w >> sx, h >> sy), interpolation=cv2.INTER_AREA)
    else:
        small = rgb.astype(np.float32)
    if bits == 8:  # OpenCV rounds (half to even, as rint) and saturates; RGB in [0, 255] stays within [0, 255.5]
        y = cv2.transform(rgb, m[0:1])
        cbcr = cv2.convertScaleAbs(cv2.transform(small, m[1:3]))
    else:
        peak = (1 << bits) - 1
        y = np.clip(np.rint(cv2.transform(rgb.astype(np.float32), m[0:1])), 0, peak).astype(np.uint16)
        cbcr = np.clip(np.rint(cv2.transform(small, m[1:3])), 0, peak).astype(np.uint16)
    return y, np.ascontiguousarray(cbcr[..., 0]), np.ascontiguousarray(cbcr[..., 1])


def encode_planes_torch(rgb: torch.Tensor, colour: ColourInfo, pix_fmt: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``encode_planes`` of a batch on its device: ``uint8 (n, H, W, 3)`` R'G'B' -> Y' ``(n, H, W)``, Cb, Cr ``(n, H >> sy, W >> sx)``.

    The same matrix, range, box-averaged chroma and rounding (half to even) in float32; the planes are ``uint8``
    (8 bits) or ``int16`` (more: the code values of the ``uint16`` planes, which torch lacks). Against
    ``encode_planes`` only the order of the float32 sums differs: at most 1 code value where a value lies within a
    float32 rounding of a half (tested).
    """
    import torch
    import torch.nn.functional as F

    if rgb.ndim != 4 or rgb.shape[3] != 3 or rgb.dtype != torch.uint8:
        raise ValueError(f"rgb: expected uint8 (n, H, W, 3), got {rgb.dtype} {tuple(rgb.shape)}")
    sx, sy, bits = _planar(pix_fmt)
    h, w = rgb.shape[1:3]
    if (sx and w % 2) or (sy and h % 2):
        raise ValueError(f"{pix_fmt} needs even sides, got {w}x{h}")
    m = rgb_to_yuv_matrix(colour, bits)
    m[:, :3] /= 255.0
    m = m.astype(np.float32)
    peak = (1 << bits) - 1
    dtype = torch.uint8 if bits == 8 else torch.int16

    def plane(x: torch.Tensor, row: np.ndarray) -> torch.Tensor:  # (n, 3, h, w) -> (n, h, w) code values
        # elementwise multiply-adds, not a matmul: no TF32 on a GPU whatever torch's matmul precision is set to
        out = x[:, 0] * float(row[0]) + x[:, 1] * float(row[1]) + x[:, 2] * float(row[2]) + float(row[3])
        return out.round_().clamp_(0, peak).to(dtype)

    x = rgb.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)  # (n, H, W, 3) -> (n, 3, H, W)
    y = plane(x, m[0])
    if sx or sy:  # the box average of each chroma cell
        x = F.avg_pool2d(x, (1 << sy, 1 << sx))  # (n, 3, H >> sy, W >> sx)
    return y, plane(x, m[1]), plane(x, m[2])


def _planar(pix_fmt: str) -> tuple[int, int, int]:
    """(x shift, y shift, bits) of a planar YUV format we write; ``ValueError`` for any other."""
    if pix_fmt not in PLANAR_YUV or pix_fmt.startswith("yuvj"):
        raise ValueError(f"pix_fmt: {pix_fmt} is not a planar YUV format we write ({', '.join(p for p in PLANAR_YUV if 'j' not in p)})")
    return PLANAR_YUV[pix_fmt]


def planes_frame(planes: Sequence[np.ndarray], colour: ColourInfo, pix_fmt: str) -> av.VideoFrame:
    """The Y', Cb, Cr planes of one frame (``encode_planes``: ``uint8`` or ``uint16``) as a PyAV frame tagged with ``colour``."""
    import av

    h, w = planes[0].shape
    frame = av.VideoFrame(w, h, pix_fmt)
    for i, data in enumerate(planes):
        _plane(frame, i, data.shape[0], data.shape[1], data.dtype)[...] = data
    codes = colour.codec_values()
    frame.colorspace, frame.color_range = codes["colorspace"], codes["color_range"]
    return frame


def encode_frame(rgb: np.ndarray, colour: ColourInfo, pix_fmt: str) -> av.VideoFrame:
    """``uint8 (H, W, 3)`` R'G'B' as a PyAV frame in ``pix_fmt``, converted and tagged with ``colour``."""
    return planes_frame(encode_planes(rgb, colour, pix_fmt), colour, pix_fmt)
