"""Test helpers: probe a media file, and make a small rendered clip (mp4 with audio, exact depth) or one of shots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from svg3d import io, scene
from svg3d.demo import write_tone


@dataclass(frozen=True)
class Probe:
    frames: int
    width: int
    height: int
    fps: float
    pix_fmt: str
    codec: str
    audio_seconds: float | None  # None: no audio stream


def probe(path: str | Path) -> Probe:
    """Decode every video frame (a count, not a header's claim) and measure the audio stream's span."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = sum(1 for _ in c.decode(v))
        fps = float(v.average_rate)
        ctx = v.codec_context
        return Probe(frames, ctx.width, ctx.height, fps, ctx.pix_fmt, ctx.name, audio_seconds(path))


def audio_seconds(path: str | Path) -> float | None:
    """Span of the first audio stream's packets (first start to last end), or None without audio."""
    import av

    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        a = c.streams.audio[0]
        packets = [p for p in c.demux(a) if p.pts is not None]
        return float((packets[-1].pts + packets[-1].duration - packets[0].pts) * a.time_base)


def rendered_clip(folder: Path, *, frames: int = 6, height: int = 64, width: int = 96, fps: float = 8.0, audio: bool = True, seed: int = 0):
    """Render a scene as ``folder/clip.mp4`` (with a tone when ``audio``) and ``folder/depth/`` (1/Z, metric).

    Returns (video path, depth folder, rendered frames uint8 (T, H, W, 3)).
    """
    sc = scene.make_scene(seed, num_frames=frames, height=height, width=width)
    rgb, z = scene.render(sc)
    frames_u8 = (rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()  # T 3 H W -> T H W 3
    tone = write_tone(folder / "tone.m4a", len(frames_u8) / fps) if audio else None
    video = folder / "clip.mp4"
    io.write_video(video, frames_u8, fps, audio_from=tone)
    for t, d in enumerate(z.numpy()):
        io.write_depth(folder / "depth" / f"{t:05d}.npy", (1.0 / d).astype(np.float32))
    return video, folder / "depth", frames_u8


def write_clip(folder: Path, shots: list[tuple[np.ndarray, np.ndarray]]) -> tuple[Path, Path]:
    """Lossless frames and exact inverse depth (``--depth-from``) of the shots, one after the other."""
    frames, disparity = np.concatenate([s[0] for s in shots]), np.concatenate([s[1] for s in shots])
    for t in range(len(frames)):
        io.write_image(folder / "frames" / f"{t:05d}.png", frames[t])
        io.write_depth(folder / "depth" / f"{t:05d}.npy", disparity[t].astype(np.float32))
    return folder / "frames", folder / "depth"


def pcm_video(path: Path, frames: np.ndarray, fps: float, *, rate: int = 44100) -> Path:
    """``frames`` (uint8 (T, H, W, 3)) as H.264 in Matroska with a 16-bit PCM sine (a camera-style file mp4 cannot copy)."""
    from fractions import Fraction

    import av

    seconds = len(frames) / fps
    n = round(seconds * rate)
    wave = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / rate) * 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        v.height, v.width, v.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        a = out.add_stream("pcm_s16le", rate=rate, layout="stereo")
        for f in frames:
            out.mux(v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(v.encode())
        for i in range(0, n, 1024):
            chunk = np.repeat(wave[i : i + 1024], 2)[None]  # packed stereo (1, 2 * samples)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
            out.mux(a.encode(frame))
        out.mux(a.encode())
    return path


def stage_folder(work_dir: Path, stage: str) -> Path:
    """``stage``'s folder in a work folder (its record: the same name with ``.json``); a stage kept per view count
    (``fill.stage.store_name``) is found by its one record."""
    from svg3d.stages.fill.stage import store_name

    found = sorted(work_dir.glob(f"{store_name(stage, '*')}.json"))
    assert len(found) <= 1, found
    return work_dir / (found[0].stem if found else stage)


def wait_for_chunk(proc, record: Path, timeout: float = 120.0) -> None:
    """Wait until the stage record ``record`` of the running ``proc`` has a committed chunk (or ``proc`` ends)."""
    import json
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if len(json.loads(record.read_text())["chunks"]) >= 1:
                return
        except (OSError, ValueError):  # not written yet, or caught mid-rename
            pass
        time.sleep(0.02)
