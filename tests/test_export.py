"""Stereo exports: layouts, anaglyph, grid, depth video, names, files with fps and audio."""

from __future__ import annotations

import numpy as np
import pytest

from svg3d import export, io
from svg3d.checks import InputError
from svg3d.demo import write_tone
from tests.media import audio_seconds, pcm_video, probe


def eyes(t: int = 3, h: int = 10, w: int = 14) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8), rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_full_layouts_put_each_eye_in_its_place():
    left, right = eyes()
    sbs = export.side_by_side(left, right)
    assert sbs.shape == (3, 10, 28, 3)
    assert np.array_equal(sbs[:, :, :14], left) and np.array_equal(sbs[:, :, 14:], right)
    tb = export.top_bottom(left, right)
    assert tb.shape == (3, 20, 14, 3)
    assert np.array_equal(tb[:, :10], left) and np.array_equal(tb[:, 10:], right)


def test_half_layouts_squeeze_each_eye():
    left = np.zeros((2, 10, 14, 3), np.uint8)
    right = np.full((2, 10, 14, 3), 200, np.uint8)
    hsbs = export.side_by_side(left, right, half=True)
    assert hsbs.shape == (2, 10, 14, 3)
    assert (hsbs[:, :, :7] == 0).all() and (hsbs[:, :, 7:] == 200).all()
    htb = export.top_bottom(left, right, half=True)
    assert htb.shape == (2, 10, 14, 3)
    assert (htb[:, :5] == 0).all() and (htb[:, 5:] == 200).all()


def test_dubois_anaglyph_colours():
    """Grey stays grey (Dubois' rows sum to ~1); the left eye goes to red, the right eye to cyan."""
    white = np.full((1, 2, 2, 3), 255, np.uint8)
    black = np.zeros_like(white)
    grey = np.full_like(white, 128)
    assert np.abs(export.anaglyph(grey, grey).astype(int) - 128).max() <= 1
    assert np.abs(export.anaglyph(white, white).astype(int) - 255).max() <= 1
    red = export.anaglyph(white, black)[0, 0, 0]
    cyan = export.anaglyph(black, white)[0, 0, 0]
    assert red[0] > 200 and red[1] == 0 and red[2] == 0, red
    assert cyan[0] == 0 and cyan[1] > 200 and cyan[2] > 200, cyan


def test_grid_places_views_row_major():
    views = np.stack([np.full((2, 6, 8, 3), 10 * (v + 1), np.uint8) for v in range(5)])  # V T H W 3
    g = export.grid(views)
    assert g.shape == (2, 12, 24, 3)  # 3 columns x 2 rows
    assert (g[:, :6, 8:16] == 20).all() and (g[:, 6:, :8] == 40).all() and (g[:, 6:, 16:] == 0).all()


def test_grid_scales_wide_grids_down():
    views = np.zeros((4, 1, 540, 1280, 3), np.uint8)
    g = export.grid(views)
    assert g.shape[2] <= export.GRID_MAX_WIDTH and g.shape[1] % 2 == 0 and g.shape[2] % 2 == 0


def test_depth_video_is_normalised_over_the_clip():
    """A frame that is far everywhere stays dark: brightness is not renormalised per frame."""
    disparity = np.stack([np.full((4, 4), 0.1), np.full((4, 4), 1.0), np.linspace(0.1, 1.0, 16).reshape(4, 4)]).astype(np.float32)
    video = export.depth_video(disparity)
    assert video.shape == (3, 4, 4, 3) and video.dtype == np.uint8
    assert video[0].sum() < video[1].sum() and video[0].max() < 30
    assert export.depth_video(np.ones((2, 3, 3), np.float32)).shape == (2, 3, 3, 3)  # constant: no division by zero


def test_parse_exports():
    assert export.parse_exports("sbs, anaglyph,sbs") == ("sbs", "anaglyph")
    assert export.parse_exports("all") == tuple(export.EXPORTS)
    with pytest.raises(InputError, match="unknown export stereo.*choose from"):
        export.parse_exports("sbs,stereo")
    with pytest.raises(InputError, match="none given"):
        export.parse_exports(" , ")


def test_write_exports_sizes_frames_fps_audio_and_names(tmp_path):
    t, h, w, fps = 6, 32, 48, 12.0
    left, right = eyes(t, h, w)
    tone = write_tone(tmp_path / "tone.m4a", t / fps)
    views = np.stack([left, right])
    disparity = np.random.default_rng(1).random((t, h, w)).astype(np.float32)
    written = export.write_exports(
        tmp_path / "out", "clip", tuple(export.EXPORTS), left=left, right=right, fps=fps, views=views, disparity=disparity, audio_from=tone
    )
    sizes = {"sbs": (2 * w, h), "hsbs": (w, h), "tb": (w, 2 * h), "htb": (w, h), "anaglyph": (w, h), "left": (w, h), "right": (w, h), "grid": (2 * w, h), "depth": (w, h)}
    audio = audio_seconds(tone)
    for name, size in sizes.items():
        p = probe(written[name])
        assert written[name].name == f"clip{export.EXPORTS[name].suffix}.mp4"
        assert (p.width, p.height) == size, name
        assert p.frames == t and p.fps == pytest.approx(fps) and p.codec == "h264" and p.pix_fmt == "yuv420p", (name, p)
        assert p.audio_seconds == pytest.approx(audio, abs=1e-3), name
    for tag in ("_SBS_LR", "_HSBS_LR", "_TB", "_HTB", "_anaglyph"):
        assert any(tag in p.name for p in written.values())
    preview = io.read_image(written["preview"])
    assert np.array_equal(preview, np.concatenate([left[0], right[0]], axis=1))


def test_audio_track_copies_or_reencodes_the_clip_span(tmp_path):
    tone = write_tone(tmp_path / "tone.m4a", 3.0)
    assert audio_seconds(export.audio_track(tone, tmp_path / "all.m4a")) == pytest.approx(audio_seconds(tone), abs=1e-3)
    cut = export.audio_track(tone, tmp_path / "cut.m4a", start=1.0, duration=1.0)
    assert audio_seconds(cut) == pytest.approx(1.0, abs=0.05)
    # PCM (cameras, .mov) cannot be copied into mp4: re-encoded to AAC, cut to the sample
    pcm = pcm_video(tmp_path / "cam.mkv", np.zeros((16, 16, 32, 3), np.uint8), 8.0)
    full = export.audio_track(pcm, tmp_path / "pcm.m4a")
    assert codec_of(full) == "aac" and audio_seconds(full) == pytest.approx(2.0, abs=0.05)
    part = export.audio_track(pcm, tmp_path / "pcm_cut.m4a", start=0.5, duration=1.0)
    assert audio_seconds(part) == pytest.approx(1.0, abs=0.05)
    # write_video copies audio as is: PCM is refused up front, naming the file, and nothing is written
    with pytest.raises(ValueError, match=r"cam\.mkv: pcm_s16le audio cannot be copied into mp4"):
        io.write_video(tmp_path / "with_pcm.mp4", np.zeros((2, 8, 8, 3), np.uint8), 8.0, audio_from=pcm)
    assert not (tmp_path / "with_pcm.mp4").exists()
    io.write_video(tmp_path / "with_aac.mp4", np.zeros((2, 8, 8, 3), np.uint8), 8.0, audio_from=full)
    assert codec_of(tmp_path / "with_aac.mp4") == "aac"
    video = tmp_path / "silent.mp4"
    io.write_video(video, np.zeros((2, 8, 8, 3), np.uint8), 8.0)
    assert export.audio_track(video, tmp_path / "none.m4a") is None


def codec_of(path) -> str:
    import av

    with av.open(str(path)) as c:
        return c.streams.audio[0].codec_context.name
