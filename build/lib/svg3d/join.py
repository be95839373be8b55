"""The exports of a long video from its segments' exports, converted apart: joined without re-encoding.

``batch`` splits a long video at scene cuts into segments that convert independently (in parallel, on
several workers); every segment's convert writes the same exports (names, settings, frame size) for
its own frames. ``join_exports`` makes the exports of the whole span from them:

- videos: the segments' packets, remuxed one after the other, each segment's timestamps shifted by the
  frames before it. No re-encoding, so no second generation of loss and no time: this needs every
  segment to start with a keyframe (an encoder's first frame always is) and the segments' streams to
  agree on codec, size, pixel format, time base and parameter sets (``extradata``), which is checked.
  The audio (every track) is the original's over the whole span (``export.audio_track``, given by the caller), not
  the segments' own: each of those is cut to whole packets at its ends, which would click at every join.
  Each segment's frames are numbered from its first (Matroska starts every stream late by the audio's AAC
  priming, and stores no decode timestamps for the frames before the first B-frame's: they are counted back
  from the first one it has). The stereo metadata is written again (mp4 ``st3d``/``sv3d`` boxes copied from the first
  segment, Matroska ``StereoMode`` and ``Projection``): it lives in the container, not in the packets; an x264
  frame-packing SEI is in the packets and comes along. mp4s get their index first, as the exports do.
- frame folders (``eyes_png``, ``views_png``, ``depth_png``): every segment's files hard-linked (copied
  across file systems) under their frame number in the whole span.
- the preview: the first segment's (the first stereo pair of the whole).

Every joined video is checked after it is written: exactly the sum of the segments' frame counts,
timestamps of consecutive frames from 0 with no gap or repeat, decode timestamps increasing, the first
packet a keyframe. Every output is written as a part (``parts``) and all of them are renamed into place
together once every one is complete; on any error every part is removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from . import report
from .config import ExportSettings
from .encode import CONTAINERS, StereoTag
from .parts import Part
from .stages.export import EXPORTS, FRAME_NAME

log = logging.getLogger(__name__)

PREVIEW = "preview"  # the manifest key of the preview image (``ExportWriter.manifest``)


class JoinError(RuntimeError):
    """Segments that cannot be joined without re-encoding, or a joined file that fails its checks."""


@dataclass(frozen=True)
class StreamFacts:
    """What must agree between segments for their packets to go into one stream."""

    codec: str
    width: int
    height: int
    pix_fmt: str | None
    time_base: Fraction
    extradata: bytes


def _facts(stream) -> StreamFacts:
    ctx = stream.codec_context
    return StreamFacts(ctx.name, ctx.width, ctx.height, ctx.pix_fmt, Fraction(stream.time_base), bytes(ctx.extradata or b""))


def _frame_index(pts: int, time_base: Fraction, fps: Fraction) -> int:
    """The frame number a timestamp stands for (Matroska's millisecond timestamps are rounded: so is this)."""
    return round(pts * time_base * fps)


def join_videos(
    segments: Sequence[Path],
    counts: Sequence[int],
    dest: Path,
    *,
    fps: Fraction,
    container: str,
    audio: Path | None = None,
    stereo: StereoTag | None = None,
) -> None:
    """Remux the video packets of ``segments`` (in order; ``counts[k]`` frames each) into ``dest`` (module docstring).

    ``container``: ``EncoderSettings.container`` (``mp4``/``mkv``); ``audio``: a file whose audio tracks are all
    copied in over the whole span, interleaved with the video; ``stereo``: the metadata to write (the spherical
    projection, which depends on the clip's field of view, is carried over from the first segment).
    Raises ``JoinError`` when the segments do not fit together or the result fails its checks.
    """
    import av

    from . import isobmff, matroska

    if len(segments) != len(counts) or not segments:
        raise ValueError(f"{len(segments)} segment files for {len(counts)} frame counts")
    fps = Fraction(fps)
    with av.open(str(segments[0])) as first:
        reference = _facts(first.streams.video[0])
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(av.open(str(dest), mode="w", format=CONTAINERS[container]))
        with av.open(str(segments[0])) as first:
            template = first.streams.video[0]
            video_out = out.add_stream_from_template(template, opaque=True)  # the codec as demuxed: no encoder of it needed
            if container == "mp4":
                video_out.codec_tag = template.codec_tag  # the template's tag is reset for remuxing: HEVC would become hev1, not hvc1
        if stereo is not None and container == "mkv":
            video_out.metadata["stereo_mode"] = stereo.matroska()
        pending = packets = None
        tracks: dict = {}  # audio stream index in the audio file -> its output stream
        if audio is not None:
            audio_src = stack.enter_context(av.open(str(audio)))
            for track in audio_src.streams.audio:
                tracks[track.index] = out.add_stream_from_template(track)
                for key in ("language", "title"):
                    if key in track.metadata:
                        tracks[track.index].metadata[key] = track.metadata[key]
            packets = (p for p in audio_src.demux(*audio_src.streams.audio) if p.dts is not None)
            pending = next(packets, None)
        before = 0  # frames of the segments already written
        for path, count in zip(segments, counts, strict=True):
            with av.open(str(path)) as src:
                stream = src.streams.video[0]
                facts = _facts(stream)
                if facts != reference:
                    diff = [f for f in reference.__dataclass_fields__ if getattr(facts, f) != getattr(reference, f)]
                    raise JoinError(f"{path}: its video stream differs from {segments[0].name}'s in {', '.join(diff)}; cannot join without re-encoding")
                tb = facts.time_base
                # A segment's first frame (an IDR: shown first) may not be at 0: Matroska shifts every stream by the
                # AAC priming of the audio. Frames are renumbered from it, then moved to their place in the whole.
                shift = round(before / fps / tb)  # whole ticks: exact where the time base divides the frame duration (mp4)
                frame_ticks = 1 / (fps * tb)
                base, last_dts = None, 0
                seen: list[int] = []
                waiting: list = []  # packets before the first with a decode timestamp (Matroska stores none for them)
                for packet in src.demux(stream):
                    if not packet.size or packet.pts is None:
                        continue  # the demuxer's empty flush packet
                    if base is None:
                        if not packet.is_keyframe:
                            raise JoinError(f"{path}: does not start with a keyframe; cannot join without re-encoding")
                        base = packet.pts
                    seen.append(_frame_index(packet.pts - base, tb, fps))
                    packet.pts += shift - base
                    if packet.dts is None and not waiting and len(seen) > 1:
                        packet.dts = last_dts + 1  # a gap in the middle: just after the one before
                    elif packet.dts is None:
                        waiting.append(packet)
                        continue
                    else:
                        packet.dts += shift - base
                    for i, early in enumerate(waiting):  # the reorder delay, counted back from the first known one
                        early.dts = packet.dts - round((len(waiting) - i) * frame_ticks)
                    last_dts = packet.dts
                    for p in (*waiting, packet):
                        pending = _mux_until(out, p, video_out, tb, pending, packets, tracks)
                    waiting = []
                for p in waiting:  # no decode timestamps at all: in presentation order (no reordering)
                    p.dts = p.pts
                    pending = _mux_until(out, p, video_out, tb, pending, packets, tracks)
                if sorted(seen) != list(range(count)):
                    raise JoinError(f"{path}: {len(seen)} frames with timestamps of frames {_span(seen)}, expected 0..{count - 1}")
                before += count
        while pending is not None:
            pending.stream = tracks[pending.stream.index]
            out.mux(pending)
            pending = next(packets, None)
    if container == "mp4":  # the segment's stereo and spherical boxes as they are, and the index first
        isobmff.finish_mp4(dest, isobmff.sample_entry_boxes(segments[0]))
    elif stereo is not None and (projection := matroska.projection_of(segments[0])) is not None:
        matroska.add_projection(dest, projection)
    check_video(dest, before, fps=fps, audio=audio is not None)


def _mux_until(out, packet, video_out, tb: Fraction, pending, packets, tracks: dict):
    """Mux the audio packets that start before ``packet`` (interleaved), then ``packet``; returns the next audio packet."""
    t = float(packet.pts * tb)
    while pending is not None and (pending.pts is None or float(pending.pts * pending.time_base) < t):
        pending.stream = tracks[pending.stream.index]
        out.mux(pending)
        pending = next(packets, None)
    packet.stream = video_out
    out.mux(packet)
    return pending


def _span(indices: Sequence[int]) -> str:
    return f"{min(indices)}..{max(indices)}" if indices else "(none)"


def check_video(path: Path, num_frames: int, *, fps: Fraction, audio: bool) -> None:
    """``JoinError`` unless ``path`` holds exactly ``num_frames`` video packets whose timestamps are frames
    ``0 .. num_frames - 1`` at ``fps`` (each once), with increasing decode timestamps and a keyframe first,
    and an audio stream exactly when ``audio``."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        tb = Fraction(stream.time_base)
        frames, last_dts, first_key, base = [], None, None, None
        for packet in c.demux(stream):
            if not packet.size or packet.pts is None:
                continue
            if first_key is None:
                first_key, base = packet.is_keyframe, packet.pts  # frames counted from the first (module docstring)
            frames.append(_frame_index(packet.pts - base, tb, Fraction(fps)))
            if packet.dts is not None:
                if last_dts is not None and packet.dts <= last_dts:
                    raise JoinError(f"{path}: decode timestamps go back at frame {len(frames) - 1}")
                last_dts = packet.dts
        has_audio = bool(c.streams.audio)
    if len(frames) != num_frames:
        raise JoinError(f"{path}: {len(frames)} frames after joining, expected {num_frames}")
    if sorted(frames) != list(range(num_frames)):
        missing = sorted(set(range(num_frames)) - set(frames))
        raise JoinError(f"{path}: timestamps are not consecutive frames (frame {missing[0] if missing else '?'} missing or repeated)")
    if not first_key:
        raise JoinError(f"{path}: the joined video does not start with a keyframe")
    if has_audio != audio:
        raise JoinError(f"{path}: {'no' if audio else 'an unexpected'} audio stream after joining")


def join_frame_folders(segments: Sequence[Path], counts: Sequence[int], dest: Path) -> None:
    """Every segment's PNG frames (``FRAME_NAME``, per sub-folder) in ``dest`` under their frame number in the whole."""
    subfolders: list[str] | None = None
    before = 0
    for path, count in zip(segments, counts, strict=True):
        subs = sorted({str(f.parent.relative_to(path)) for f in path.rglob("*.png")})
        if subfolders is None:
            subfolders = subs
            for sub in subs:
                (dest / sub).mkdir(parents=True, exist_ok=True)
        elif subs != subfolders:
            raise JoinError(f"{path}: sub-folders {subs} differ from the first segment's {subfolders}")
        for sub in subs:
            names = sorted(f.name for f in (path / sub).glob("*.png"))
            if names != [FRAME_NAME.format(frame=i) for i in range(count)]:
                raise JoinError(f"{path / sub}: {len(names)} frames, expected {FRAME_NAME.format(frame=0)} .. {FRAME_NAME.format(frame=count - 1)}")
            for i, name in enumerate(names):
                target = dest / sub / FRAME_NAME.format(frame=before + i)
                try:
                    os.link(path / sub / name, target)  # the same bytes, no copy (the segment's file is deleted later)
                except OSError:
                    shutil.copyfile(path / sub / name, target)
        before += count


def join_exports(
    segments: Sequence[dict[str, Path]],
    counts: Sequence[int],
    out_dir: Path,
    *,
    fps: Fraction,
    settings: ExportSettings,
    audio: Path | None = None,
) -> dict[str, Path]:
    """The whole span's exports in ``out_dir`` from the segments' manifests (``ExportWriter.manifest``: export
    name -> path, and ``"preview"``), in segment order, ``counts[k]`` frames each. Returns the manifest of the
    joined outputs, named as the segments' files. All are renamed into place together (module docstring)."""
    names = list(segments[0])
    for k, manifest in enumerate(segments):
        if list(manifest) != names:
            raise JoinError(f"segment {k} has exports {', '.join(manifest)}, the first has {', '.join(names)}")
    parts: dict[str, Part] = {}
    try:
        for name in names:
            if name in report.REPORT_NAMES:  # the 3D report: joined as numbers once the videos are (below)
                continue
            files = [Path(m[name]) for m in segments]
            final = out_dir / files[0].name
            if name == PREVIEW:
                part = parts[name] = Part(final)
                shutil.copyfile(files[0], part.path)
            elif EXPORTS[name].kind == "frames":
                part = parts[name] = Part(final, folder=True)
                join_frame_folders(files, counts, part.path)
            else:
                part = parts[name] = Part(final)
                join_videos(
                    files, counts, part.path, fps=fps, container=settings.encoder.container,
                    audio=audio, stereo=EXPORTS[name].stereo,
                )  # fmt: skip
            log.debug("joined %s from %d segments", final, len(files))
        written = {name: part.commit() for name, part in parts.items()}
    except BaseException:
        for part in parts.values():
            part.discard()
        raise
    if "report_json" in names:
        first = Path(segments[0]["report_json"]).name
        joined = report.join_reports([json.loads(Path(m["report_json"]).read_text()) for m in segments], list(counts))
        written |= report.write_report(out_dir, first[: -len(report.REPORT_SUFFIX + ".json")], joined)
    return written
