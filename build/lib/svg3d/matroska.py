"""Finishing an mkv FFmpeg wrote: the Spherical Video V2 ``Projection`` element that VR180 needs.

FFmpeg's Matroska muxer writes ``Projection`` only from a stream's spherical side data, which PyAV 16 cannot
attach to an output stream (as for mp4: ``isobmff``). So ``add_projection`` inserts it into the video
track's ``Video`` element of the finished file, as google/spatial-media ``docs/spherical-video-v2-rfc.md``
("Matroska") defines it::

    Video/Projection (0x7670)
        ProjectionType (0x7671)     uint: 1 = equirectangular
        ProjectionPrivate (0x7672)  binary: the body of an ISO-BMFF ``equi`` box (version/flags, then the
                                    bounds top, bottom, left, right in 0.32 fixed point)
        (ProjectionPoseYaw/Pitch/Roll left out: their default, 0, is straight ahead)

Nothing after ``Tracks`` moves: FFmpeg reserves a ``Void`` element after the ``SeekHead``, which shrinks by
what ``Tracks`` grows; the ``SeekHead`` positions of the elements between them move back by as much, and the
``CRC-32`` elements of the masters that change are computed again. Clusters and ``Cues`` stay byte for byte.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

SEGMENT, SEEKHEAD, SEEK, SEEK_ID, SEEK_POSITION = 0x18538067, 0x114D9B74, 0x4DBB, 0x53AB, 0x53AC
TRACKS, TRACK_ENTRY, TRACK_TYPE, VIDEO, CLUSTER = 0x1654AE6B, 0xAE, 0x83, 0xE0, 0x1F43B675
VOID, CRC32 = 0xEC, 0xBF
PROJECTION, PROJECTION_TYPE, PROJECTION_PRIVATE = 0x7670, 0x7671, 0x7672
EQUIRECTANGULAR = 1  # ProjectionType
_HEAD = 1 << 16  # bytes read to find the elements before the first cluster (FFmpeg's header is < 1 KiB)


def _element_id(data: bytes, off: int) -> tuple[int, int]:
    """(id with its marker bits, length) of the EBML element id at ``off``."""
    first = data[off]
    n = 1
    while n <= 4 and not first & (0x80 >> (n - 1)):
        n += 1
    if n > 4:
        raise ValueError(f"corrupt EBML id at byte {off}")
    return int.from_bytes(data[off : off + n], "big"), n


def _vint(data: bytes, off: int) -> tuple[int, int]:
    """(value, length) of the EBML variable-size integer at ``off``."""
    first = data[off]
    n = 1
    while n <= 8 and not first & (0x80 >> (n - 1)):
        n += 1
    if n > 8:
        raise ValueError(f"corrupt EBML size at byte {off}")
    value = first & ((0x80 >> (n - 1)) - 1)
    for k in range(1, n):
        value = (value << 8) | data[off + k]
    return value, n


def _size(value: int, length: int = 1) -> bytes:
    """``value`` as an EBML size of at least ``length`` bytes (all-ones is reserved for "unknown")."""
    n = max(1, length)
    while value >= (1 << (7 * n)) - 1:
        n += 1
    return ((1 << (7 * n)) | value).to_bytes(n, "big")


def _id_bytes(element: int) -> bytes:
    return element.to_bytes((element.bit_length() + 7) // 8, "big")


def element(element_id: int, payload: bytes, size_length: int = 1) -> bytes:
    return _id_bytes(element_id) + _size(len(payload), size_length) + payload


def _children(data: bytes, start: int, end: int, *, partial: bool = False):
    """(id, offset, header length, payload length, size length) of the elements in ``data[start:end]``; with
    ``partial`` (``data`` is the head of a file), the last may run past ``end``."""
    off = start
    while off < end:
        eid, n1 = _element_id(data, off)
        size, n2 = _vint(data, off + n1)
        if off + n1 + n2 + size > end:
            if not partial:
                raise ValueError(f"corrupt EBML element {eid:#x} at byte {off}")
            yield eid, off, n1 + n2, size, n2
            return
        yield eid, off, n1 + n2, size, n2
        off += n1 + n2 + size


def _master(element_id: int, children: list[bytes], size_length: int) -> bytes:
    """A master element of ``children``; a leading CRC-32 child is computed again over the others (EBML: IEEE CRC-32
    of the master's data after the CRC element, little-endian)."""
    if children and children[0][:1] == _id_bytes(CRC32):
        rest = b"".join(children[1:])
        children = [element(CRC32, struct.pack("<I", zlib.crc32(rest))), rest]
    return element(element_id, b"".join(children), size_length)


def projection_equirect(bounds: tuple[int, int, int, int]) -> bytes:
    """The ``Projection`` element of an equirectangular frame cropped by ``bounds`` (top, bottom, left, right; 0.32)."""
    private = struct.pack(">IIIII", 0, *bounds)  # the equi box's body: FullBox version 0 and flags, then the bounds
    return element(PROJECTION, element(PROJECTION_TYPE, bytes([EQUIRECTANGULAR])) + element(PROJECTION_PRIVATE, private))


def _with_projection(data: bytes, off: int, header: int, size: int, size_length: int, extra: bytes) -> bytes:
    """The ``Tracks`` element at ``off`` with ``extra`` appended to its first video track's ``Video`` element."""
    children, done = [], False
    for eid, o, h, s, n in _children(data, off + header, off + header + size):
        body = data[o : o + h + s]
        if eid == TRACK_ENTRY and not done:
            kids = list(_children(data, o + h, o + h + s))
            if any(k == TRACK_TYPE and data[ko + kh : ko + kh + ks] == b"\x01" for k, ko, kh, ks, _ in kids):
                parts = []
                for k, ko, kh, ks, kn in kids:
                    part = data[ko : ko + kh + ks]
                    if k == VIDEO:
                        part = _master(VIDEO, [data[ko + kh : ko + kh + ks], extra], kn)
                        done = True
                    parts.append(part)
                body = _master(TRACK_ENTRY, parts, n)
        children.append(body)
    if not done:
        raise ValueError("no video track with a Video element")
    return _master(TRACKS, children, size_length)


def add_projection(path: str | os.PathLike, projection: bytes) -> None:
    """Insert ``projection`` (``projection_equirect``) into the video track of the mkv FFmpeg wrote at ``path``, in place.

    ``ValueError`` if the file is not laid out as FFmpeg writes it (a ``Void`` after the ``SeekHead`` large
    enough, before ``Tracks``).
    """
    path = Path(path)
    with open(path, "r+b") as f:
        head = f.read(_HEAD)
        try:
            seg = None
            off = 0
            while off < len(head):
                eid, n1 = _element_id(head, off)
                size, n2 = _vint(head, off + n1)
                if eid == SEGMENT:
                    seg = off + n1 + n2
                    break
                off += n1 + n2 + size
            if seg is None:
                raise ValueError("no Segment")
            found: dict[int, tuple[int, int, int, int]] = {}
            off = seg
            while off < len(head):
                eid, n1 = _element_id(head, off)
                size, n2 = _vint(head, off + n1)
                if eid == CLUSTER:
                    break
                if off + n1 + n2 + size > len(head):
                    raise ValueError(f"element {eid:#x} runs past the first {_HEAD} bytes")
                found.setdefault(eid, (off, n1 + n2, size, n2))
                off += n1 + n2 + size
            if SEEKHEAD not in found or VOID not in found or TRACKS not in found:
                raise ValueError("no SeekHead, Void and Tracks before the first cluster")
            void_at, void_header, void_size, _ = found[VOID]
            tracks_at, tracks_header, tracks_size, tracks_n = found[TRACKS]
            if not found[SEEKHEAD][0] < void_at < tracks_at:
                raise ValueError("the Void is not between the SeekHead and Tracks")
            tracks = _with_projection(head, tracks_at, tracks_header, tracks_size, tracks_n, projection)
            grow = len(tracks) - (tracks_header + tracks_size)
            void_total = void_header + void_size - grow
            if void_total < 2:
                raise ValueError(f"the Void holds {void_header + void_size} bytes, {grow} are needed")
            void = _void(void_total)
            moved = head[void_at + void_header + void_size : tracks_at]  # Info (and whatever FFmpeg put there)
            # SeekHead: the elements that moved back by `grow` (positions are relative to the Segment's data)
            sh_at, sh_header, sh_size, sh_n = found[SEEKHEAD]
            lo, hi = void_at + void_header + void_size - seg, tracks_at + tracks_header + tracks_size - seg
            seeks = []
            for eid, o, h, s, _ in _children(head, sh_at + sh_header, sh_at + sh_header + sh_size):
                body = bytearray(head[o : o + h + s])
                if eid == SEEK:
                    for k, ko, kh, ks, _ in _children(head, o + h, o + h + s):
                        if k == SEEK_POSITION:
                            pos = int.from_bytes(head[ko + kh : ko + kh + ks], "big")
                            if lo <= pos < hi:
                                body[ko - o + kh : ko - o + kh + ks] = (pos - grow).to_bytes(ks, "big")
                seeks.append(bytes(body))
            seekhead = _master(SEEKHEAD, seeks, sh_n)
            if len(seekhead) != sh_header + sh_size:
                raise ValueError("the SeekHead changed size")
        except (ValueError, IndexError, StopIteration) as e:
            raise ValueError(f"{path}: not a Matroska file laid out as FFmpeg writes it ({e})") from None
        f.seek(sh_at)
        f.write(seekhead)
        f.seek(void_at)
        f.write(void + moved + tracks)


def _void(total: int) -> bytes:
    """A ``Void`` element of exactly ``total`` bytes (>= 2)."""
    for n in range(1, 9):
        payload = total - 1 - n
        if 0 <= payload < (1 << (7 * n)) - 1:
            return bytes([VOID]) + ((1 << (7 * n)) | payload).to_bytes(n, "big") + bytes(payload)
    raise ValueError(f"no Void of {total} bytes")


def projection_of(path: str | os.PathLike) -> bytes | None:
    """The ``Projection`` element of the first video track of the mkv at ``path``, whole, or None (to carry it to
    another file: ``join``)."""
    with open(path, "rb") as f:
        head = f.read(_HEAD)

    def find(start: int, end: int, path_ids: tuple[int, ...]) -> bytes | None:
        for eid, o, h, s, _ in _children(head, start, min(end, len(head)), partial=True):
            if eid == CLUSTER:
                return None
            if eid == path_ids[0]:
                if len(path_ids) == 1:
                    return head[o : o + h + s]
                if eid == TRACK_ENTRY and not any(k == TRACK_TYPE and head[ko + kh : ko + kh + ks] == b"\x01"
                                                  for k, ko, kh, ks, _ in _children(head, o + h, o + h + s)):  # fmt: skip
                    continue
                found = find(o + h, o + h + s, path_ids[1:])
                if found is not None:
                    return found
        return None

    try:
        return find(0, len(head), (SEGMENT, TRACKS, TRACK_ENTRY, VIDEO, PROJECTION))
    except (ValueError, IndexError):
        return None
