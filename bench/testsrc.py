"""Generated clips for the benchmarks: FFmpeg's moving ``testsrc2`` pattern with a 440 Hz tone (AAC), libx264 crf 18."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_clip(path: Path, frames: int, size: tuple[int, int], *, fps: int = 25, hue: float = 0.0, shots: int = 1) -> Path:
    """``frames`` frames of ``size`` (w, h) at ``fps``; ``hue`` (degrees) turns the pattern's colours, so clips differ.
    ``shots`` > 1: cut into that many shots of equal length, every other one's colours turned and paler (``shot_starts``: the cuts
    ``shots.detect_cuts`` finds in it)."""
    import imageio_ffmpeg

    w, h = size
    starts = [*shot_starts(frames, shots), frames]
    odd = "+".join(f"between(n,{starts[k]},{starts[k + 1] - 1})" for k in range(1, shots, 2))
    video = f"testsrc2=size={w}x{h}:rate={fps}" + (f",hue=h={hue:g}" if hue else "") + (f",hue=h=90:s=0.3:enable='{odd}'" if odd else "")
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", video,
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-frames:v", str(frames), "-t", f"{frames / fps:.3f}",
        "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return path


def shot_starts(frames: int, shots: int) -> list[int]:
    """The first frame of each of ``shots`` equal shots of a clip of ``frames`` frames."""
    return [frames * k // shots for k in range(shots)]
