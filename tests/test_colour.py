"""Colour: YUV <-> RGB with the source's matrix and range, tags read and written, HDR refused."""

from __future__ import annotations

import subprocess
from fractions import Fraction

import numpy as np
import pytest

from svg3d import colour
from svg3d.checks import InputError
from svg3d.colour import ColourInfo
from svg3d.encode import EncoderSettings, VideoEncoder


def colour_bars(h: int = 32, w: int = 64) -> np.ndarray:
    """``uint8 (h, w, 3)``: the eight 75 % bars over the top half, a grey ramp and a hue ramp below (smooth, 4:2:0-friendly)."""
    bars = np.array([[191, 191, 191], [191, 191, 0], [0, 191, 191], [0, 191, 0], [191, 0, 191], [191, 0, 0], [0, 0, 191], [16, 16, 16]])
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = np.repeat(bars, w // 8, axis=0)[None]
    ramp = np.linspace(0, 255, w)
    img[h // 2 : 3 * h // 4] = np.round(ramp)[None, :, None]
    img[3 * h // 4 :, :, 0] = np.round(ramp)[None]
    img[3 * h // 4 :, :, 2] = np.round(255 - ramp)[None]
    return img


def ffmpeg_rgb(path, h: int, w: int) -> np.ndarray:
    """Frames as an independent FFmpeg (imageio-ffmpeg's static build) converts them to RGB, honouring the file's tags."""
    import imageio_ffmpeg

    out = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return np.frombuffer(out, np.uint8).reshape(-1, h, w, 3)


def decoded(path) -> tuple[np.ndarray, ColourInfo]:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        info = colour.colour_of_stream(s, path)
        return np.stack([colour.decode_rgb(f, info) for f in c.decode(s)]), info


def test_reference_code_values_of_pure_red():
    """BT.709 and BT.601 red in 8-bit limited range, as tabulated (e.g. BT.709 red = Y 63, Cb 102, Cr 240)."""
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    y, cb, cr = colour.encode_planes(red, ColourInfo(), "yuv444p")
    assert (y[0, 0], cb[0, 0], cr[0, 0]) == (63, 102, 240)
    y, cb, cr = colour.encode_planes(red, ColourInfo("smpte170m", "smpte170m", "smpte170m"), "yuv444p")
    assert (y[0, 0], cb[0, 0], cr[0, 0]) == (81, 90, 240)
    y, cb, cr = colour.encode_planes(red, ColourInfo(range="pc"), "yuv444p")  # full range: Y = 255 Kr, Cr = 128 + 127.5
    assert (y[0, 0], cb[0, 0], cr[0, 0]) == (54, 99, 255)
    y, _, _ = colour.encode_planes(np.full((2, 2, 3), 255, np.uint8), ColourInfo(), "yuv420p10le")
    assert y[0, 0] == 940  # 10-bit limited white


@pytest.mark.parametrize("matrix", list(colour.LUMA_WEIGHTS))
@pytest.mark.parametrize("rng", ["tv", "pc"])
def test_yuv444_round_trip_is_within_one_quantisation_step(matrix, rng):
    """RGB -> Y'CbCr -> RGB loses only the YUV rounding: at 8 bits half a step of Y (255/219 RGB levels in
    limited range) plus half a chroma step times the largest inverse coefficient (2 (1 - Kb) <= 1.9), plus the
    final rounding: <= 2 levels; at 10 bits the steps are 4x finer: <= 1."""
    rgb = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    info = ColourInfo(matrix=matrix, range=rng)
    for pix_fmt, bound in (("yuv444p", 2), ("yuv444p10le", 1)):
        back = colour.decode_rgb(colour.encode_frame(rgb, info, pix_fmt), info)
        assert np.abs(back.astype(int) - rgb).max() <= bound, (pix_fmt, matrix, rng)


def test_subsampled_chroma_round_trip_on_smooth_content():
    img = colour_bars()
    for pix_fmt in ("yuv420p", "yuv422p", "yuv420p10le"):
        back = colour.decode_rgb(colour.encode_frame(img, ColourInfo(), pix_fmt), ColourInfo())
        err = np.abs(back.astype(int) - img)
        # Inside the ramps (away from the rows where grey meets colour) chroma varies slowly and 4:2:0 loses
        # nothing visible; over the bars only the pixels next to an edge between two bars blur.
        assert max(err[18:22].max(), err[26:].max()) <= 3, pix_fmt
        assert np.median(err[:16]) <= 1, pix_fmt


@pytest.mark.parametrize("rng", ["tv", "pc"])
def test_tagged_file_decodes_like_ffmpeg_and_like_the_source(tmp_path, rng):
    """A lossless (x264 qp 0, 4:4:4) BT.709 clip, tagged: our decode matches the source within the YUV rounding and an
    independent FFmpeg within its fixed-point conversion; decoding as BT.601 limited (the tags ignored) is far off."""
    img = colour_bars()
    frames = np.stack([img, np.roll(img, 8, axis=1)])
    info = ColourInfo(range=rng)
    path = tmp_path / "bars.mp4"
    with VideoEncoder(path, EncoderSettings(crf=0, pix_fmt="yuv444p"), fps=Fraction(8), width=64, height=32, colour=info) as v:
        v.write(frames)
    ours, tags = decoded(path)
    assert tags == info
    assert np.abs(ours.astype(int) - frames).max() <= 2
    assert np.abs(ours.astype(int) - ffmpeg_rgb(path, 32, 64)).max() <= 2
    import av

    with av.open(str(path)) as c:
        wrong = np.stack([colour.decode_rgb(f, ColourInfo("smpte170m", "smpte170m", "smpte170m")) for f in c.decode(video=0)])
    assert np.abs(wrong.astype(int) - frames).max() > 10  # the test would see a decode that ignores the tags


def test_read_colour_of_tagged_and_untagged_files(tmp_path):
    import av

    def raw(path, w, h, **tags):
        with av.open(str(path), "w") as out:
            s = out.add_stream("libx264", rate=8)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            for k, v in tags.items():
                setattr(s.codec_context, k, v)
            for _ in range(2):
                out.mux(s.encode(av.VideoFrame(w, h, "yuv420p")))
            out.mux(s.encode())
        return path

    sd = colour.read_colour(raw(tmp_path / "sd.mp4", 64, 48))
    assert (sd.matrix, sd.primaries, sd.range, sd.bit_depth) == ("smpte170m", "smpte170m", "tv", 8)  # players' guess for SD
    hd = colour.read_colour(raw(tmp_path / "hd.mp4", 1280, 720))
    assert (hd.matrix, hd.primaries, hd.transfer) == ("bt709", "bt709", "bt709")
    full = colour.read_colour(raw(tmp_path / "full.mp4", 64, 48, color_range=2, colorspace=1, color_primaries=1, color_trc=1))
    assert full == ColourInfo(range="pc")  # tags win over the guess
    with pytest.raises(InputError, match=r"tone\.m4a: not a video"):
        from svg3d.demo import write_tone

        colour.read_colour(write_tone(tmp_path / "tone.m4a", 0.2))


def test_hdr_input_is_refused_in_one_line_naming_the_file(tmp_path):
    import av

    path = tmp_path / "hdr.mkv"
    with av.open(str(path), "w") as out:  # 10-bit BT.2020 PQ, as HDR10 cameras and discs make it
        s = out.add_stream("libx265", rate=8, options={"x265-params": "log-level=error"})
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p10le"
        s.codec_context.color_primaries, s.codec_context.color_trc, s.codec_context.colorspace = 9, 16, 9
        s.codec_context.color_range = 1
        for _ in range(2):
            out.mux(s.encode(av.VideoFrame(64, 48, "yuv420p10le")))
        out.mux(s.encode())
    info = colour.read_colour(path)
    assert (info.transfer, info.primaries, info.matrix, info.bit_depth) == ("smpte2084", "bt2020", "bt2020nc", 10)
    assert info.is_hdr
    with pytest.raises(InputError, match=r"^\S*hdr\.mkv: HDR video \(PQ \(HDR10\), bt2020\) is not supported; convert it to SDR") as e:
        colour.check_colour(info, path)
    assert "\n" not in str(e.value)
    colour.check_colour(ColourInfo("bt2020", "bt2020-10", "bt2020nc", bit_depth=10), path)  # SDR BT.2020 is carried through
    with pytest.raises(InputError, match="colour matrix ycgco is not supported"):
        colour.check_colour(ColourInfo(matrix="ycgco"), path)


def test_colour_info_validates_names():
    with pytest.raises(ValueError, match="ColourInfo.matrix: unknown 'bt601'"):
        ColourInfo(matrix="bt601")
    with pytest.raises(ValueError, match="ColourInfo.range"):
        ColourInfo(range="full")


def planes_float64(rgb: np.ndarray, info: ColourInfo, pix_fmt: str) -> list[np.ndarray]:
    """The reference: ``rgb_to_yuv_matrix`` in float64 on the exact box averages, rounded half to even and clipped."""
    sx, sy, bits = colour.PLANAR_YUV[pix_fmt]
    m = colour.rgb_to_yuv_matrix(info, bits)
    x = rgb.astype(np.float64) / 255.0
    h, w = rgb.shape[:2]
    small = x.reshape(h >> sy, 1 << sy, w >> sx, 1 << sx, 3).mean(axis=(1, 3))
    y = x @ m[0, :3] + m[0, 3]
    cbcr = small @ m[1:, :3].T + m[1:, 3]
    return [np.clip(np.rint(p), 0, (1 << bits) - 1) for p in (y, cbcr[..., 0], cbcr[..., 1])]


@pytest.mark.parametrize("matrix", ["bt709", "smpte170m", "bt2020nc"])
@pytest.mark.parametrize("rng", ["tv", "pc"])
@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv422p", "yuv444p", "yuv420p10le"])
def test_planes_on_torch_and_on_numpy_are_the_float64_planes_within_one_code_value(matrix, rng, pix_fmt):
    """``encode_planes_torch`` (batched, the GPU's path) and ``encode_planes`` (numpy) against the float64 formula: both
    are float32 sums, so a value within a float32 rounding of a half may round the other way: at most 1 code value,
    and rarely (< 1 % of the samples of random frames; 0.15 % at most seen)."""
    import torch

    info = ColourInfo(matrix=matrix, range=rng)
    frames = np.random.default_rng(1).integers(0, 256, (3, 32, 64, 3), dtype=np.uint8)
    frames[0] = colour_bars()
    batched = [p.numpy().astype(np.int64) for p in colour.encode_planes_torch(torch.from_numpy(frames), info, pix_fmt)]
    for t in range(len(frames)):
        ref = planes_float64(frames[t], info, pix_fmt)
        ours = colour.encode_planes(frames[t], info, pix_fmt)
        for k in range(3):
            for got in (ours[k].astype(np.int64), batched[k][t]):
                assert got.shape == ref[k].shape, (pix_fmt, k)
                diff = np.abs(got - ref[k])
                assert diff.max() <= 1, (t, k)
                if t:  # (the bars' flat colours hit exact halves of the float64 formula, which float32 rounds either way)
                    assert (diff > 0).mean() < 1e-2, (t, k, (diff > 0).sum())  # truncating instead would miss half
    if pix_fmt == "yuv420p10le":  # the int16 planes hold the 10-bit codes
        assert colour.encode_planes_torch(torch.full((1, 2, 2, 3), 255, dtype=torch.uint8), ColourInfo(), pix_fmt)[0].max() == 940


def test_planes_on_torch_check_what_they_are_given():
    import torch

    with pytest.raises(ValueError, match=r"uint8 \(n, H, W, 3\)"):
        colour.encode_planes_torch(torch.zeros(2, 2, 3, dtype=torch.uint8), ColourInfo(), "yuv420p")
    with pytest.raises(ValueError, match="even sides"):
        colour.encode_planes_torch(torch.zeros(1, 3, 4, 3, dtype=torch.uint8), ColourInfo(), "yuv420p")
    with pytest.raises(ValueError, match="not a planar YUV format"):
        colour.encode_planes_torch(torch.zeros(1, 2, 2, 3, dtype=torch.uint8), ColourInfo(), "nv12")
