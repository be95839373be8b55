"""Clip, image, depth and video I/O: round trips, atomic writes, and one clear error per bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from svg3d import io
from svg3d.checks import InputError
from svg3d.source import open_source, read_clip


def write_frames(folder: Path, count: int, h: int = 16, w: int = 24, suffix: str = ".png") -> np.ndarray:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (count, h, w, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        io.write_image(folder / f"{i:05d}{suffix}", f)
    return frames


def test_clip_folder_round_trip_and_seed_layout(tmp_path):
    frames = write_frames(tmp_path / "clip" / "images", 5)
    clip = read_clip(tmp_path / "clip")  # the seed layout: <clip>/images/
    assert np.array_equal(clip.frames, frames)
    assert clip.names == ("00000", "00001", "00002", "00003", "00004")
    assert clip.fps == io.DEFAULT_FPS and not clip.has_audio
    part = read_clip(tmp_path / "clip" / "images", start=1, max_frames=3)
    assert np.array_equal(part.frames, frames[1:4]) and part.names[0] == "00001"


def test_video_round_trip_keeps_fps_and_frames(tmp_path):
    # smooth content so that H.264 at crf 18 stays close
    base = np.linspace(0, 255, 32 * 48 * 3).reshape(32, 48, 3)
    frames = np.stack([np.roll(base, 2 * t, axis=1) for t in range(10)]).astype(np.uint8)
    io.write_video(tmp_path / "v.mp4", frames, 12.5)
    clip = read_clip(tmp_path / "v.mp4")
    assert clip.frames.shape == frames.shape and clip.fps == pytest.approx(12.5)
    assert np.abs(clip.frames.astype(int) - frames).mean() < 3
    assert not clip.has_audio


def test_threaded_decoding_gives_the_same_frames(tmp_path):
    # FFmpeg's frame threads decode several frames at once and hand them back in order: the frames of a clip with
    # B-frames (libx264's defaults) are those of one thread, bit for bit, whole and from the middle
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (36, 52, 3)).astype(np.float64)
    frames = np.stack([np.roll(base, (t, 2 * t), axis=(0, 1)) + 3 * t for t in range(24)]).clip(0, 255).astype(np.uint8)
    io.write_video(tmp_path / "v.mp4", frames, 24.0)
    one = open_source(tmp_path / "v.mp4", threads=1)
    for threads in (0, 2, 4):
        source = open_source(tmp_path / "v.mp4", threads=threads)
        assert source.threads == threads
        assert np.array_equal(source.frames(0, 24), one.frames(0, 24))
        middle = open_source(tmp_path / "v.mp4", start=7, threads=threads).frames(0, 10)
        assert np.array_equal(middle, one.frames(7, 17))


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_video_with_a_display_rotation_is_read_upright_as_ffmpeg_shows_it(tmp_path, degrees):
    import subprocess

    import imageio_ffmpeg

    frames = np.zeros((3, 32, 48, 3), np.uint8)
    frames[:, :16, :24] = 255  # the top-left quadrant, so every turn and mirror looks different
    frames[:, 16:, 24:, 0] = 200
    io.write_video(tmp_path / "stored.mp4", frames, 8)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()  # a phone's portrait video: landscape frames, turned for display
    rotated = tmp_path / "phone.mp4"
    subprocess.run(
        [ffmpeg, "-loglevel", "error", "-display_rotation", str(degrees), "-i", str(tmp_path / "stored.mp4"), "-c", "copy", str(rotated)],
        check=True,
    )
    shown = subprocess.run(  # what FFmpeg (and players) display: autorotated frames
        [ffmpeg, "-loglevel", "error", "-i", str(rotated), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    clip = read_clip(rotated)
    h, w = (48, 32) if degrees % 180 else (32, 48)
    assert clip.frames.shape == (3, h, w, 3)
    # (FFmpeg upsamples the 4:2:0 chroma with another filter than ours: they differ at the sharp colour edges only)
    diff = np.abs(clip.frames.astype(int) - np.frombuffer(shown, np.uint8).reshape(3, h, w, 3))
    assert diff.mean() < 1.0 and np.percentile(diff, 95) <= 2
    assert np.abs(clip.frames[0].astype(int) - np.rot90(frames[0], degrees // 90)).mean() < 3


def test_odd_sized_video_is_padded_to_even(tmp_path):
    frames = np.full((3, 15, 21, 3), 128, np.uint8)
    io.write_video(tmp_path / "odd.mp4", frames, 8)
    assert read_clip(tmp_path / "odd.mp4").frames.shape == (3, 16, 22, 3)


@pytest.mark.parametrize("suffix", [".npy", ".pfm"])
def test_float_depth_round_trip_is_exact(tmp_path, suffix):
    depth = np.random.default_rng(2).random((7, 9), dtype=np.float32) + 0.1
    io.write_depth(tmp_path / f"d{suffix}", depth)
    assert np.array_equal(io.read_depth(tmp_path / f"d{suffix}"), depth)


def test_png_depth_round_trip_is_16_bit(tmp_path):
    depth = np.random.default_rng(3).random((7, 9), dtype=np.float32) + 0.01
    io.write_depth(tmp_path / "d.png", depth, png_scale=60000)
    back = io.read_depth(tmp_path / "d.png")
    assert np.abs(back / 60000 - depth).max() <= 0.5 / 60000 + 1e-7
    with pytest.raises(ValueError, match="16-bit"):
        io.write_depth(tmp_path / "big.png", depth, png_scale=1e6)
    assert not (tmp_path / "big.png").exists()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


# ---- bad input: one clear error each, naming the file --------------------------------------------


def test_empty_folder(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(InputError, match="no .jpg or .png frames"):
        read_clip(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        read_clip(tmp_path / "nope")


def test_corrupt_frame(tmp_path):
    write_frames(tmp_path, 3)
    (tmp_path / "00001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(InputError, match=r"00001\.png: cannot decode image"):
        read_clip(tmp_path)


def test_empty_frame_file(tmp_path):
    write_frames(tmp_path, 2)
    (tmp_path / "00002.jpg").write_bytes(b"")
    with pytest.raises(InputError, match=r"00002\.jpg: cannot decode image"):
        read_clip(tmp_path)


def test_frames_of_different_sizes(tmp_path):
    write_frames(tmp_path, 2)
    io.write_image(tmp_path / "00002.png", np.zeros((16, 25, 3), np.uint8))
    with pytest.raises(InputError, match=r"00002\.png: frame size 25x16 differs"):
        read_clip(tmp_path)


def test_not_a_video(tmp_path):
    (tmp_path / "x.mp4").write_text("this is not a video")
    with pytest.raises(InputError, match=r"x\.mp4: cannot read as a video"):
        read_clip(tmp_path / "x.mp4")


def test_too_few_frames(tmp_path):
    write_frames(tmp_path, 3)
    with pytest.raises(InputError, match="num_frames 5: the clip has 3 frames, so from frame 0 at most 3") as e:
        read_clip(tmp_path, max_frames=5)
    assert "--num-frames 5" in e.value.flag_message()  # a CLI names its flag


def write_depth_folder(folder: Path, count: int, h: int = 16, w: int = 24) -> None:
    for i in range(count):
        io.write_depth(folder / f"{i:05d}_depth.npy", np.full((h, w), 1.0 + i, np.float32))


def test_depth_count_differs_from_frame_count(tmp_path):
    write_depth_folder(tmp_path, 3)
    with pytest.raises(InputError, match="3 depth maps for 5 frames"):
        io.read_depths(tmp_path, count=5)


def test_depth_size_differs_from_frame_size(tmp_path):
    write_depth_folder(tmp_path, 2)
    with pytest.raises(InputError, match=r"00000_depth\.npy: depth size 24x16 differs from the frame size 20x10"):
        io.read_depths(tmp_path, count=2, size=(10, 20))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_depth(tmp_path, bad):
    write_depth_folder(tmp_path, 2)
    d = np.ones((16, 24), np.float32)
    d[3, 4] = bad
    np.save(tmp_path / "00001_depth.npy", d)
    with pytest.raises(InputError, match=r"00001_depth\.npy: depth has 1 NaN/inf values"):
        io.read_depths(tmp_path)


def test_zero_depth(tmp_path):
    write_depth_folder(tmp_path, 2)
    np.save(tmp_path / "00000_depth.npy", np.zeros((16, 24), np.float32))
    with pytest.raises(InputError, match=r"00000_depth\.npy: depth is zero"):
        io.read_depths(tmp_path)


def test_foreign_file_in_depth_folder(tmp_path):
    write_depth_folder(tmp_path, 2)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match=r"notes\.txt: not a depth map"):
        io.read_depths(tmp_path)


def test_corrupt_depth(tmp_path):
    (tmp_path / "00000_depth.npy").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"00000_depth\.npy: cannot read depth map"):
        io.read_depth(tmp_path / "00000_depth.npy")


def test_multichannel_depth(tmp_path):
    np.save(tmp_path / "d.npy", np.ones((4, 4, 3), np.float32))
    with pytest.raises(InputError, match="one channel"):
        io.read_depth(tmp_path / "d.npy")
