"""Stereo and spherical metadata boxes (Spherical Video V2: ``st3d``, ``sv3d``) added to a finished mp4.

FFmpeg's mp4 muxer writes ``st3d``/``sv3d`` only from a stream's stereo3d/spherical side data (and only
with ``-strict unofficial``); PyAV 16 cannot attach side data to an output stream. So the encoder
writes a plain mp4 and ``add_sample_entry_boxes`` adds the boxes to the video track's sample entry
(``moov/trak/mdia/minf/stbl/stsd/avc1`` or ``hvc1``/``av01``/``vp09``) right after the codec
configuration box, where the RFC puts them (after the mandatory boxes, before ``colr``/``pasp``/``btrt``).
FFmpeg's muxer writes ``moov`` after ``mdat``, so growing ``moov`` moves no sample: the chunk offsets
stay valid and only the sizes of the enclosing boxes change.

Box layouts: google/spatial-media ``docs/spherical-video-v2-rfc.md``. FFmpeg's mov demuxer reads them
back as stereo3d / spherical side data (tested).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

ST3D_MONO, ST3D_TOP_BOTTOM, ST3D_LEFT_RIGHT = 0, 1, 2  # st3d stereo_mode (RFC: 1 = left eye on top, 2 = left eye on the left)
HALF_TURN = 1 << 30  # 0.32 fixed point 0.25: the share of a 360-degree equirectangular frame cropped on each side for 180 degrees
_CONTAINERS = ("moov", "trak", "mdia", "minf", "stbl")
_CODEC_CONFIGS = ("avcC", "hvcC", "av1C", "vpcC")
_VISUAL_ENTRY_HEADER = 78  # bytes of a VisualSampleEntry before its child boxes (ISO/IEC 14496-12 12.1.3)


def box(kind: str, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind.encode("ascii")) + payload


def full_box(kind: str, payload: bytes, version: int = 0, flags: int = 0) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags) + payload)


def st3d(stereo_mode: int) -> bytes:
    """``st3d``: FullBox + uint8 stereo_mode."""
    return full_box("st3d", bytes([stereo_mode]))


def sv3d_equirect(*, top: int = 0, bottom: int = 0, left: int = 0, right: int = 0, source: str = "svg3d") -> bytes:
    """``sv3d`` with an ``equi`` projection cropped by the given 0.32 fixed-point shares, pose 0 (forward at the centre)."""
    svhd = full_box("svhd", source.encode() + b"\0")
    prhd = full_box("prhd", struct.pack(">iii", 0, 0, 0))
    equi = full_box("equi", struct.pack(">IIII", top, bottom, left, right))
    return box("sv3d", svhd + box("proj", prhd + equi))


def _children(data: bytes | bytearray, start: int, end: int):
    """(type, offset, header size, size) of the boxes in ``data[start:end]``."""
    off = start
    while off + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, off)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, off + 8)
            header = 16
        elif size == 0:
            size = end - off
        if size < header or off + size > end:
            raise ValueError(f"corrupt box {kind!r} at byte {off}")
        yield kind.decode("latin-1"), off, header, size
        off += size


def _find(data, start, end, kind):
    return next(((o, h, s) for k, o, h, s in _children(data, start, end) if k == kind), None)


def add_sample_entry_boxes(path: str | os.PathLike, extra: bytes) -> None:
    """Insert ``extra`` (whole boxes) into the first video sample entry of the mp4 at ``path``, in place.

    ``ValueError`` if the file is not laid out as FFmpeg writes it (``moov`` last, a video track).
    """
    path = Path(path)
    with open(path, "r+b") as f:
        f.seek(0, os.SEEK_END)
        file_size = f.tell()
        # Walk the top level by seeking (mdat can be gigabytes) to find moov.
        off, moov_at = 0, None
        while off + 8 <= file_size:
            f.seek(off)
            header = f.read(16)
            size, kind = struct.unpack_from(">I4s", header)
            if size == 1:
                (size,) = struct.unpack_from(">Q", header, 8)
            elif size == 0:
                size = file_size - off
            if size < 8:
                raise ValueError(f"{path}: corrupt top-level box at byte {off}")
            if kind == b"moov":
                moov_at = off
            off += size
        if moov_at is None:
            raise ValueError(f"{path}: no moov box")
        f.seek(moov_at)
        moov = bytearray(f.read())
        _, _, mh, ms = next(_children(moov, 0, len(moov)))
        if ms != len(moov):
            raise ValueError(f"{path}: moov is not the last box (a faststart file); cannot add boxes in place")
        chain = [(0, mh)]  # (offset, header size) of every box whose size grows
        entry = None
        for kind, o, h, s in _children(moov, mh, ms):
            if kind != "trak":
                continue
            mdia = _find(moov, o + h, o + s, "mdia")
            hdlr = mdia and _find(moov, mdia[0] + mdia[1], mdia[0] + mdia[2], "hdlr")
            if not hdlr or moov[hdlr[0] + hdlr[1] + 8 : hdlr[0] + hdlr[1] + 12] != b"vide":
                continue
            path_boxes = [(o, h, s), mdia]
            for inner in ("minf", "stbl", "stsd"):
                po, ph, ps = path_boxes[-1]
                found = _find(moov, po + ph, po + ps, inner)
                if found is None:
                    raise ValueError(f"{path}: video track without {inner}")
                path_boxes.append(found)
            so, sh, ss = path_boxes[-1]
            _, eo, eh, es = next(_children(moov, so + sh + 8, so + ss))  # stsd: FullBox + entry_count, then entries
            path_boxes.append((eo, eh, es))
            chain += [(bo, bh) for bo, bh, _ in path_boxes]
            entry = (eo, eh, es)
            break
        if entry is None:
            raise ValueError(f"{path}: no video track")
        eo, eh, es = entry
        at = eo + es  # default: at the end of the entry
        for kind, o, _, s in _children(moov, eo + eh + _VISUAL_ENTRY_HEADER, eo + es):
            if kind in _CODEC_CONFIGS:
                at = o + s  # right after the codec configuration
                break
        moov[at:at] = extra
        for bo, bh in chain:
            if bh == 16:
                (size,) = struct.unpack_from(">Q", moov, bo + 8)
                struct.pack_into(">Q", moov, bo + 8, size + len(extra))
            else:
                (size,) = struct.unpack_from(">I", moov, bo)
                if size + len(extra) >= 1 << 32:
                    raise ValueError(f"{path}: moov too large for a 32-bit box size")
                struct.pack_into(">I", moov, bo, size + len(extra))
        f.seek(moov_at)
        f.write(moov)
        f.truncate()
