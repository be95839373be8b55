"""Exports: layouts, anaglyphs, grids and quilts, VR180, RGB-D and depth, names, metadata, the streaming writer."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import signal
import struct
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from svg3d import camera, colour, io, layouts, parts, scene
from svg3d.checks import InputError
from svg3d.colour import ColourInfo
from svg3d.demo import write_tone
from svg3d.encode import EncoderSettings
from svg3d.stages import export
from svg3d.stages.export import ExportSettings, ExportWriter
from tests.media import audio_seconds, pcm_video, probe

LOSSLESS = EncoderSettings(crf=0, pix_fmt="yuv444p")  # x264 qp 0 in 4:4:4: only the RGB <-> YUV rounding is lost
FULL = ColourInfo(range="pc")  # full range: a grey level is its own Y value, so grey round-trips exactly


def eyes(t: int = 3, h: int = 10, w: int = 14) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8), rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def rendered():
    """Five exact views of a rendered scene (left2right baselines), and the input view's disparity (1/Z)."""
    v, t, h, w = 5, 4, 32, 48
    sc = scene.make_scene(3, num_frames=t, height=h, width=w)
    rgb, z = scene.render_views(sc, camera.view_baselines(v, 0.3, "left2right"))  # a wide baseline: views differ clearly
    views = (rgb.clamp(0, 1) * 255).round().byte().permute(0, 1, 3, 4, 2).numpy()  # V T 3 H W -> V T H W 3
    return views, (1.0 / z[0]).numpy().astype(np.float32), sc.focal


def decode(path: Path) -> np.ndarray:
    """Every frame as RGB, converted with the file's own colour tags."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        info = colour.colour_of_stream(s, path)
        return np.stack([colour.decode_rgb(f, info) for f in c.decode(s)])


def mp4_boxes(path: Path) -> dict[str, bytes]:
    """Every box of an mp4 by its path ("moov/trak/.../avc1/st3d") -> payload: our own small ISO-BMFF walker."""
    data = Path(path).read_bytes()
    found: dict[str, bytes] = {}

    def walk(start: int, end: int, prefix: str) -> None:
        off = start
        while off + 8 <= end:
            size, kind = struct.unpack(">I4s", data[off : off + 8])
            header = 8
            if size == 1:
                size, header = struct.unpack(">Q", data[off + 8 : off + 16])[0], 16
            name = kind.decode("latin-1")
            path_ = f"{prefix}{name}"
            found.setdefault(path_, data[off + header : off + size])
            body = off + header
            if name in ("moov", "trak", "mdia", "minf", "stbl", "sv3d", "proj"):
                walk(body, off + size, path_ + "/")
            elif name == "stsd":
                walk(body + 8, off + size, path_ + "/")  # version/flags, entry count
            elif name in ("avc1", "hvc1", "hev1", "av01"):
                walk(body + 78, off + size, path_ + "/")  # VisualSampleEntry fields
            off += size

    walk(0, len(data), "")
    return found


def frame_side_data(path: Path) -> dict[str, bytes]:
    """FFmpeg's (PyAV's) side data of the first decoded frame: stream-level stereo3d/spherical lands there too."""
    import av

    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        return {sd.type.name: bytes(sd) for sd in frame.side_data}


def ffmpeg_says(path: Path) -> str:
    """What an independent FFmpeg (imageio-ffmpeg's static build) prints about the file."""
    import imageio_ffmpeg

    return subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr


def write_all(out: Path, settings: ExportSettings, left, right, *, chunk: int | None = None, **kw) -> dict[str, Path]:
    kw.setdefault("fps", Fraction(12))
    views = kw.pop("views", None)
    disparity = kw.pop("disparity", None)
    with ExportWriter(out, "clip", settings, size=left.shape[1:3], **kw) as w:
        n = len(left)
        step = chunk or n
        for s in range(0, n, step):
            sl = slice(s, s + step)
            w.write(left[sl], right[sl], views=views[:, sl] if views is not None else None,
                    disparity=disparity[sl] if disparity is not None else None)  # fmt: skip
    return w.manifest


# ---- layouts (pure) --------------------------------------------------------------------------------


def test_full_layouts_put_each_eye_in_its_place():
    left, right = eyes()
    sbs = layouts.side_by_side(left, right)
    assert sbs.shape == (3, 10, 28, 3)
    assert np.array_equal(sbs[:, :, :14], left) and np.array_equal(sbs[:, :, 14:], right)
    tb = layouts.top_bottom(left, right)
    assert tb.shape == (3, 20, 14, 3)
    assert np.array_equal(tb[:, :10], left) and np.array_equal(tb[:, 10:], right)
    cross = layouts.cross_eyed(left, right)
    assert np.array_equal(cross[:, :, :14], right) and np.array_equal(cross[:, :, 14:], left)


def test_half_layouts_squeeze_each_eye():
    left = np.zeros((2, 10, 14, 3), np.uint8)
    right = np.full((2, 10, 14, 3), 200, np.uint8)
    hsbs = layouts.side_by_side(left, right, half=True)
    assert hsbs.shape == (2, 10, 14, 3)
    assert (hsbs[:, :, :7] == 0).all() and (hsbs[:, :, 7:] == 200).all()
    htb = layouts.top_bottom(left, right, half=True)
    assert htb.shape == (2, 10, 14, 3)
    assert (htb[:, :5] == 0).all() and (htb[:, 5:] == 200).all()


def test_dubois_anaglyph_colours():
    """Grey stays grey (Dubois' rows sum to ~1); the left eye goes to red, the right eye to cyan."""
    white = np.full((1, 2, 2, 3), 255, np.uint8)
    black = np.zeros_like(white)
    grey = np.full_like(white, 128)
    assert np.abs(layouts.anaglyph(grey, grey).astype(int) - 128).max() <= 1
    assert np.abs(layouts.anaglyph(white, white).astype(int) - 255).max() <= 1
    red = layouts.anaglyph(white, black)[0, 0, 0]
    cyan = layouts.anaglyph(black, white)[0, 0, 0]
    assert red[0] > 200 and red[1] == 0 and red[2] == 0, red
    assert cyan[0] == 0 and cyan[1] > 200 and cyan[2] > 200, cyan


def test_dubois_anaglyphs_match_the_float64_formula():
    """Against Dubois' matrices applied in float64 linear light: float32 arithmetic and the 16-bit linear -> sRGB table
    move a value across a rounding boundary now and then (by < 0.1 level), so at most 1 level, rarely."""
    rng = np.random.default_rng(1)
    left, right = rng.integers(0, 256, (2, 1, 40, 50, 3), dtype=np.uint8)
    for kind, (ml, mr) in (("dubois", (layouts.DUBOIS_LEFT, layouts.DUBOIS_RIGHT)), ("green-magenta", (layouts.DUBOIS_GM_LEFT, layouts.DUBOIS_GM_RIGHT))):
        lin = layouts._srgb_to_linear(left / 255.0) @ ml.T + layouts._srgb_to_linear(right / 255.0) @ mr.T
        exact = np.round(layouts._linear_to_srgb(lin) * 255.0)
        diff = np.abs(layouts.anaglyph(left, right, kind).astype(int) - exact)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, kind


def test_green_magenta_and_simple_anaglyphs():
    white = np.full((1, 2, 2, 3), 255, np.uint8)
    black = np.zeros_like(white)
    grey = np.full_like(white, 128)
    # Dubois green-magenta: rows of L + R sum to 1 (grey stays grey); the left eye shows through green, the right through magenta
    assert np.abs(layouts.anaglyph(grey, grey, "green-magenta").astype(int) - 128).max() <= 1
    g = layouts.anaglyph(white, black, "green-magenta")[0, 0, 0]
    m = layouts.anaglyph(black, white, "green-magenta")[0, 0, 0]
    assert g[1] > 200 and g[0] == 0 and g[2] < 60, g
    assert m[0] > 200 and m[2] > 200 and m[1] == 0, m
    rng = np.random.default_rng(5)
    left, right = rng.integers(0, 256, (2, 1, 4, 4, 3), dtype=np.uint8)
    luma = lambda x: np.round(x.astype(np.float32) @ layouts.LUMA_601)  # noqa: E731
    colour_ = layouts.anaglyph(left, right, "colour")
    assert np.array_equal(colour_[..., 0], left[..., 0]) and np.array_equal(colour_[..., 1:], right[..., 1:])
    half = layouts.anaglyph(left, right, "half-colour")
    assert np.array_equal(half[..., 0], luma(left)) and np.array_equal(half[..., 1:], right[..., 1:])
    grey_ = layouts.anaglyph(left, right, "grey")
    assert np.array_equal(grey_[..., 0], luma(left)) and np.array_equal(grey_[..., 1], luma(right)) and np.array_equal(grey_[..., 2], luma(right))
    with pytest.raises(ValueError, match="anaglyph kind 'blue'"):
        layouts.anaglyph(left, right, "blue")


@pytest.mark.parametrize("size", [(10, 14), (9, 15)])
def test_layouts_on_torch_are_the_numpy_layouts(size):
    """The device builds (``ExportLayout.on_device``) against the numpy layouts on the same frames: the area squeeze and
    the anaglyphs are float32 sums in another order, so at most 1 level where one lands on a half (odd sides: the
    fractional area weights)."""
    import torch

    left, right = eyes(3, *size)
    lt, rt = torch.from_numpy(left), torch.from_numpy(right)
    pairs = [(layouts.side_by_side(left, right, half=half), layouts.side_by_side_torch(lt, rt, half=half)) for half in (False, True)]
    pairs += [(layouts.top_bottom(left, right, half=half), layouts.top_bottom_torch(lt, rt, half=half)) for half in (False, True)]
    pairs += [(layouts.anaglyph(left, right, kind), layouts.anaglyph_torch(lt, rt, kind)) for kind in layouts.ANAGLYPHS]
    for k, (ours, theirs) in enumerate(pairs):
        assert theirs.dtype == torch.uint8 and tuple(theirs.shape) == ours.shape, k
        diff = np.abs(theirs.numpy().astype(int) - ours)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, k
    geometry = layouts.Geometry(size, anaglyph="grey")
    with_torch = [n for n, spec in layouts.EXPORTS.items() if spec.on_device is not None]
    assert with_torch == ["sbs", "hsbs", "tb", "htb", "cross", "anaglyph", "left", "right"]
    for name in with_torch:  # each row's two builds agree
        step = layouts.Step(left[:1], right[:1], left[:1])
        built = layouts.EXPORTS[name].on_device(lt[:1], rt[:1], geometry).numpy()
        assert np.abs(built.astype(int) - layouts.EXPORTS[name].build(step, geometry)).max() <= 1, name
    with pytest.raises(ValueError, match="anaglyph kind 'blue'"):
        layouts.anaglyph_torch(lt, rt, "blue")


def test_grid_tiles_eight_views_with_no_empty_cell():
    views = np.stack([np.full((2, 6, 8, 3), 10 * (v + 1), np.uint8) for v in range(8)])  # V T H W 3
    cols, rows, ch, cw = layouts.grid_layout(8, 6, 8)
    assert cols * rows == 8 and (ch, cw) == (6, 8)
    g = layouts.grid(views)
    assert g.shape == (2, rows * 6, cols * 8, 3)
    for v in range(8):  # row-major from the top left
        r, c = divmod(v, cols)
        assert (g[:, r * 6 : (r + 1) * 6, c * 8 : (c + 1) * 8] == 10 * (v + 1)).all(), v
    # the chosen factorisation is the one closest to 16:9 (8 views of 8x6: 4 x 2 gives 32:12, 2 x 4 gives 16:24)
    assert (cols, rows) == min(((c, 8 // c) for c in (1, 2, 4, 8)), key=lambda cr: abs(math.log(cr[0] * 8 / (cr[1] * 6) / (16 / 9))))


def test_grid_of_a_prime_view_count_marks_empty_cells_visibly():
    views = np.stack([np.full((1, 6, 8, 3), 30 * (v + 1), np.uint8) for v in range(5)])
    g = layouts.grid(views)
    cols, rows, _, _ = layouts.grid_layout(5, 6, 8)
    assert (cols, rows) == (3, 2)  # 5 x 1 would be a strip 7.5 times wider than tall
    empty = g[0, 6:, 16:]
    assert len(np.unique(empty)) == 2 and not (empty == 0).any()  # a two-tone checkerboard, never a black "view"
    assert np.array_equal(layouts.grid(views, order=[4, 3, 2, 1, 0])[0, :6, :8], views[4, 0])


def test_grid_scales_wide_grids_down():
    views = np.zeros((4, 1, 540, 1280, 3), np.uint8)
    g = layouts.grid(views)
    assert g.shape[2] <= layouts.GRID_MAX_WIDTH and g.shape[1] % 2 == 0 and g.shape[2] % 2 == 0


def test_quilt_layout_and_its_looking_glass_name():
    assert layouts.quilt_layout(48, 560, 420)[:2] == (8, 6)  # the Looking Glass Portrait's 8 x 6
    assert layouts.quilt_layout(45, 100, 100)[:2] == (9, 5)
    assert layouts.quilt_layout(7, 32, 48)[:2] == (7, 1)  # a prime count: one row, no empty tile
    cols, rows, th, tw = layouts.quilt_layout(8, 1080, 1920)
    assert (cols, rows) == (4, 2) and cols * tw <= layouts.QUILT_MAX_SIDE and th % 2 == 0
    name = f"clip{layouts.quilt_suffix(8, 320, 576)}.mp4"
    # the regex Looking Glass' own software parses quilt settings with (LookingGlassUserSystem.cs)
    m = re.search(r"_qs(?P<cols>[0-9]*)x(?P<rows>[0-9]*)a(?P<aspect>[0-9]*\.?[0-9]*)", name)
    assert m and (int(m["cols"]), int(m["rows"]), float(m["aspect"])) == (4, 2, 1.8)


def test_equirect_maps_follow_the_pinhole_camera():
    h, w, f, eh, ew = 32, 48, 40.0, 100, 200
    mx, my = layouts.equirect_maps(h, w, f, eh, ew, math.pi / 2, math.pi / 2)  # the whole hemisphere ahead
    ang = (np.arange(ew) + 0.5) / ew * math.pi - math.pi / 2  # longitude of each column
    mid = eh // 2  # the row just below the horizon
    lat = math.pi / 2 - (mid + 0.5) / eh * math.pi
    inside = np.abs(mx[mid]) < 1e3
    # along a row: u = W/2 + f tan(lon) (the row's latitude tilts the ray, which scales x/z by 1 at any lat for v)
    assert np.allclose(mx[mid][inside], w / 2 + f * np.tan(ang[inside]), atol=1e-3)
    assert np.allclose(my[mid][inside], h / 2 - f * np.tan(lat) / np.cos(ang[inside]), atol=1e-3)
    # the image covers 2 atan(W / 2f) of longitude; everything else is black
    fov = 2 * math.degrees(math.atan(w / 2 / f))
    covered = inside.sum() / ew * 180
    assert abs(covered - fov) <= 180 / ew + 1e-9
    frame = np.full((1, h, w, 3), 200, np.uint8)
    out = layouts.vr180(frame, frame, (mx, my))
    assert out.shape == (1, eh, 2 * ew, 3)
    assert (out[0, 0] == 0).all() and (out[0, mid, ew // 2] == 200).all() and (out[0, mid, ew + ew // 2] == 200).all()


def test_vr180_window_is_the_inputs_field_of_view():
    """Not a 180-degree sphere of black around a small picture: the frame holds the input's field of view at its
    central resolution, and the projection bounds place it on the sphere."""
    h, w = 360, 640
    f = camera.default_focal(w)
    vr = layouts.vr180_view((h, w), f)
    lon, lat = math.atan(w / 2 / f), math.atan(h / 2 / f)
    assert (vr.lon, vr.lat) == pytest.approx((lon, lat))
    assert abs(vr.width - 2 * lon * f) <= 2 and abs(vr.height - 2 * lat * f) <= 2 and vr.width % 2 == vr.height % 2 == 0
    frame = np.full((1, h, w, 3), 200, np.uint8)
    picture = (layouts.vr180(frame, frame, vr.maps)[0] > 0).any(axis=2).mean()
    assert picture > 0.95  # was 2.6 % in a 4096 x 2048 sphere
    top, bottom, left, right = vr.bounds()
    assert left == right == round((math.pi - lon) / (2 * math.pi) * 2**32) and top == bottom == round((math.pi / 2 - lat) / math.pi * 2**32)
    wide = layouts.vr180_view((h, w), f, fov=120.0)  # --vr180-fov: an action camera's 120 degrees
    assert math.degrees(2 * wide.lon) == pytest.approx(120.0)
    assert layouts.vr180_view((h, w), f, eye_width=4000).width == layouts.VR180_MAX_EYE  # within H.264 level 5.1 side by side
    assert layouts.vr180_view((h, w), f, eye_width=320).width == 320


# ---- names --------------------------------------------------------------------------------------------


def test_names_ours_and_iw3s():
    ours = {n: export.output_path("o", "clip", n, num_views=8, size=(320, 576)).name for n in layouts.EXPORTS}
    iw3 = {n: export.output_path("o", "clip", n, ExportSettings(naming="iw3"), num_views=8, size=(320, 576)).name for n in layouts.EXPORTS}
    assert ours["sbs"] == "clip_SBS_LR.mp4" and ours["hsbs"] == "clip_HSBS_LR.mp4"
    assert ours["tb"] == "clip_FTB.mp4" and ours["htb"] == "clip_HTB.mp4"  # full TB is not "_TB": iw3 and players read that as half
    assert not any(re.search(r"_TB(\.|_)", n) for k, n in ours.items() if k == "tb")
    assert (iw3["sbs"], iw3["hsbs"], iw3["tb"], iw3["htb"], iw3["cross"]) == (
        "clip_LRF_Full_SBS.mp4", "clip_LR.mp4", "clip_TBF_fulltb.mp4", "clip_TB.mp4", "clip_RLF_cross.mp4")  # fmt: skip
    assert (iw3["vr180"], iw3["rgbd"], iw3["hrgbd"], iw3["anaglyph"]) == ("clip_180x180_LR.mp4", "clip_RGBD.mp4", "clip_HRGBD.mp4", "clip_redcyan_dubois.mp4")
    assert ours["quilt"] == iw3["quilt"] == "clip_qs4x2a1.8.mp4"
    assert ours["eyes_png"] == "clip_eyes" and ours["depth_png"] == "clip_depth16"  # folders
    assert len(set(ours.values())) == len(ours) and len(set(iw3.values())) == len(iw3)
    assert ours["anaglyph"] == "clip_anaglyph.mp4"  # Dubois red-cyan, the default, keeps its name; other kinds say theirs
    mkv = ExportSettings(encoder=EncoderSettings(container="mkv"), anaglyph="green-magenta")
    assert export.output_path("o", "clip", "anaglyph", mkv).name == "clip_anaglyph_green-magenta.mkv"


def test_parse_exports():
    assert export.parse_exports("sbs, anaglyph") == ("sbs", "anaglyph")
    with pytest.raises(InputError, match=r"^--exports 'sbs,sbs': sbs named more than once; name each export once$"):
        export.parse_exports("sbs,sbs")  # an error, not a silent de-duplication
    assert export.parse_exports("all") == tuple(layouts.EXPORTS)
    with pytest.raises(InputError, match="unknown export stereo.*choose from"):
        export.parse_exports("sbs,stereo")
    with pytest.raises(InputError, match="none given"):
        export.parse_exports(" , ")


def test_settings_are_validated_in_one_line_naming_the_flag(tmp_path):
    for kwargs, message in [
        (dict(exports=("sbs", "nope")), "--exports: unknown export nope"),
        (dict(naming="kodi"), "--naming kodi: choose svg3d or iw3"),
        (dict(anaglyph="blue"), "--anaglyph blue: choose from dubois"),
        (dict(vr180_fov=200.0), "--vr180-fov 200.0"),
    ]:
        with pytest.raises(InputError, match=re.escape(message)):
            ExportSettings(**kwargs)
    left, right = eyes(1, 16, 16)
    for encoder, message in [
        (EncoderSettings(codec="libnope"), r"--codec libnope: not available; this FFmpeg build has libx264, libx265"),
        (EncoderSettings(codec="ffv1"), r"--codec ffv1 cannot go into mp4; use --container mkv"),
        (EncoderSettings(pix_fmt="yuv420p12le"), r"--pix-fmt yuv420p12le: libx264 takes yuv420p, yuv422p, yuv444p, yuv420p10le"),
        (EncoderSettings(crf=60), r"--crf 60: libx264 takes 0..51"),
        (EncoderSettings(preset="turbo"), r"--preset turbo: libx264 takes ultrafast, superfast"),
        (EncoderSettings(container="avi"), r"--container avi: choose mp4 or mkv"),
    ]:
        with pytest.raises(InputError, match=message) as e:
            write_all(tmp_path / "o", ExportSettings(exports=("sbs",), encoder=encoder), left, right)
        assert "\n" not in str(e.value)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())  # nothing written


# ---- every export: size, frames, fps, audio, colour, metadata --------------------------------------


def test_every_export_has_its_size_frames_fps_audio_and_colour(tmp_path, rendered):
    views, disparity, focal = rendered
    v, t, h, w, _ = views.shape
    tone = write_tone(tmp_path / "tone.m4a", t / 12)
    info = ColourInfo(range="pc")  # a full-range BT.709 input: every export must stay full-range BT.709, tagged
    manifest = write_all(
        tmp_path / "out", ExportSettings(exports=tuple(layouts.EXPORTS)), views[0], views[-1], chunk=3, views=views,
        disparity=disparity, num_views=v, eyes=(0, v - 1), colour=info, audio=tone,
        depth_range=(float(disparity.min()), float(disparity.max())), focal=focal,
    )  # fmt: skip
    assert set(manifest) == {*layouts.EXPORTS, "preview"}
    gc, gr, gh, gw = layouts.grid_layout(v, h, w)
    vr = layouts.vr180_view((h, w), focal)
    sizes = {"sbs": (2 * w, h), "hsbs": (w, h), "tb": (w, 2 * h), "htb": (w, h), "cross": (2 * w, h), "anaglyph": (w, h), "left": (w, h),
             "right": (w, h), "rgbd": (2 * w, h), "hrgbd": (w, h), "vr180": (2 * vr.width, vr.height), "grid": (gc * gw, gr * gh),
             "quilt": (v * w, h), "depth": (w, h)}  # fmt: skip
    audio = audio_seconds(tone)
    for name, size in sizes.items():
        p = probe(manifest[name])
        assert manifest[name] == export.output_path(tmp_path / "out", "clip", name, num_views=v, size=(h, w))
        assert (p.width, p.height) == size, name
        assert p.frames == t and p.fps == pytest.approx(12.0) and p.codec == "h264", (name, p)
        assert p.audio_seconds == pytest.approx(audio, abs=1e-3), name
        assert colour.read_colour(manifest[name]) == info, name
    for name, subs in (("eyes_png", ["left", "right"]), ("views_png", [f"view_{i:03d}" for i in range(v)]), ("depth_png", ["."])):
        for sub in subs:
            files = sorted((manifest[name] / sub).glob("*.png"))
            assert [f.name for f in files] == [f"{i:06d}.png" for i in range(t)], name
    assert np.array_equal(io.read_image(manifest["preview"]), np.concatenate([views[0, 0], views[-1, 0]], axis=1))
    assert not [p for p in (tmp_path / "out").iterdir() if parts.is_part(p.name)]  # no part left behind


def test_stereo_metadata_in_the_mp4_box_tree_and_as_ffmpeg_reads_it(tmp_path):
    left, right = eyes(2, 16, 24)
    manifest = write_all(tmp_path / "o", ExportSettings(exports=("sbs", "hsbs", "tb", "htb", "cross", "vr180", "left")), left, right)
    entry = "moov/trak/mdia/minf/stbl/stsd/avc1/"
    expected = {"sbs": (2, 1), "hsbs": (2, 1), "tb": (1, 2), "htb": (1, 2), "vr180": (2, 1)}  # st3d mode; FFmpeg's AVStereo3DType
    for name, (mode, kind) in expected.items():
        boxes = mp4_boxes(manifest[name])
        assert boxes[entry + "st3d"] == bytes([0, 0, 0, 0, mode]), name  # FullBox v0, then stereo_mode
        assert struct.unpack("<i", frame_side_data(manifest[name])["STEREO3D"][:4])[0] == kind, name
    says = {name: ffmpeg_says(manifest[name]) for name in ("sbs", "tb", "vr180")}
    assert "stereo3d: side by side" in says["sbs"] and "stereo3d: top and bottom" in says["tb"]
    # VR180: sv3d/proj/equi cropping the sphere to the input's field of view
    top, bottom, left_, right_ = layouts.vr180_view((16, 24), camera.default_focal(24)).bounds()
    assert left_ == right_ > 1 << 30 and top == bottom > 0  # less than 180 x 180 degrees
    boxes = mp4_boxes(manifest["vr180"])
    children = [k[len(entry) :] for k in boxes if k.startswith(entry) and "/" not in k[len(entry) :]]
    assert children[:3] == ["avcC", "st3d", "sv3d"], children  # the RFC's place: after the codec's box, before colr/pasp/btrt
    assert boxes[entry + "sv3d/svhd"] == b"\0\0\0\0svg3d\0"
    assert boxes[entry + "sv3d/proj/prhd"] == bytes(16)
    assert boxes[entry + "sv3d/proj/equi"] == struct.pack(">IIIII", 0, top, bottom, left_, right_)
    spherical = frame_side_data(manifest["vr180"])["SPHERICAL"]
    projection, *_ = struct.unpack("<i", spherical[:4])
    bounds = struct.unpack("<IIII", spherical[16:32])  # left, top, right, bottom
    assert projection == 2 and bounds == (left_, top, right_, bottom)  # AV_SPHERICAL_EQUIRECTANGULAR_TILE
    assert "spherical: tiled equirectangular" in says["vr180"]
    # no stereo box where it would mislead: a flat eye, and cross-eyed (st3d has no right-left mode FFmpeg reads)
    for name in ("left", "cross"):
        assert not [k for k in mp4_boxes(manifest[name]) if k.endswith(("st3d", "sv3d"))], name
        assert "STEREO3D" not in frame_side_data(manifest[name]), name


def test_ffmpeg_ignores_the_right_left_st3d_mode(tmp_path):
    """Why cross-eyed mp4s get no st3d: the RFC's mode 4 (right-left) is not read by FFmpeg 8 (when it is, write it)."""
    from svg3d import isobmff

    left, right = eyes(2, 16, 16)
    path = tmp_path / "cross.mp4"
    import av

    with av.open(str(path), "w") as out:  # as FFmpeg writes it: moov last
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 16, "yuv420p"
        for frame in layouts.cross_eyed(left, right):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    isobmff.finish_mp4(path, isobmff.st3d(4))
    assert mp4_boxes(path)["moov/trak/mdia/minf/stbl/stsd/avc1/st3d"] == bytes([0, 0, 0, 0, 4])
    assert "STEREO3D" not in frame_side_data(path) and len(decode(path)) == 2


def frame_packing_types(path: Path) -> set[int]:
    """frame_packing_arrangement_type of every H.264 frame-packing SEI (payload type 45) in the file's samples."""
    import av

    found = set()
    with av.open(str(path)) as c:
        for packet in c.demux(video=0):
            data = bytes(packet)
            off = 0
            while off + 4 <= len(data):  # AVCC: 4-byte length, then a NAL unit
                (n,) = struct.unpack(">I", data[off : off + 4])
                nal = data[off + 4 : off + 4 + n]
                if nal and nal[0] & 0x1F == 6 and nal[1] == 45:  # SEI, first payload: frame packing arrangement
                    # payload: size byte, then ue(v) id, a flag bit, then 7 bits of type; id 0 is the single bit "1"
                    bits = "".join(f"{b:08b}" for b in nal[3:6])
                    found.add(int(bits[2:9], 2))
                off += 4 + n
    return found


def test_half_layouts_carry_an_h264_frame_packing_sei(tmp_path):
    left, right = eyes(2, 16, 24)
    manifest = write_all(tmp_path / "o", ExportSettings(exports=("sbs", "hsbs", "htb")), left, right)
    assert frame_packing_types(manifest["hsbs"]) == {3}  # side by side
    assert frame_packing_types(manifest["htb"]) == {4}  # top and bottom
    assert frame_packing_types(manifest["sbs"]) == set()


def test_matroska_stereo_mode_codecs_and_ten_bits(tmp_path):
    left, right = eyes(3, 32, 32)  # (the wheel's x265 corrupts its heap on 48-pixel-wide frames: sizes here avoid that)
    tone = write_tone(tmp_path / "tone.m4a", 0.25)
    settings = ExportSettings(exports=("sbs", "tb", "cross"), encoder=EncoderSettings(codec="libx265", pix_fmt="yuv420p10le", container="mkv"))
    manifest = write_all(tmp_path / "o", settings, left, right, audio=tone)
    for name, mode in (("sbs", "left_right"), ("tb", "top_bottom"), ("cross", "right_left")):
        p = probe(manifest[name])
        assert manifest[name].suffix == ".mkv" and p.codec == "hevc" and p.pix_fmt == "yuv420p10le" and p.frames == 3, (name, p)
        assert p.audio_seconds is not None
        says = ffmpeg_says(manifest[name])
        assert f"stereo_mode     : {mode}" in says, name
        assert colour.read_colour(manifest[name]).bit_depth == 10
    flags = struct.unpack("<ii", frame_side_data(manifest["cross"])["STEREO3D"][:8])
    assert flags == (1, 1)  # side by side, AV_STEREO3D_FLAG_INVERT: the right eye first
    hevc = write_all(tmp_path / "m", ExportSettings(exports=("left",), encoder=EncoderSettings(codec="libx265")), left, right)
    assert "moov/trak/mdia/minf/stbl/stsd/hvc1" in mp4_boxes(hevc["left"])  # hvc1, which Apple players require


# ---- content against the truth ------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["left2right", "right2left"])
def test_quilt_tiles_run_from_the_leftmost_view_bottom_left_to_the_rightmost_top_right(tmp_path, layout):
    """Rendered views at known baselines: each decoded tile is closest to the view Looking Glass expects there."""
    sc = scene.make_scene(4, num_frames=2, height=24, width=32)
    num = 6
    baselines = camera.view_baselines(num, 0.4, layout)
    rgb, _ = scene.render_views(sc, baselines)
    views = (rgb.clamp(0, 1) * 255).round().byte().permute(0, 1, 3, 4, 2).numpy()
    eyes_ = camera.eye_views(num, layout)
    manifest = write_all(tmp_path / layout, ExportSettings(exports=("quilt",), encoder=LOSSLESS), views[eyes_[0]], views[eyes_[1]],
                         views=views, num_views=num, eyes=eyes_)  # fmt: skip
    cols, rows, th, tw = layouts.quilt_layout(num, 24, 32)
    assert manifest["quilt"].name == f"clip_qs{cols}x{rows}a1.33333.mp4" and (cols, rows) == (3, 2)
    q = decode(manifest["quilt"]).astype(int)
    by_position = np.argsort(baselines)  # view indices from the leftmost camera to the rightmost
    for k in range(num):
        r, c = divmod(k, cols)  # k-th from the left: bottom row first
        tile = q[:, (rows - 1 - r) * th : (rows - r) * th, c * tw : (c + 1) * tw]
        errors = [np.abs(tile - views[i]).mean() for i in range(num)]
        assert int(np.argmin(errors)) == by_position[k] and errors[by_position[k]] < 1.5, (k, errors)


def test_rgbd_and_depth_exports_against_the_given_disparity(tmp_path, rendered):
    views, disparity, _ = rendered
    v, t, h, w, _ = views.shape
    lo, hi = float(disparity.min()), float(disparity.max())
    manifest = write_all(tmp_path / "o", ExportSettings(exports=("rgbd", "hrgbd", "depth", "depth_png"), encoder=LOSSLESS), views[0],
                         views[-1], disparity=disparity, colour=FULL, depth_range=(lo, hi))  # fmt: skip
    d01 = (disparity.astype(np.float64) - lo) / (hi - lo)
    rgbd = decode(manifest["rgbd"])
    assert np.array_equal(rgbd[..., w:, 0], np.round(d01 * 255).astype(np.uint8))  # grey, white = near: exact in full range
    assert (rgbd[..., w:, 0] == rgbd[..., w:, 1]).all() and (rgbd[..., w:, 1] == rgbd[..., w:, 2]).all()
    assert np.abs(rgbd[..., :w, :].astype(int) - views[0]).max() <= 1  # colour: the input view (full-range 4:4:4 rounding)
    half = decode(manifest["hrgbd"])
    assert half.shape == (t, h, w, 3) and np.abs(half[..., w // 2 :, 0].astype(int) - layouts._resize(np.round(d01 * 255).astype(np.uint8)[..., None], w // 2, h)[..., 0]).max() <= 1
    png = np.stack([io.read_depth(p) for p in sorted(manifest["depth_png"].glob("*.png"))])
    assert np.array_equal(png, np.round(d01 * 65535).astype(np.float32))  # 16-bit, exact
    depth = decode(manifest["depth"]).astype(int)
    inferno = layouts.depth_video(disparity, lo, hi).astype(int)
    assert np.abs(depth - inferno).max() <= 2
    near = np.unravel_index(np.argmax(disparity), disparity.shape)
    far = np.unravel_index(np.argmin(disparity), disparity.shape)
    assert depth[near].sum() > depth[far].sum() + 300  # near is bright


def test_per_frame_depth_ranges(tmp_path):
    """Per-shot ranges given with each write: a frame is normalised over its own (lo, hi)."""
    left, right = eyes(2, 8, 8)
    disparity = np.stack([np.full((8, 8), 2.0), np.full((8, 8), 2.0)]).astype(np.float32)
    settings = ExportSettings(exports=("depth_png",))
    with ExportWriter(tmp_path / "o", "clip", settings, fps=Fraction(8), size=(8, 8)) as w:
        w.write(left, right, disparity=disparity, depth_range=(np.array([0.0, 2.0]), np.array([4.0, 3.0])))
    png = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(w.manifest["depth_png"].glob("*.png"))]
    assert png[0].dtype == np.uint16 and (png[0] == round(0.5 * 65535)).all() and (png[1] == 0).all()
    w = ExportWriter(tmp_path / "p", "clip", settings, fps=Fraction(8), size=(8, 8))
    with pytest.raises(ValueError, match="depth_range: give"):
        w.write(left, right, disparity=disparity)
    with pytest.raises(ValueError, match="depth_range: given to the writer already"):
        ExportWriter(tmp_path / "q", "clip", settings, fps=Fraction(8), size=(8, 8), depth_range=(0, 1)).write(
            left, right, disparity=disparity, depth_range=(np.zeros(2), np.ones(2)))  # fmt: skip
    w.abort()


def test_vr180_eyes_are_equirectangular_maps_of_each_eye(tmp_path, rendered):
    views, _, focal = rendered
    manifest = write_all(tmp_path / "o", ExportSettings(exports=("vr180",), encoder=LOSSLESS), views[0], views[-1], colour=FULL, focal=focal)
    vr = layouts.vr180_view((32, 48), focal)
    expected = layouts.vr180(views[0], views[-1], vr.maps).astype(int)
    assert np.abs(decode(manifest["vr180"]).astype(int) - expected).max() <= 1
    fov = ExportSettings(exports=("vr180",), vr180_fov=90.0, vr180_size=64)
    m2 = write_all(tmp_path / "p", fov, views[0], views[-1])
    frame = decode(m2["vr180"])[0]
    assert frame.shape == (48, 128, 3)  # 90 x 67.4 degrees (a 48 x 32 input at f = 24) at 64 px across
    assert (frame[:, :64].max(axis=2) > 0).mean() > 0.9  # the picture fills the window


def test_vr180_in_matroska_carries_the_projection_element(tmp_path, rendered):
    """Google's Spherical Video V2 for Matroska: Video/Projection with ProjectionType 1 and ProjectionPrivate the equi
    box's body, parsed from the file's bytes (our own EBML walk, CRC-32 checked) and as FFmpeg reads it."""
    import zlib

    from svg3d import matroska

    views, _, focal = rendered
    settings = ExportSettings(exports=("vr180", "sbs"), encoder=EncoderSettings(container="mkv"))
    manifest = write_all(tmp_path / "o", settings, views[0], views[-1], focal=focal)
    bounds = layouts.vr180_view((32, 48), focal).bounds()
    data = manifest["vr180"].read_bytes()
    found = {}

    def walk(start: int, end: int, path: str) -> None:
        for eid, off, header, size, _ in matroska._children(data, start, end):
            name = f"{path}/{eid:x}"
            found[name] = data[off + header : off + header + size]
            if eid in (matroska.SEGMENT, matroska.TRACKS, matroska.TRACK_ENTRY, matroska.VIDEO, matroska.PROJECTION, matroska.SEEKHEAD):
                kids = list(matroska._children(data, off + header, off + header + size))
                if kids and kids[0][0] == matroska.CRC32:  # the master's CRC-32 covers the rest of its data
                    crc = struct.unpack("<I", data[kids[0][1] + kids[0][2] : kids[0][1] + kids[0][2] + 4])[0]
                    assert crc == zlib.crc32(data[kids[0][1] + kids[0][2] + 4 : off + header + size]), name
                walk(off + header, off + header + size, name)
            if eid == matroska.CLUSTER:
                return

    walk(0, len(data), "")
    video = "/18538067/1654ae6b/ae/e0/7670"
    assert found[video + "/7671"] == b"\x01"  # equirectangular
    assert found[video + "/7672"] == struct.pack(">IIIII", 0, *bounds)
    spherical = frame_side_data(manifest["vr180"])["SPHERICAL"]
    assert struct.unpack("<i", spherical[:4])[0] == 2  # AV_SPHERICAL_EQUIRECTANGULAR_TILE
    assert struct.unpack("<IIII", spherical[16:32]) == (bounds[2], bounds[0], bounds[3], bounds[1])  # left, top, right, bottom
    assert "spherical: tiled equirectangular" in ffmpeg_says(manifest["vr180"])  # an independent FFmpeg too
    assert len(decode(manifest["vr180"])) == len(views[0])  # every frame still decodes after the insertion
    assert "SPHERICAL" not in frame_side_data(manifest["sbs"])


def test_lossless_frame_folders_hold_every_frame_bit_for_bit(tmp_path, rendered):
    views, _, _ = rendered
    v = len(views)
    manifest = write_all(tmp_path / "o", ExportSettings(exports=("eyes_png", "views_png")), views[0], views[-1], chunk=1, views=views,
                         num_views=v, eyes=(0, v - 1))  # fmt: skip
    assert np.array_equal(io.read_frames(sorted((manifest["eyes_png"] / "left").glob("*.png"))), views[0])
    assert np.array_equal(io.read_frames(sorted((manifest["eyes_png"] / "right").glob("*.png"))), views[-1])
    for i in range(v):
        assert np.array_equal(io.read_frames(sorted((manifest["views_png"] / f"view_{i:03d}").glob("*.png"))), views[i])


def test_rgbd_of_the_middle_layout_shows_the_input_view(tmp_path, rendered):
    views, disparity, _ = rendered
    v = len(views)
    settings = ExportSettings(exports=("rgbd",), encoder=LOSSLESS)
    with ExportWriter(tmp_path / "o", "clip", settings, fps=Fraction(8), size=(32, 48), num_views=v, eyes=(0, v - 1), reference=v // 2,
                      colour=FULL, depth_range=(float(disparity.min()), float(disparity.max()))) as w:  # fmt: skip
        assert w.needs == export.needs(settings) == {"depth"}  # the input view is neither eye, and still no other view
        with pytest.raises(ValueError, match=r"reference: the input view \(view 2\) is neither eye: give its frames"):
            w.write(views[0], views[-1], disparity=disparity)
        w.abort()
    for out, given in (("p", dict(reference=views[v // 2])), ("q", dict(views=views))):
        with ExportWriter(tmp_path / out, "clip", settings, fps=Fraction(8), size=(32, 48), num_views=v, eyes=(0, v - 1),
                          reference=v // 2, colour=FULL, depth_range=(float(disparity.min()), float(disparity.max()))) as w:  # fmt: skip
            w.write(views[0], views[-1], disparity=disparity, **given)
        assert np.abs(decode(w.manifest["rgbd"])[..., :48, :].astype(int) - views[v // 2]).max() <= 1, out


# ---- streaming, atomicity, failures ----------------------------------------------------------------------


def test_chunks_of_one_and_of_all_frames_give_identical_files(tmp_path, rendered):
    """Lossless encoding, because multithreaded x264 is not repeatable under load: the same frames, fed twice, gave two
    different crf-18 files one run in ten on a busy 2-core machine (seen). Lossless files decode to the frames fed in,
    whatever the encoder decided, so equal decodes mean equal frames were written."""
    views, disparity, focal = rendered
    v = len(views)
    tone = write_tone(tmp_path / "tone.m4a", 0.4)
    settings = ExportSettings(exports=("sbs", "htb", "anaglyph", "rgbd", "quilt", "grid", "depth", "eyes_png", "depth_png"), encoder=LOSSLESS)
    kw = dict(views=views, disparity=disparity, num_views=v, eyes=(0, v - 1), audio=tone, depth_range=(0.0, float(disparity.max())))
    one = write_all(tmp_path / "one", settings, views[0], views[-1], chunk=1, **kw)
    all_ = write_all(tmp_path / "all", settings, views[0], views[-1], **kw)
    for name in settings.exports:
        if one[name].is_dir():
            a = {p.relative_to(one[name]): p.read_bytes() for p in sorted(one[name].rglob("*.png"))}
            b = {p.relative_to(all_[name]): p.read_bytes() for p in sorted(all_[name].rglob("*.png"))}
            assert a == b and len(a) > 0, name
        else:
            assert np.array_equal(decode(one[name]), decode(all_[name])), name
            assert audio_seconds(one[name]) == audio_seconds(all_[name]), name


def test_a_killed_writer_leaves_only_parts_that_the_next_run_removes(tmp_path):
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys, time
        from fractions import Fraction
        import numpy as np
        from svg3d.stages.export import ExportSettings, ExportWriter
        left = np.zeros((2, 16, 16, 3), np.uint8)
        w = ExportWriter({str(out)!r}, "clip", ExportSettings(exports=("sbs", "eyes_png")), fps=Fraction(8), size=(16, 16))
        w.write(left, left)
        print("ready", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    try:
        assert child.stdout.readline().strip() == "ready"
        names = sorted(p.name for p in out.iterdir())
        assert len(names) == 2 and all(parts.is_part(n) for n in names), names
        assert export.remove_stale_parts(out) == []  # a live writer holds its parts: kept
        with pytest.raises(InputError, match=r"clip_SBS_LR\.mp4 is being written by another process"):
            ExportWriter(out, "clip", ExportSettings(exports=("sbs",)), fps=Fraction(8), size=(16, 16))  # a second run, same output
        assert sorted(p.name for p in out.iterdir()) == names  # and the first run's parts are untouched
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        child.kill()
        child.stdout.close()
    removed = export.remove_stale_parts(out)
    assert sorted(p.name for p in removed) == names
    assert list(out.iterdir()) == []
    (out / ".notes.txt").write_text("a user's hidden file")
    assert export.remove_stale_parts(out) == [] and (out / ".notes.txt").exists()  # only our own names are touched


def test_part_names_stay_short_for_long_stems(tmp_path):
    """Issue 10: a 240-character stem gave a temporary name over 255 bytes. Parts stay under 200 whatever the stem;
    an output whose own name cannot exist is refused before anything is written."""
    stem = "é" * 100 + "x" * 30  # 230 bytes of UTF-8
    final = tmp_path / f"{stem}_SBS_LR.mp4"
    part = parts.part_path(final)
    assert len(part.name.encode()) <= parts.MAX_PART_NAME and parts.is_part(part.name) and part.suffix == ".mp4"
    assert parts.part_path(tmp_path / f"{stem}_HSBS_LR.mp4") != part  # another output, another part
    left, right = eyes(1, 16, 16)
    with ExportWriter(tmp_path / "o", stem, ExportSettings(exports=("sbs", "eyes_png")), fps=Fraction(8), size=(16, 16)) as w:
        w.write(left, right)
    assert w.manifest["sbs"].name == f"{stem}_SBS_LR.mp4" and w.manifest["eyes_png"].is_dir()
    with pytest.raises(InputError, match=r"_LRF_Full_SBS\.mp4: the file name is 2\d\d bytes, over the 255"):
        ExportWriter(tmp_path / "p", stem + "y" * 20, ExportSettings(exports=("sbs",), naming="iw3"), fps=Fraction(8), size=(16, 16))
    assert not (tmp_path / "p").exists()


def test_a_full_disk_is_an_input_error_naming_the_file_with_parts_removed(tmp_path):
    """RLIMIT_FSIZE makes writes past 4 kB in a file fail with EFBIG, as a full disk fails them with ENOSPC."""
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import resource, signal
        from fractions import Fraction
        import numpy as np
        from svg3d.checks import InputError
        from svg3d.stages.export import ExportSettings, ExportWriter
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 12, 1 << 12))
        noise = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
        for exports in (("sbs",), ("eyes_png",)):
            try:
                with ExportWriter({str(out)!r}, "clip", ExportSettings(exports=exports), fps=Fraction(8), size=(64, 64)) as w:
                    for _ in range(20):
                        w.write(noise, noise[::-1])
            except InputError as e:
                print(e)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=60)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2, done.stdout + done.stderr
    assert re.match(rf"^{re.escape(str(out))}/clip_SBS_LR\.mp4: cannot write \(File too large\)$", lines[0]), lines[0]
    assert re.match(rf"^{re.escape(str(out))}/clip_eyes: cannot write \(File too large\)$", lines[1]), lines[1]
    assert list(out.iterdir()) == []


def test_a_vanished_folder_is_an_input_error(tmp_path):
    import shutil

    left, right = eyes(2, 16, 16)
    for name, file in (("sbs", "clip_SBS_LR.mp4"), ("eyes_png", "clip_eyes")):
        w = ExportWriter(tmp_path / "o", "clip", ExportSettings(exports=(name,)), fps=Fraction(8), size=(16, 16))
        w.write(left, right)
        shutil.rmtree(tmp_path / "o")
        with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path / 'o' / file))}: cannot write \(No such file or directory\)$"):
            w.close()


def test_writer_checks_what_it_is_given(tmp_path):
    left, right = eyes(2, 16, 16)
    with ExportWriter(tmp_path / "o", "clip", ExportSettings(exports=("grid",)), fps=Fraction(8), size=(16, 16), num_views=3, eyes=(0, 2)) as w:
        assert w.needs_views and not w.needs_depth
        with pytest.raises(ValueError, match=r"views: expected \(3, 2, 16, 16, 3\)"):
            w.write(left, right, views=np.zeros((2, 2, 16, 16, 3), np.uint8))
        w.abort()  # (an invalid call writes nothing: the writer could go on)
    with pytest.raises(ValueError, match="no frames were written"):
        ExportWriter(tmp_path / "p", "clip", ExportSettings(exports=("sbs",)), fps=Fraction(8), size=(16, 16)).close()
    assert not list((tmp_path / "p").iterdir())
    w = ExportWriter(tmp_path / "q", "clip", ExportSettings(exports=("sbs",)), fps=Fraction(8), size=(16, 16))
    with pytest.raises(ValueError, match="frames of 8x8, the writer was made for 16x16"):
        w.write(left[:, :8, :8], right[:, :8, :8])
    w.abort()
    assert not list((tmp_path / "q").iterdir())


def yuv_frames(path: Path) -> np.ndarray:
    """Every frame's planes as PyAV lays them out (``to_ndarray`` of the stored format): the code values written."""
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray() for f in c.decode(video=0)])


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize(("size", "pix_fmt"), [((10, 14), "yuv420p"), ((9, 15), "yuv420p"), ((10, 14), "yuv422p10le")])
def test_tensors_are_exported_within_one_code_value_of_arrays(tmp_path, monkeypatch, device, size, pix_fmt):
    """Eyes given as tensors: the layouts that can are built and converted to YUV on the tensors' device (a chunk at a
    time) and only the planes come back; the others (RGB-D, PNG folders) take host copies. Lossless x264 writes the
    planes as given: every plane within 1 code value of the numpy path's (tested against float64 in test_colour),
    odd sides padded the same way, the PNG frames and the preview identical, progress counted the same."""
    import torch

    left, right = eyes(5, *size)
    disparity = np.random.default_rng(2).random((5, *size), dtype=np.float32)
    names = ("sbs", "hsbs", "htb", "cross", "anaglyph", "right", "rgbd", "eyes_png")
    settings = ExportSettings(exports=names, encoder=EncoderSettings(crf=0, pix_fmt=pix_fmt, codec="libx264"), anaglyph="dubois")
    counted = {}
    for kind in ("array", "tensor", "tensor, a frame at a time"):
        counted[kind] = []
        if kind.endswith("time"):  # the device's batches bound memory; the planes do not depend on them
            monkeypatch.setattr(export, "DEVICE_PIXELS", 1)
        with ExportWriter(tmp_path / kind, "clip", settings, fps=Fraction(12), size=size, depth_range=(0.0, 1.0)) as w:
            for a in range(0, 5, 2):  # chunks of 2, 2, 1
                lt, rt = left[a : a + 2], right[a : a + 2]
                if kind != "array":
                    lt, rt = torch.from_numpy(lt).to(device), torch.from_numpy(rt).to(device)
                w.write(lt, rt, disparity=disparity[a : a + 2], progress=counted[kind].append)
        counted[kind + " files"] = w.manifest
    assert sum(counted["array"]) == sum(counted["tensor"]) == 5
    arrays, tensors, one = counted["array files"], counted["tensor files"], counted["tensor, a frame at a time files"]
    for name in names:
        if name == "eyes_png":
            assert [p.read_bytes() for p in sorted(arrays[name].rglob("*.png"))] == [p.read_bytes() for p in sorted(tensors[name].rglob("*.png"))]
            continue
        a, b = yuv_frames(arrays[name]), yuv_frames(tensors[name])
        assert a.shape == b.shape and len(a) == 5, name
        assert np.abs(a.astype(int) - b).max() <= 1, name
        assert np.array_equal(b, yuv_frames(one[name])), name
    assert arrays["preview"].read_bytes() == tensors["preview"].read_bytes()
    # only device layouts: no host copy of the eyes at all (a CPU tensor's would be free; a view of it is checked instead)
    with ExportWriter(tmp_path / "only", "clip", ExportSettings(exports=("sbs", "anaglyph")), fps=Fraction(12), size=size) as w:
        w.write(torch.from_numpy(left).to(device), torch.from_numpy(right).to(device))
    assert len(yuv_frames(w.manifest["sbs"])) == 5 and w.manifest["preview"].exists()


def test_device_planes_are_checked(tmp_path):
    import torch

    from svg3d.encode import VideoEncoder

    left, right = eyes(2, 16, 16)
    w = ExportWriter(tmp_path / "t", "clip", ExportSettings(exports=("sbs",)), fps=Fraction(8), size=(16, 16))
    with pytest.raises(ValueError, match=r"two uint8 \(n, H, W, 3\) arrays or tensors on one device"):
        w.write(torch.from_numpy(left).float(), torch.from_numpy(right).float())
    with pytest.raises(ValueError, match="frames of 8x8, the writer was made for 16x16"):
        w.write(torch.from_numpy(left[:, :8, :8]), torch.from_numpy(right[:, :8, :8]))
    w.abort()
    enc = VideoEncoder(tmp_path / "e.mp4", EncoderSettings(), fps=Fraction(8), width=16, height=16)
    with pytest.raises(ValueError, match=r"planes: expected uint8 \(\(2, 16, 16\), \(2, 8, 8\), \(2, 8, 8\)\) for yuv420p"):
        enc.write_planes(np.zeros((2, 16, 16), np.uint8), np.zeros((2, 16, 16), np.uint8), np.zeros((2, 16, 16), np.uint8))
    enc.abort()


# ---- the whole-clip helper and audio -------------------------------------------------------------------


def test_write_exports_sizes_frames_fps_audio_and_names(tmp_path):
    t, h, w, fps = 6, 32, 48, 12.0
    left, right = eyes(t, h, w)
    tone = write_tone(tmp_path / "tone.m4a", t / fps)
    views = np.stack([left, right])
    disparity = np.random.default_rng(1).random((t, h, w)).astype(np.float32)
    names = ("sbs", "hsbs", "tb", "htb", "anaglyph", "left", "right", "grid", "depth")
    calls = []
    written = export.write_exports(tmp_path / "out", "clip", names, left=left, right=right, fps=fps, views=views, disparity=disparity,
                                   audio_from=tone, progress=calls.append)  # fmt: skip
    assert calls == [1] * len(names)
    sizes = {"sbs": (2 * w, h), "hsbs": (w, h), "tb": (w, 2 * h), "htb": (w, h), "anaglyph": (w, h), "left": (w, h), "right": (w, h), "grid": (2 * w, h), "depth": (w, h)}
    audio = audio_seconds(tone)
    for name, size in sizes.items():
        p = probe(written[name])
        assert written[name] == export.output_path(tmp_path / "out", "clip", name)
        assert (p.width, p.height) == size, name
        assert p.frames == t and p.fps == pytest.approx(fps) and p.codec == "h264" and p.pix_fmt == "yuv420p", (name, p)
        assert p.audio_seconds == pytest.approx(audio, abs=1e-3), name
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
    assert not [p for p in tmp_path.iterdir() if parts.is_part(p.name)]
    io.write_video(tmp_path / "with_aac.mp4", np.zeros((2, 8, 8, 3), np.uint8), 8.0, audio_from=full)
    assert codec_of(tmp_path / "with_aac.mp4") == "aac"
    video = tmp_path / "silent.mp4"
    io.write_video(video, np.zeros((2, 8, 8, 3), np.uint8), 8.0)
    assert export.audio_track(video, tmp_path / "none.m4a") is None


def codec_of(path) -> str:
    import av

    with av.open(str(path)) as c:
        return c.streams.audio[0].codec_context.name


# ---- index first, every audio track, reproducible lossy files ----------------------------------------------


def top_level(path: Path) -> list[str]:
    return [k for k in mp4_boxes(path) if "/" not in k]


def test_mp4s_have_their_index_first(tmp_path, rendered):
    """Fast start: moov before mdat (parsed), every frame and the audio still where the moved offsets say."""
    views, disparity, focal = rendered
    tone = write_tone(tmp_path / "tone.m4a", 0.4)
    settings = ExportSettings(exports=("sbs", "vr180", "depth", "left"), encoder=LOSSLESS)
    manifest = write_all(tmp_path / "o", settings, views[0], views[-1], disparity=disparity, audio=tone, colour=FULL, focal=focal,
                         depth_range=(0.0, float(disparity.max())))  # fmt: skip
    for name in settings.exports:
        boxes = top_level(manifest[name])
        assert boxes[:2] == ["ftyp", "moov"] and boxes.index("moov") < boxes.index("mdat"), (name, boxes)
        assert audio_seconds(manifest[name]) == pytest.approx(audio_seconds(tone), abs=1e-3), name
    assert np.abs(decode(manifest["left"]).astype(int) - views[0]).max() <= 1  # the samples are where stco says


def test_chunk_offsets_past_4_gib_become_co64():
    from svg3d import isobmff

    stco = isobmff.full_box("stco", struct.pack(">III", 2, 100, 200))
    moov = isobmff.box("moov", isobmff.box("trak", isobmff.box("mdia", isobmff.box("minf", isobmff.box("stbl", stco)))))
    near = isobmff._shifted(moov, 8, len(moov), 1000)
    assert near.endswith(isobmff.full_box("stco", struct.pack(">III", 2, 1100, 1200)))
    far = isobmff._shifted(moov, 8, len(moov), 1 << 32)
    assert far.endswith(isobmff.full_box("co64", struct.pack(">IQQ", 2, (1 << 32) + 100, (1 << 32) + 200)))
    assert struct.unpack(">I", far[:4])[0] == len(far)  # the enclosing boxes grew with it


def two_track_video(path: Path, frames: np.ndarray, fps: int, *, rate: int = 48000) -> Path:
    """``frames`` as H.264 in Matroska with two audio tracks: AAC at 440 Hz ("eng") and 16-bit PCM at 1000 Hz ("fra")."""
    import av

    n = round(len(frames) / fps * rate)
    t = np.arange(n) / rate
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.height, v.width, v.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        tracks = []
        for codec, freq, lang, fmt in (("aac", 440, "eng", "fltp"), ("pcm_s16le", 1000, "fra", "s16")):
            a = out.add_stream(codec, rate=rate, layout="stereo")
            a.metadata["language"] = lang
            wave = 0.3 * np.sin(2 * np.pi * freq * t)
            tracks.append((a, np.repeat(wave[None], 2, 0).astype(np.float32) if fmt == "fltp" else (wave * 32767).astype(np.int16).repeat(2)[None], fmt))
        for f in frames:
            out.mux(v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(v.encode())
        for a, samples, fmt in tracks:
            step = 1024
            for i in range(0, n, step):
                part = samples[:, i : i + step] if fmt == "fltp" else samples[:, 2 * i : 2 * (i + step)]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format=fmt, layout="stereo")
                frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
                out.mux(a.encode(frame))
            out.mux(a.encode(None))
    return path


def dominant_frequencies(path: Path) -> list[tuple[str, str, float, float]]:
    """(codec, language, seconds, dominant frequency in Hz) of every audio track."""
    import av

    found = []
    with av.open(str(path)) as probe_:
        count = len(probe_.streams.audio)
    for k in range(count):
        with av.open(str(path)) as c:  # one pass per track: a decode reads the file to its end
            a = c.streams.audio[k]
            samples = np.concatenate([f.to_ndarray()[0] for f in c.decode(a)]).astype(np.float64)  # first channel
            spectrum = np.abs(np.fft.rfft(samples))
            found.append((a.codec_context.name, a.metadata.get("language", ""), len(samples) / a.sample_rate,
                          float(np.argmax(spectrum) * a.sample_rate / len(samples))))  # fmt: skip
    return found


def test_every_audio_track_is_kept(tmp_path):
    """A 2-track input (AAC + camera PCM): both tracks, in order, with their languages, in every container."""
    left, right = eyes(12, 16, 16)
    source = two_track_video(tmp_path / "two.mkv", left, 12)
    m4a = export.audio_track(source, tmp_path / "audio.m4a")
    for container in ("mp4", "mkv"):
        manifest = write_all(tmp_path / container, ExportSettings(exports=("sbs",), encoder=EncoderSettings(container=container)),
                             left, right, audio=m4a)  # fmt: skip
        tracks = dominant_frequencies(manifest["sbs"])
        assert [(c, lang) for c, lang, _, _ in tracks] == [("aac", "eng"), ("aac", "fra")], tracks  # PCM re-encoded for mp4
        assert [f for *_, f in tracks] == [pytest.approx(440, abs=5), pytest.approx(1000, abs=5)], tracks
        assert all(s == pytest.approx(1.0, abs=0.05) for _, _, s, _ in tracks), tracks
    cut = export.audio_track(source, tmp_path / "cut.m4a", start=0.25, duration=0.5)  # a span: both tracks cut alike
    assert [round(s, 1) for *_, s, _ in dominant_frequencies(cut)] == [0.5, 0.5]


def one_cpu():
    """This thread on one CPU (as under ``taskset -c 0``, a container's cpuset, or a Ray worker of one CPU)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


one_cpu = contextlib.contextmanager(one_cpu)
needs_two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to run on one of them")


@needs_two_cpus
def test_lossy_files_do_not_depend_on_concurrency_or_the_cpu_set(tmp_path, rendered):
    """Threaded crf-18 encoding: exports encoded one after another or at once, on every CPU or one, give the same bytes.

    The cause of issue 24's resumed SBS that differed in every frame: x264 left to PyAV's default threading counts
    the CPUs the process may use when the encoder opens and cuts every frame into that many slices."""
    views, _, _ = rendered
    settings = ExportSettings(exports=("sbs", "hsbs", "anaglyph"), encoder=EncoderSettings(threads=3))
    runs = {"at once": {}, "in turn": dict(workers=1), "one cpu": {}}
    files = {}
    for run, kw in runs.items():
        with one_cpu() if run == "one cpu" else contextlib.nullcontext():
            manifest = write_all(tmp_path / run.replace(" ", "_"), settings, views[0], views[-1], chunk=2, **kw)
        files[run] = {n: manifest[n].read_bytes() for n in settings.exports}
    for name in settings.exports:
        assert b"threads=3 lookahead_threads=1 sliced_threads=0" in files["at once"][name], name  # frame threads, chosen
        assert files["at once"][name] == files["in turn"][name] == files["one cpu"][name], name


def test_the_same_frames_encoded_again_in_one_process_give_the_same_bytes(tmp_path):
    """96x64 half SBS (a frame-packing SEI), crf 18, one thread, encoded eight times in a fresh process, each file read
    back: on an AVX-512 CPU x264's AVX-512 code gave every second encode other bytes (it reads memory it did not write,
    the leftovers of the reading before); ``encode.x264_asm`` leaves AVX-512 out. (A fresh process: in this one, after
    other tests, the heap hid it.)"""
    sc = scene.make_scene(0, num_frames=10, height=64, width=96)
    rgb = (scene.render(sc)[0].clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()  # T 3 H W -> T H W 3
    np.save(tmp_path / "half.npy", np.concatenate([rgb[:, :, ::2], np.roll(rgb, 3, 2)[:, :, ::2]], 2))  # (T, 64, 96, 3)
    code = textwrap.dedent("""
        import sys
        from fractions import Fraction
        from pathlib import Path
        import av
        import numpy as np
        from svg3d.encode import EncoderSettings, StereoTag, VideoEncoder
        half, folder = np.load(sys.argv[1]), Path(sys.argv[2])
        for i in range(8):
            with VideoEncoder(folder / f"{i}.mp4", EncoderSettings(), fps=Fraction(8), width=96, height=64,
                              stereo=StereoTag("sbs", half=True), threads=1) as enc:
                for a in range(0, len(half), 2):
                    enc.write(half[a : a + 2])
            with av.open(str(folder / f"{i}.mp4")) as c:  # read back (what left the heap as x264 then read it)
                list(c.demux(c.streams.video[0]))
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "half.npy"), str(tmp_path)], check=True, env=env, timeout=120)
    files = [(tmp_path / f"{i}.mp4").read_bytes() for i in range(8)]
    assert all(f == files[0] for f in files)


def test_encoder_threads_share_the_machine():
    from svg3d.encode import encoder_threads, threading_options

    assert encoder_threads(1) == (os.cpu_count() or 1)
    assert [encoder_threads(n, cpus=16) for n in (1, 3, 5, 16, 40)] == [16, 5, 3, 1, 1]
    assert threading_options("libx264", 4) == ({}, 4, "FRAME")
    assert threading_options("libx265", 8) == ({"x265-params": "pools=8:frame-threads=3"}, 0, "FRAME")


# ---- through convert ---------------------------------------------------------------------------------------


def test_convert_rgbd_of_the_middle_of_five_views(tmp_path):
    """``convert --layout middle2leftright --num-views 5 --exports rgbd`` ended in a ValueError (fill_views.index):
    the writer asked for every view while the plan made the eyes only. One answer now: rgbd needs the input view."""
    from dataclasses import replace

    from svg3d import convert
    from svg3d.config import ConvertConfig
    from svg3d.source import read_clip
    from tests.media import rendered_clip
    from tests.test_convert import base_config

    video, depth, _ = rendered_clip(tmp_path / "clip", frames=3, height=32, width=48, audio=False)
    matrix = replace(ConvertConfig().matrix, layout="middle2leftright", num_views=5)
    config = replace(base_config(depth, matrix=matrix), exports=ExportSettings(exports=("rgbd", "eyes_png"), encoder=LOSSLESS))
    assert not export.needs_views(config.exports)
    result = convert.convert(video, tmp_path / "out", config)
    assert result.plan.reference == 2 and result.plan.eyes == (0, 4)
    rgbd = decode(result.exports["rgbd"])
    assert rgbd.shape == (3, 32, 96, 3)
    assert np.abs(rgbd[..., :48, :].astype(int) - read_clip(video).frames).max() <= 2  # the input view beside its depth


def test_an_error_in_the_chunk_in_flight_stops_the_export_stage_with_no_outputs(tmp_path, monkeypatch):
    """The stage encodes one chunk while it prepares the next: a failure there (a full disk) reaches the convert as the
    writer's InputError, at the next chunk or at the end, and every part is removed."""
    from svg3d import convert
    from tests.media import rendered_clip
    from tests.test_convert import base_config

    video, depth, _ = rendered_clip(tmp_path / "clip", frames=6, height=32, width=48, audio=False)
    config = dataclasses.replace(base_config(depth, exports=("sbs", "anaglyph")), chunk_frames=2)
    calls = []
    real = ExportWriter.write

    def failing(self, *args, **kw):
        calls.append(len(args[0]))
        if len(calls) == 2:
            raise InputError("out/clip_SBS_LR.mp4: cannot write (No space left on device)")
        return real(self, *args, **kw)

    monkeypatch.setattr(ExportWriter, "write", failing)
    with pytest.raises(InputError, match="No space left on device"):
        convert.convert(video, tmp_path / "out", config)
    assert calls == [2, 2]  # the third chunk was prepared but never written
    assert not [p for p in (tmp_path / "out").iterdir() if "SBS" in p.name or "anaglyph" in p.name]


@pytest.mark.gpu
def test_convert_on_cuda_composes_the_eye_layouts_there(tmp_path):
    """A convert on CUDA hands the export stage the eyes as tensors on the GPU: SBS, half SBS and the anaglyph are built
    and converted there, the PNG eyes from host copies of the same tensors; every lossless video's planes are within 1
    code value of ``encode_planes`` of its numpy layout of those PNG eyes."""
    from svg3d import convert
    from tests.media import rendered_clip
    from tests.test_convert import base_config

    video, depth, _ = rendered_clip(tmp_path / "clip", frames=4, height=32, width=48, audio=False)
    names = ("sbs", "hsbs", "anaglyph", "eyes_png")
    config = base_config(depth, exports=names)
    config = dataclasses.replace(config, exports=dataclasses.replace(config.exports, encoder=EncoderSettings(crf=0)))
    result = convert.convert(video, tmp_path / "out", config, device="cuda")
    left, right = (io.read_frames(io.list_images(result.exports["eyes_png"] / side)) for side in ("left", "right"))
    for name in ("sbs", "hsbs", "anaglyph"):
        info = colour.read_colour(result.exports[name])  # the tags it was written with
        built = layouts.EXPORTS[name].build(layouts.Step(left, right, left), layouts.Geometry(left.shape[1:3]))
        want = np.stack([np.concatenate([p.reshape(-1) for p in colour.encode_planes(f, info, "yuv420p")]) for f in built])
        got = yuv_frames(result.exports[name]).reshape(len(built), -1)
        assert np.abs(got.astype(int) - want).max() <= 1, name


@needs_two_cpus
def test_lossy_exports_of_a_resumed_convert_equal_an_uninterrupted_one(tmp_path):
    """Two runs, and a run interrupted in the fill stage then resumed on one CPU: the same crf-18 bytes."""
    from svg3d import convert
    from tests.media import rendered_clip
    from tests.test_convert import base_config, interrupt_in_fill

    # 96x64: where x264's AVX-512 code gave the half SBS other bytes from identical frames (encode.x264_asm)
    video, depth, _ = rendered_clip(tmp_path / "clip", frames=6, height=64, width=96)
    config = base_config(depth, chunk_frames=2, exports=("sbs", "hsbs", "anaglyph"))
    first = convert.convert(video, tmp_path / "a", config)
    second = convert.convert(video, tmp_path / "b", config)

    # (on 2 cores the fill computes frames 0-2 and 3-5 at once, in chunks [0, 2), [2, 3) and [3, 4), [4, 6): stopped
    # once [0, 2) is recorded, the first thread never writes [2, 3))
    interrupt_in_fill(video, tmp_path / "c", config, at=0)
    with one_cpu():
        resumed = convert.convert(video, tmp_path / "c", config)
    assert resumed.stage("filled").resumed_from == 2
    for name in config.exports.exports:
        a = first.exports[name].read_bytes()
        assert a == second.exports[name].read_bytes() == resumed.exports[name].read_bytes(), name


def test_an_audio_track_that_cannot_be_kept_is_named_in_one_warning(tmp_path, monkeypatch, caplog):
    """A track neither mp4 nor the decoders take (simulated: the PCM track's encoder refuses) is dropped with one
    warning naming it; the other track is kept."""
    import logging

    left, _ = eyes(12, 16, 16)
    source = two_track_video(tmp_path / "two.mkv", left, 12)
    keep = export._EncodeTrack

    def refuse(stream, *args):
        if stream.codec_context.name == "pcm_s16le":
            raise ValueError("no decoder here")
        return keep(stream, *args)

    monkeypatch.setattr(export, "_EncodeTrack", refuse)
    with caplog.at_level(logging.WARNING, logger="svg3d"):
        m4a = export.audio_track(source, tmp_path / "audio.m4a")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{source}: audio track 2 (pcm_s16le: no decoder here) dropped: neither mp4 nor this FFmpeg's decoders take it"]
    assert [(c, lang) for c, lang, _, _ in dominant_frequencies(m4a)] == [("aac", "eng")]
