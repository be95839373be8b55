"""Finishing an mp4 FFmpeg wrote: stereo and spherical boxes (Spherical Video V2: ``st3d``, ``sv3d``), index first.

FFmpeg's mp4 muxer writes ``st3d``/``sv3d`` only from a stream's stereo3d/spherical side data (and only
with ``-strict unofficial``); PyAV 16 cannot attach side data to an output stream. So the encoder
writes a plain mp4 (``moov``, the index, last) and ``finish_mp4`` adds the boxes to the video track's sample
entry (``moov/trak/mdia/minf/stbl/stsd/avc1`` or ``hvc1``/``av01``/``vp09``) right after the codec
configuration box, where the RFC puts them (after the mandatory boxes, before ``colr``/``pasp``/``btrt``),
then moves ``moov`` before the media data (fast start: browsers and players streaming the file need the index
first), moving every chunk offset by ``moov``'s size.

Box layouts: google/spatial-media ``docs/spherical-video-v2-rfc.md``. FFmpeg's mov demuxer reads them
back as stereo3d / spherical side data (tested)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

ST3D_MONO, ST3D_TOP_BOTTOM, ST3D_LEFT_RIGHT = 0, 1, 2  # st3d stereo_mode (RFC: 1 = left eye on top, 2 = left eye on the left)
HALF_TURN = 1 << 30  # 0.32 fixed point 0.25: the share of a 360-degree equirectangular frame cropped on each side for 180 degrees
HALF_SPHERE = (0, 0, HALF_TURN, HALF_TURN)  # equi bounds (top, bottom, left, right) of a whole 180 x 180-degree hemisphere
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


def _top_level(f, file_size: int, path: Path) -> list[tuple[str, int, int]]:
    """(type, offset, size) of the top-level boxes, found by seeking (mdat can be gigabytes)."""
    boxes, off = [], 0
    while off + 8 <= file_size:
        f.seek(off)
        header = f.read(16)
        size, kind = struct.unpack_from(">I4s", header)
        if size == 1:
            (size,) = struct.unpack_from(">Q", header, 8)
        elif size == 0:
            size = file_size - off
        if size < 8 or off + size > file_size:
            raise ValueError(f"{path}: corrupt top-level box at byte {off}")
        boxes.append((kind.decode("latin-1"), off, size))
        off += size
    return boxes


def _with_sample_entry_boxes(moov: bytearray, extra: bytes, path: Path) -> bytearray:
    """``moov`` with ``extra`` (whole boxes) inserted into its first video sample entry, after the codec configuration."""
    _, _, mh, ms = next(_children(moov, 0, len(moov)))
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
    return moov


def _shifted(data: bytes | bytearray, start: int, end: int, shift: int) -> bytes:
    """The boxes of ``data[start:end]`` with every chunk offset (``stco``/``co64``) moved by ``shift`` bytes; an
    ``stco`` whose offsets no longer fit 32 bits becomes a ``co64``. Containers are rebuilt with their new sizes."""
    out = []
    for kind, o, h, s in _children(data, start, end):
        if kind in _CONTAINERS:
            out.append(box(kind, _shifted(data, o + h, o + s, shift)))
        elif kind in ("stco", "co64"):
            (count,) = struct.unpack_from(">I", data, o + h + 4)
            wide = kind == "co64"
            offsets = np.frombuffer(bytes(data[o + h + 8 : o + h + 8 + count * (8 if wide else 4)]), ">u8" if wide else ">u4").astype(np.uint64)
            offsets = offsets + np.uint64(shift)
            wide = wide or (count > 0 and int(offsets.max()) >= 1 << 32)
            out.append(full_box("co64" if wide else "stco", struct.pack(">I", count) + offsets.astype(">u8" if wide else ">u4").tobytes()))
        else:
            out.append(bytes(data[o : o + s]))
    return b"".join(out)


def sample_entry_boxes(path: str | os.PathLike, kinds: tuple[str, ...] = ("st3d", "sv3d")) -> bytes:
    """The boxes of ``kinds`` in the first video sample entry of the mp4 at ``path``, whole and in file order (to carry
    one file's stereo and spherical metadata to another: ``join``)."""
    path = Path(path)
    with open(path, "rb") as f:
        file_size = f.seek(0, os.SEEK_END)
        moov = next(((o, s) for k, o, s in _top_level(f, file_size, path) if k == "moov"), None)
        if moov is None:
            raise ValueError(f"{path}: no moov box")
        f.seek(moov[0])
        data = f.read(moov[1])
    _, _, mh, ms = next(_children(data, 0, len(data)))
    for kind, o, h, s in _children(data, mh, ms):
        if kind != "trak":
            continue
        found = (o, h, s)
        for inner in ("mdia", "minf", "stbl", "stsd"):
            found = _find(data, found[0] + found[1], found[0] + found[2], inner)
            if found is None:
                break
        else:
            _, eo, eh, es = next(_children(data, found[0] + found[1] + 8, found[0] + found[2]))
            if data[eo + 4 : eo + 8] in (b"avc1", b"avc3", b"hvc1", b"hev1", b"av01", b"vp09"):
                children = _children(data, eo + eh + _VISUAL_ENTRY_HEADER, eo + es)
                return b"".join(data[c : c + cs] for k, c, _, cs in children if k in kinds)
    return b""


def finish_mp4(path: str | os.PathLike, extra: bytes = b"", *, block: int = 8 << 20) -> None:
    """Make the mp4 FFmpeg wrote at ``path`` (``moov`` last) start fast, in place: ``extra`` (whole boxes, e.g. ``st3d``)
    go into the video sample entry, and ``moov`` moves right after ``ftyp``, before the media data, so that a
    player or a browser streaming the file reads the index first (FFmpeg's ``+faststart``, done here because the
    boxes must be added first). Every chunk offset moves by ``moov``'s size (``stco`` becoming ``co64`` past
    4 GiB). The media data is moved back to front in blocks of ``block`` bytes: no second copy of the file.

    ``ValueError`` if the file is not laid out as FFmpeg writes it (``moov`` last, a video track when ``extra``).
    """
    path = Path(path)
    with open(path, "r+b") as f:
        file_size = f.seek(0, os.SEEK_END)
        boxes = _top_level(f, file_size, path)
        if not boxes or boxes[-1][0] != "moov":
            raise ValueError(f"{path}: moov is not the last box (already fast start?); cannot move it")
        _, moov_at, moov_size = boxes[-1]
        f.seek(moov_at)
        moov = bytearray(f.read(moov_size))
        if extra:
            moov = _with_sample_entry_boxes(moov, extra, path)
        at = boxes[0][1] + boxes[0][2] if boxes[0][0] == "ftyp" else 0  # moov goes here
        _, _, mh, ms = next(_children(moov, 0, len(moov)))
        size = len(moov)
        while True:  # an stco turned co64 grows moov, which moves the data further: until the size settles
            new = box("moov", _shifted(moov, mh, ms, size))
            if len(new) == size:
                break
            size = len(new)
        # move [at, moov_at) forward by len(new), last block first so that nothing is overwritten before it is read
        end = moov_at
        while end > at:
            start = max(at, end - block)
            f.seek(start)
            chunk = f.read(end - start)
            f.seek(start + len(new))
            f.write(chunk)
            end = start
        f.seek(at)
        f.write(new)
        f.truncate(moov_at + len(new))
