"""A catalogue of bad and unusual inputs across every command line (issue 10).

Each case runs one CLI in-process through its ``main(argv)`` (``run.sh`` in a subprocess) on inputs
built once per module (``media``: a 48x32 rendered clip of 6 frames and its broken variants) and asserts:

- the exit status (2 for bad input, 0 for an unusual but valid one);
- for a refused input, one line on stderr, ``error: ...``, naming the file or the flag, and no traceback;
- that nothing complete-looking is left in the output (``nothing_complete``), or for a valid input, that
  the output is correct (each case's ``check``).

A case's arguments are one string, split like a shell line; every token is then formatted with ``m``
(the ``Media``) and ``out`` (the case's output folder), so paths with spaces stay one token.

After the catalogue: ``kill -9`` inside each stage of ``convert`` and inside its export (a subprocess,
killed once the stage has committed a chunk or the export has a part), a full disk (a small tmpfs) inside
a stage and inside the export, the same seed giving the same bytes through ``convert --fill diffusion``,
and every CLI's ``--help``. The read-only and full folders are tmpfs mounts: those tests skip where
mounting is not allowed (tests run as root in CI).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from svg3d import io, scene
from svg3d.stages import matrix
from tests.media import stage_folder

ROOT = Path(__file__).resolve().parents[1]
H, W, T = 32, 48, 6  # the clip: small, so the whole catalogue runs in seconds
LONG = "l" * 236  # with ".mp4": a 240-character file name
UNICODE = "my clip é 視頻"  # spaces and non-ASCII letters


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPTS = {  # the seed CLIs: module name and file
    "svg": ("svg", ROOT / "svg.py"),
    "matrix": ("create_frame_matrix", ROOT / "create_frame_matrix.py"),
    "depth": ("svg_run", ROOT / "third_party" / "Depth-Anything" / "svg_run.py"),
    "stabilise": ("svg_enhance_depth", ROOT / "third_party" / "RAFT" / "svg_enhance_depth.py"),
}


def _main(cli: str) -> Callable[[list[str]], int]:
    if cli == "convert":
        from svg3d.__main__ import main

        return lambda argv: main(["convert", *argv])
    return _load(*SCRIPTS[cli]).main


# --------------------------------------------------------------------------------------------------
# the inputs


def encode(
    path: Path, frames: np.ndarray, *, pix_fmt: str = "yuv420p", codec: str = "libx264", pts: list[int] | None = None, options: dict | None = None
) -> Path:
    """``uint8 (T, H, W, 3)`` as ``codec`` in ``pix_fmt``; ``pts`` in milliseconds for a variable rate; muxer ``options``."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w", options=options or {}) as out:
        s = out.add_stream(codec, rate=8)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        s.options = {"qp": "0"} if pix_fmt == "yuv444p" else {}
        if pts is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format=pix_fmt)
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, 1000)
            out.mux(s.encode(frame))
        out.mux(s.encode())
    return path


class Media:
    """Every input of the catalogue, under ``root``; attributes are paths (as ``str``, for argv templates)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        rng = np.random.default_rng(0)
        rgb, z = scene.render(scene.make_scene(0, num_frames=12, height=H, width=W))
        frames12 = (rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()  # T 3 H W -> T H W 3
        disparity12 = (1.0 / z.numpy()).astype(np.float32)  # (T, H, W) inverse metric depth
        self.frames, disparity = frames12[:T], disparity12[:T]
        self.disparity = disparity

        # the good clip: a seed clip folder (images/, depths/, depths_refined/), a video, a depth folder
        clip = root / "clip"
        for t in range(T):
            io.write_image(clip / "images" / f"{t:05d}.png", self.frames[t])
            for sub in ("depths", "depths_refined"):
                io.write_depth(clip / sub / f"{t:05d}_depth.npy", disparity[t])
            io.write_depth(root / "depth" / f"{t:05d}.npy", disparity[t])
        self.clip, self.images, self.depth = str(clip), str(clip / "images"), str(root / "depth")
        self.depths, self.refined = str(clip / "depths"), str(clip / "depths_refined")
        self.video = str(encode(root / "clip.mp4", self.frames, pix_fmt="yuv444p"))  # qp 0 4:4:4: near lossless
        only_raw = root / "only_raw"  # a clip folder with depths/ but no depths_refined/
        for t in range(T):
            io.write_image(only_raw / "images" / f"{t:05d}.png", self.frames[t])
            io.write_depth(only_raw / "depths" / f"{t:05d}_depth.npy", disparity[t])
        self.only_raw = str(only_raw)

        # videos: broken, tiny, unusual
        fast = encode(root / "fast.mp4", frames12, options={"movflags": "+faststart"})  # the index first
        self.fast_half = str(self._cut(fast, root / "fast_half.mp4"))  # half the frames' data is gone
        self.fast_most = str(self._cut(fast, root / "fast_most.mp4", 0.8))  # a few frames decode, the rest are gone
        tail = encode(root / "tail.mp4", frames12)  # the index at the end
        self.tail_half = str(self._cut(tail, root / "tail_half.mp4"))
        self.corrupt = self._write(root / "corrupt.mp4", rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
        self.empty = self._write(root / "empty.mp4", b"")
        self.notes = self._write(root / "notes.mp4", b"these are my notes, not a video\n" * 20)
        self.text = self._write(root / "notes.txt", b"these are my notes, not a video\n" * 20)
        from svg3d.demo import write_tone

        self.audio = str(write_tone(root / "tone.m4a", 1.0))
        self.tiny = str(encode(root / "tiny.mp4", self.frames[:, :8, :8]))
        self.ten_bit = str(encode(root / "ten_bit.mp4", self.frames, pix_fmt="yuv420p10le"))
        self.yuv444 = str(encode(root / "yuv444.mp4", self.frames, pix_fmt="yuv444p"))
        self.odd = str(encode(root / "odd.mp4", self.frames[:, :31, :47], pix_fmt="yuv444p"))
        self.vfr = str(encode(root / "vfr.mp4", self.frames, pts=[0, 125, 250, 600, 725, 1100]))
        self.rotated = str(self._rotate(Path(self.video), root / "rotated.mp4", 90))
        self.rgb_video = str(encode(root / "png_in.mov", self.frames, pix_fmt="rgb24", codec="png"))  # lossless RGB samples
        self.one_frame = str(encode(root / "one_frame.mp4", self.frames[:1], pix_fmt="yuv444p"))
        self.photo = str(root / "photo.png")
        io.write_image(self.photo, self.frames[0])
        self.phone_photo = str(root / "phone.jpg")  # stored landscape, shown portrait: EXIF orientation 6 (turn 90 degrees clockwise)
        self._write(Path(self.phone_photo), _jpeg_with_orientation(self.frames[0], 6))
        self.unicode = str(self._copy(Path(self.video), root / f"{UNICODE}.mp4"))
        self.long = str(self._copy(Path(self.video), root / f"{LONG}.mp4"))

        # frame folders
        def folder(name: str, frames=self.frames, names=None, suffix=".png") -> Path:
            f = root / name
            for t, frame in enumerate(frames):
                io.write_image(f / f"{(names[t] if names else f'{t:05d}')}{suffix}", frame)
            return f

        self.f_corrupt = str(folder("f_corrupt"))
        self._write(Path(self.f_corrupt) / "00002.png", rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
        self.f_zero = str(folder("f_zero"))
        self._write(Path(self.f_zero) / "00003.png", b"")
        self.f_mixed = str(folder("f_mixed"))
        io.write_image(Path(self.f_mixed) / "00004.png", self.frames[4, :, :40])
        self.f_tiny = str(folder("f_tiny", self.frames[:, :12, :12]))
        self.f_grey = str(folder("f_grey", [f[..., 1] for f in self.frames]))
        self.f_rgba = str(root / "f_rgba")
        self.f_16bit = str(root / "f_16bit")
        for t, f in enumerate(self.frames):
            alpha = np.dstack([f[..., ::-1], rng.integers(0, 256, (H, W), dtype=np.uint8)])  # BGRA for OpenCV
            io.write_bytes(Path(self.f_rgba) / f"{t:05d}.png", _png(alpha))
            io.write_bytes(Path(self.f_16bit) / f"{t:05d}.png", _png(f[..., ::-1].astype(np.uint16) * 257))
        self.f_gappy = str(folder("f_gappy", names=["00001", "00003", "00004", "00005", "00007", "00008"]))
        self.f_natural = str(folder("f_natural", frames12, names=[str(i + 1) for i in range(12)]))
        self.d_natural = str(root / "d_natural")
        for i in range(12):
            io.write_depth(Path(self.d_natural) / f"{i}.npy", disparity12[i])
        self.f_dup = str(folder("f_dup", self.frames[:3], names=["0", "1", "01"]))
        self.f_empty = str(root / "f_empty")
        Path(self.f_empty).mkdir()
        self.f_foreign = str(root / "f_foreign")
        self._write(Path(self.f_foreign) / "readme.txt", b"no frames here")
        self.f_long = str(folder("f_long", self.frames, names=[f"{LONG}{t}" for t in range(T)]))
        self.f_unicode = str(folder(f"f {UNICODE}", self.frames, names=[f"{UNICODE} {t}" for t in range(T)]))

        # depth folders for the 6-frame clip, each with one defect (in frame 2, so that frames 0-1 are fine)
        def depth(name: str, bad: object = None, index: int = 2, suffix: str = ".npy", count: int = T) -> str:
            f = root / name
            for t in range(count):
                io.write_depth(f / f"{t:05d}.npy", disparity[t % T])
            if bad is not None:
                (f / f"{index:05d}.npy").unlink()
                if isinstance(bad, bytes):
                    self._write(f / f"{index:05d}{suffix}", bad)
                else:
                    np.save(f / f"{index:05d}.npy", bad, allow_pickle=True)
            return str(f)

        d = disparity[2]
        self.d_nan = depth("d_nan", np.where(d > d.mean(), np.nan, d).astype(np.float32))
        self.d_inf = depth("d_inf", np.where(d > d.mean(), np.inf, d).astype(np.float32))
        self.d_negative = depth("d_negative", (d - d.mean()).astype(np.float32))  # partly negative
        self.d_zero = depth("d_zero", np.zeros_like(d))
        self.d_shape = depth("d_shape", d[:, :40])
        self.d_channels = depth("d_channels", np.dstack([d, d, d]))
        self.d_count = depth("d_count", count=T - 1)
        self.d_extra = depth("d_extra", count=T + 1)
        self.d_bool = depth("d_bool", d > d.mean())
        self.d_complex = depth("d_complex", d.astype(np.complex64) * (1 + 1j))
        self.d_object = depth("d_object", np.array([{"depth": d}], dtype=object))
        self.d_strings = depth("d_strings", np.full((H, W), "far", dtype="<U3"))
        self.d_truncated = depth("d_truncated", _npy(d)[:1000])
        self.d_mixed = depth("d_mixed")
        io.write_depth(Path(self.d_mixed) / "00006.png", np.ones((H, W), np.float32))
        self.d_foreign = depth("d_foreign")
        self._write(Path(self.d_foreign) / "notes.txt", b"depth of the clip")
        self.d_constant = str(root / "d_constant")
        for t in range(T):
            io.write_depth(Path(self.d_constant) / f"{t:05d}.npy", np.full((H, W), 0.5, np.float32))
        self.d_empty = str(root / "d_empty")
        Path(self.d_empty).mkdir()
        # seed layouts with a defect in depths_refined/
        for name, src in (("c_nan", self.d_nan), ("c_shape", self.d_shape), ("c_count", self.d_count)):
            c = root / name
            for t in range(T):
                io.write_image(c / "images" / f"{t:05d}.png", self.frames[t])
            for f in sorted(Path(src).iterdir()):
                io.write_bytes(c / "depths_refined" / f"{f.stem}_depth{f.suffix}", f.read_bytes())
            setattr(self, name, str(c))
        self.a_file = self._write(root / "a_file", b"a file where a folder is expected")

    @staticmethod
    def _write(path: Path, data: bytes) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    @staticmethod
    def _cut(src: Path, dst: Path, keep: float = 0.5) -> Path:
        data = src.read_bytes()
        dst.write_bytes(data[: int(len(data) * keep)])
        return dst

    @staticmethod
    def _copy(src: Path, dst: Path) -> Path:
        dst.write_bytes(src.read_bytes())
        return dst

    @staticmethod
    def _rotate(src: Path, dst: Path, degrees: int) -> Path:
        import imageio_ffmpeg

        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        subprocess.run([ffmpeg, "-loglevel", "error", "-display_rotation", str(degrees), "-i", str(src), "-c", "copy", str(dst)], check=True)
        return dst


def _png(img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _jpeg_with_orientation(rgb: np.ndarray, orientation: int) -> bytes:
    import io as pyio

    from PIL import Image

    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = orientation
    buf = pyio.BytesIO()
    image.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def _upright_by_pil(path: str) -> np.ndarray:
    """A JPEG as Pillow shows it upright (``ImageOps.exif_transpose``): another decoder than OpenCV's."""
    from PIL import Image, ImageOps

    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))


def _npy(a: np.ndarray) -> bytes:
    import io as pyio

    buf = pyio.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Media:
    return Media(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="module")
def frame_matrix(tmp_path_factory, media) -> Path:
    """A 3-view lossless frame matrix of the clip (create_frame_matrix.py), for svg.py's cases."""
    out = tmp_path_factory.mktemp("matrix") / "clip"
    argv = ["--img_path", media.clip, "--depth_path", media.clip, "--output_path", str(out), "--num_training_views", "3",
            "--use_metric_depth", "--lossless", "--device", "cpu", "--quiet", "--num_frames", "-1"]  # fmt: skip
    assert _main("matrix")(argv) == 0
    return out


@pytest.fixture(scope="module")
def depth_model(tmp_path_factory) -> Path:
    from svg3d.tiny_models import save_tiny_depth_anything

    return save_tiny_depth_anything(tmp_path_factory.mktemp("depth-model"))


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (``read_only``: mounted read-only); skips where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command here: the read-only and full-disk cases need a tmpfs")
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): needs root, as in CI")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_up(folder: Path, leave: int = 0) -> Path:
    """Fill ``folder``'s file system but ``leave`` bytes (page-rounded by tmpfs); returns the filler file."""
    filler = folder / "filler"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):
            f.write(b"\0" * max(0, free - leave))
    return filler


@pytest.fixture(scope="module")
def read_only(tmp_path_factory) -> Iterator[Path]:
    with tmpfs(tmp_path_factory.mktemp("ro"), "64k", read_only=True) as path:
        yield path


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Iterator[Path]:
    """A file system with no byte left (empty files and folders can still be made)."""
    with tmpfs(tmp_path_factory.mktemp("full"), "64k") as path:
        fill_up(path)
        yield path


# --------------------------------------------------------------------------------------------------
# the cases



CONVERT = "--flow dis --fill classical --device cpu --quiet --exports eyes_png --chunk-frames 4"
MODEL = "--depth-model {dm} " + CONVERT  # the tiny Depth Anything: for inputs whose depth maps would not fit
GOOD = "{m.video} -o {out} --depth-from {m.depth} " + CONVERT  # a good convert, to add one bad flag to
MATRIX = "--output_path {out} --device cpu --quiet --num_frames -1 --lossless"
SVG = "--prompt p --init_image {fm} --output_root {out} --quiet"
STAB = "--path {m.images} --depth_path {m.depths} --out_dir {out} --flow dis --device cpu --quiet"
# argv fields made by fixtures (requested only by the cases that use them)
FIXTURES = {"fm": "frame_matrix", "model": "model_dir", "dm": "depth_model", "ro": "read_only", "full": "full"}


@dataclass(frozen=True)
class Case:
    """One CLI run: ``rc`` 2 with one ``error:`` line holding every string of ``says``, or ``rc`` 0 and ``check``.

    ``usage``: refused by argparse (a usage line, then an error line naming the flag). ``warns``: strings of
    a warning an accepted run must print. ``late``: a convert refused only once a stage reads the bad frame
    or map (a per-frame defect, a full disk); every other refusal comes before any stage has run.
    ``env``: extra environment of a ``run.sh`` case, ``NAME=value`` pairs (``BARE=1``: run.sh in a checkout with no
    ``.venv``, which it must refuse before setting one up: a refusal must not wait for an install). ``xfail``: a known defect in code
    this catalogue may not change (the reason says where).
    """

    id: str
    cli: str
    args: str
    rc: int = 2
    says: tuple[str, ...] = ()
    warns: tuple[str, ...] = ()
    check: Callable | None = None
    usage: bool = False
    late: bool = False
    env: str = ""
    xfail: str = ""


def bad(id: str, cli: str, args: str, *says: str, **kw) -> Case:
    return Case(id, cli, args, 2, tuple(says), **kw)


def ok(id: str, cli: str, args: str, check: Callable, *warns: str, **kw) -> Case:
    return Case(id, cli, args, 0, warns=tuple(warns), check=check, **kw)


# checks of valid runs: (media, out folder) -> None


def eyes_of(out: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    folder = out / f"{stem}_eyes"
    return tuple(io.read_frames(io.list_images(folder / side)) for side in ("left", "right"))


def left_is(expected: Callable[[Media], np.ndarray], stem: str = "clip", *, tolerance: int = 0, size: tuple[int, int] | None = None):
    """The left eye (the input view) equals ``expected(m)`` within ``tolerance``; the right eye is another view."""

    def check(m: Media, out: Path) -> None:
        left, right = eyes_of(out, stem)
        want = expected(m)
        assert left.shape == want.shape, (left.shape, want.shape)
        assert np.abs(left.astype(int) - want).max() <= tolerance
        assert right.shape == left.shape and (right != left).any()
        if size is not None:
            assert left.shape[1:3] == size

    return check


def decoded(attr: str) -> Callable[[Media], np.ndarray]:
    """The frames of the media ``attr`` as the library decodes them (``read_clip``)."""
    from svg3d.source import read_clip

    return lambda m: read_clip(getattr(m, attr)).frames


def depth_maps_named(names: Callable[[Media], list[str]], sub: str = ""):
    """The output folder (or its ``sub``-folder) holds exactly these maps, each finite, >= 0, at the frame size."""

    def check(m: Media, out: Path) -> None:
        out = out / sub
        assert sorted(p.name for p in out.glob("*.npy")) == sorted(f"{n}.npy" for n in names(m))
        for p in out.glob("*.npy"):
            d = io.read_depth(p)
            assert d.shape == (H, W) and np.isfinite(d).all() and (d >= 0).all()

    return check


def matrix_of(views: int, frames: int = T, size: tuple[int, int] = (H, W)):
    """A complete frame matrix: every cell, the input view known everywhere and equal to the input frames."""

    def check(m: Media, out: Path) -> None:
        fm = matrix.load_frame_matrix(out)
        assert fm.images.shape == (views, frames, 3, *size)
        assert fm.masks[0].all() and not fm.masks[-1].all()  # the input view is known, the far one has holes
        if size == (H, W):
            assert np.array_equal((fm.images[0].permute(0, 2, 3, 1) * 255).round().byte().numpy(), m.frames[:frames])

    return check


def _odd(m: Media, out: Path) -> None:
    from tests.media import probe

    left_is(decoded("odd"), "odd", size=(31, 47))(m, out)
    p = probe(out / "odd_SBS_LR.mp4")
    assert p.frames == T and (p.width, p.height) == (2 * 47, 32)  # yuv420p needs even sides: the last row repeated


def _long(m: Media, out: Path) -> None:
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == sorted([f"{LONG}_anaglyph.mp4", f"{LONG}_SBS_LR.mp4", f"{LONG}_eyes", f"{LONG}_preview.png", f"{LONG}_3d_report.json",
                            f"{LONG}_3d_report.png", "work"]), names  # fmt: skip
    left_is(decoded("video"), LONG)(m, out)


def _natural(m: Media, out: Path) -> None:
    """``1.png .. 12.png`` with ``0.npy .. 11.npy``: frames in numeric order, frame ``i.png`` warped with map
    ``i-1.npy``: the right eye equals a convert of the same frames and maps named ``00000`` ... in order."""
    left, right = eyes_of(out, "f_natural")
    frames = np.stack([io.read_image(Path(m.f_natural) / f"{i + 1}.png") for i in range(12)])
    assert np.array_equal(left, frames)
    from svg3d.__main__ import main

    ordered, maps = out / "ordered" / "f_natural", out / "maps"
    for i in range(12):
        io.write_image(ordered / f"{i:05d}.png", frames[i])
        io.write_depth(maps / f"{i:05d}.npy", io.read_depth(Path(m.d_natural) / f"{i}.npy"))
    assert main(["convert", str(ordered), "-o", str(out / "ref"), "--depth-from", str(maps), *CONVERT.split()]) == 0
    assert np.array_equal(right, eyes_of(out / "ref", "f_natural")[1])


def _natural_matrix(m: Media, out: Path) -> None:
    fm = matrix.load_frame_matrix(out)
    frames = np.stack([io.read_image(Path(m.f_natural) / f"{i + 1}.png") for i in range(12)])
    assert np.array_equal((fm.images[0].permute(0, 2, 3, 1) * 255).round().byte().numpy(), frames)
    assert fm.info.frame_names == tuple(str(i + 1) for i in range(12))


def _flat_matrix(m: Media, out: Path) -> None:
    """Constant depth: one plane at the far end (10 m), where 7 cm shift nothing by a whole pixel: every view is the input."""
    fm = matrix.load_frame_matrix(out)
    assert fm.masks.all()
    assert all(np.array_equal((fm.images[v].permute(0, 2, 3, 1) * 255).round().byte().numpy(), m.frames) for v in range(3))


def _flat(m: Media, out: Path) -> None:
    """Constant depth (no depth range to spread the effect over): one plane, so the right eye is the left one
    moved by one whole-pixel shift, the same for every pixel (the column it uncovers filled)."""
    left, right = eyes_of(out, "clip")
    assert np.array_equal(left, decoded("video")(m))
    shifts = [s for s in range(-3, 4) if np.array_equal(right[:, :, 3 + s : W - 3 + s], left[:, :, 3 : W - 3])]
    assert len(shifts) == 1, shifts


def _one_frame(stem: str, expected: Callable[[Media], np.ndarray]):
    """A clip of one frame: one frame of each eye, the left one ``expected(m)``."""

    def check(m: Media, out: Path) -> None:
        left, right = eyes_of(out, stem)
        assert left.shape == (1, H, W, 3) and np.array_equal(left[0], expected(m)) and (right != left).any()

    return check


def _phone(m: Media, out: Path) -> None:
    """Read upright as its EXIF orientation says: 32 wide and 48 high, as Pillow turns it too."""
    left, right = eyes_of(out, "phone")
    want = _upright_by_pil(m.phone_photo)
    assert left.shape == (1, W, H, 3) and want.shape == (W, H, 3)
    assert np.abs(left[0].astype(int) - want).max() <= 3 and (right != left).any()  # (two JPEG decoders' rounding)


def _t2v_long_prompt(m: Media, out: Path) -> None:
    (clip,) = list(out.iterdir())
    assert len(clip.name.encode()) <= 255 and len(io.list_images(clip / "images")) == 2


def _natural_stabilised(m: Media, out: Path) -> None:
    """Frame ``i.png`` stabilised with map ``i-1.npy``: the maps keep their names, each stabilised from its own."""
    assert sorted(p.name for p in out.glob("*.npy")) == sorted(f"{i}.npy" for i in range(12))
    raw = [io.read_depth(Path(m.d_natural) / f"{i}.npy") for i in range(12)]
    got = [io.read_depth(out / f"{i}.npy") for i in range(12)]
    errors = np.array([[np.abs(g - r).mean() for r in raw] for g in got])  # (stabilised i, raw j)
    assert (errors.argmin(1) == np.arange(12)).all()  # each stabilised map is nearest its own raw map


CASES = [
    # ---- convert: inputs that cannot be read
    bad("missing-input", "convert", "{m.root}/nope.mp4 -o {out} " + CONVERT, "{m.root}/nope.mp4: no such file or folder"),
    bad("empty-file", "convert", "{m.empty} -o {out} " + CONVERT, "{m.empty}: cannot read as a video"),
    bad("corrupt-bytes", "convert", "{m.corrupt} -o {out} " + CONVERT, "{m.corrupt}: cannot read as a video"),
    bad("text-named-mp4", "convert", "{m.notes} -o {out} " + CONVERT, "{m.notes}: cannot read as a video"),
    bad("text-file", "convert", "{m.text} -o {out} " + CONVERT, "{m.text}: not a video"),
    bad("audio-only", "convert", "{m.audio} -o {out} " + CONVERT, "{m.audio}: not a video (audio only)"),
    bad("faststart-cut-in-half", "convert", "{m.fast_half} -o {out} " + CONVERT, "{m.fast_half}: its index lists 12 frames", "truncated"),
    bad("faststart-cut-at-80-percent", "convert", "{m.fast_most} -o {out} " + CONVERT, "{m.fast_most}: its index lists 12 frames", "truncated"),
    bad("index-last-cut-in-half", "convert", "{m.tail_half} -o {out} " + CONVERT, "{m.tail_half}: cannot read as a video"),
    bad("tiny-video-8px", "convert", "{m.tiny} -o {out} " + CONVERT, "{m.tiny}: 8x8 frames are too small"),
    bad("tiny-frames-12px", "convert", "{m.f_tiny} -o {out} " + CONVERT, "{m.f_tiny}: 12x12 frames are too small"),
    # ---- convert: unusual videos that must convert
    ok("ten-bit", "convert", "{m.ten_bit} -o {out} " + MODEL, left_is(decoded("ten_bit"), "ten_bit")),
    ok("yuv444", "convert", "{m.yuv444} -o {out} " + MODEL, left_is(decoded("yuv444"), "yuv444")),
    ok("rgb-samples-png-in-mov", "convert", "{m.rgb_video} -o {out} --depth-from {m.depth} " + CONVERT, left_is(lambda m: m.frames, "png_in")),
    ok("odd-size-47x31", "convert", "{m.odd} -o {out} " + MODEL.replace("eyes_png", "eyes_png,sbs"), _odd),
    ok("rotated-90", "convert", "{m.rotated} -o {out} " + MODEL, left_is(lambda m: np.rot90(decoded("video")(m), 1, axes=(1, 2)), "rotated", size=(W, H))),
    ok("variable-frame-rate", "convert", "{m.vfr} -o {out} " + MODEL, left_is(decoded("vfr"), "vfr"), "{m.vfr}: variable frame rate"),
    ok("one-frame-video", "convert", "{m.one_frame} -o {out} " + MODEL, _one_frame("one_frame", lambda m: decoded("one_frame")(m)[0])),
    ok("a-photo", "convert", "{m.photo} -o {out} " + MODEL, _one_frame("photo", lambda m: m.frames[0])),
    ok("a-phone-photo-exif-rotated", "convert", "{m.phone_photo} -o {out} " + MODEL, lambda m, out: _phone(m, out)),
    ok("spaces-and-unicode-name", "convert", "{m.unicode} -o {out} --depth-from {m.depth} " + CONVERT, left_is(decoded("video"), UNICODE)),
    ok("240-character-name", "convert", "{m.long} -o {out} --depth-from {m.depth} " + CONVERT.replace("eyes_png", "eyes_png,sbs,anaglyph"), _long),
    # ---- convert: frame folders
    bad("corrupt-frame", "convert", "{m.f_corrupt} -o {out} --depth-from {m.depth} " + CONVERT, "{m.f_corrupt}/00002.png: cannot decode image", late=True),
    bad("zero-byte-frame", "convert", "{m.f_zero} -o {out} --depth-from {m.depth} " + CONVERT, "{m.f_zero}/00003.png: cannot decode image", late=True),
    bad("mixed-size-frames", "convert", "{m.f_mixed} -o {out} --depth-from {m.depth} " + CONVERT, "{m.f_mixed}/00004.png: frame size 40x32 differs", late=True),
    ok("rgba-frames", "convert", "{m.f_rgba} -o {out} --depth-from {m.depth} " + CONVERT, left_is(lambda m: m.frames, "f_rgba")),
    ok("16-bit-frames", "convert", "{m.f_16bit} -o {out} --depth-from {m.depth} " + CONVERT, left_is(lambda m: m.frames, "f_16bit")),
    ok("grey-frames", "convert", "{m.f_grey} -o {out} --depth-from {m.depth} " + CONVERT, left_is(lambda m: np.repeat(m.frames[..., 1:2], 3, axis=-1), "f_grey")),
    ok("gappy-numbering", "convert", "{m.f_gappy} -o {out} --depth-from {m.depth} " + CONVERT, left_is(lambda m: m.frames, "f_gappy"),
       "{m.f_gappy}: 2 frame number(s) missing, the first 00002"),  # fmt: skip
    ok("natural-order-1-to-12", "convert", "{m.f_natural} -o {out} --depth-from {m.d_natural} " + CONVERT, _natural),
    bad("1.png-and-01.png", "convert", "{m.f_dup} -o {out} " + CONVERT, "{m.f_dup}: ", "01.png and 1.png are the same frame number"),
    bad("empty-folder", "convert", "{m.f_empty} -o {out} " + CONVERT, "{m.f_empty}: no .jpg or .png frames"),
    bad("folder-without-images", "convert", "{m.f_foreign} -o {out} " + CONVERT, "{m.f_foreign}: no .jpg or .png frames"),
    ok("long-frame-names", "convert", "{m.f_long} -o {out} --depth-from {m.depth} " + CONVERT, left_is(lambda m: m.frames, "f_long")),
    ok("unicode-frame-names", "convert", "{m.f_unicode} -o {out} --depth-from {m.depth} " + CONVERT, left_is(lambda m: m.frames, f"f {UNICODE}")),
    # ---- convert: depth maps (--depth-from)
    bad("depth-nan", "convert", "{m.video} -o {out} --depth-from {m.d_nan} " + CONVERT, "{m.d_nan}/00002.npy: depth has 477 NaN/inf values", late=True),
    bad("depth-inf", "convert", "{m.video} -o {out} --depth-from {m.d_inf} " + CONVERT, "{m.d_inf}/00002.npy: depth has 477 NaN/inf values", late=True),
    ok("depth-partly-negative", "convert", "{m.video} -o {out} --depth-from {m.d_negative} " + CONVERT, left_is(decoded("video")),
       "{m.d_negative}: negative depth values (from 00002.npy on) are taken as 0"),  # fmt: skip
    bad("depth-zero", "convert", "{m.video} -o {out} --depth-from {m.d_zero} " + CONVERT, "{m.d_zero}/00002.npy: depth is zero", late=True),
    ok("depth-constant", "convert", "{m.video} -o {out} --depth-from {m.d_constant} " + CONVERT, _flat),
    bad("depth-wrong-shape", "convert", "{m.video} -o {out} --depth-from {m.d_shape} " + CONVERT, "{m.d_shape}/00002.npy: depth size 40x32 differs", late=True),
    bad("depth-three-channels", "convert", "{m.video} -o {out} --depth-from {m.d_channels} " + CONVERT, "{m.d_channels}/00002.npy:", "one channel", late=True),
    bad("depth-too-few", "convert", "{m.video} -o {out} --depth-from {m.d_count} " + CONVERT, "--depth-from {m.d_count}: 5 depth maps for 6 frames"),
    bad("depth-too-many", "convert", "{m.video} -o {out} --depth-from {m.d_extra} " + CONVERT, "--depth-from {m.d_extra}: 7 depth maps for 6 frames"),
    bad("depth-bool", "convert", "{m.video} -o {out} --depth-from {m.d_bool} " + CONVERT, "{m.d_bool}/00002.npy: depth must be real numbers, got bool", late=True),
    bad("depth-complex", "convert", "{m.video} -o {out} --depth-from {m.d_complex} " + CONVERT, "{m.d_complex}/00002.npy: depth must be real numbers, got complex64",
        late=True),  # fmt: skip
    bad("depth-strings", "convert", "{m.video} -o {out} --depth-from {m.d_strings} " + CONVERT, "{m.d_strings}/00002.npy: depth must be real numbers", late=True),
    bad("depth-pickled-object", "convert", "{m.video} -o {out} --depth-from {m.d_object} " + CONVERT, "{m.d_object}/00002.npy: cannot read", late=True),
    bad("depth-truncated", "convert", "{m.video} -o {out} --depth-from {m.d_truncated} " + CONVERT, "{m.d_truncated}/00002.npy: cannot read", late=True),
    bad("depth-mixed-formats", "convert", "{m.video} -o {out} --depth-from {m.d_mixed} " + CONVERT, "{m.d_mixed}: mixed depth formats ['.npy', '.png']; keep one format"),
    bad("depth-foreign-file", "convert", "{m.video} -o {out} --depth-from {m.d_foreign} " + CONVERT, "{m.d_foreign}/notes.txt: not a depth map"),
    bad("depth-empty-folder", "convert", "{m.video} -o {out} --depth-from {m.d_empty} " + CONVERT, "{m.d_empty}: no .npy depth maps"),
    bad("depth-folder-missing", "convert", "{m.video} -o {out} --depth-from {m.root}/nodepth " + CONVERT, "{m.root}/nodepth: no such depth folder"),
    bad("depth-from-a-file", "convert", "{m.video} -o {out} --depth-from {m.a_file} " + CONVERT, "{m.a_file}: no such depth folder"),
    # ---- convert: flags out of range or in conflict
    bad("focal-inf", "convert", GOOD + " --focal inf", "--focal inf: must be a finite number"),
    bad("focal-nan", "convert", GOOD + " --focal nan", "--focal nan: must be a finite number"),
    bad("focal-negative", "convert", GOOD + " --focal -5", "--focal -5.0: must be a finite number > 0"),
    ok("baseline-1000-warns", "convert", GOOD + " --baseline 1000", left_is(decoded("video")), "the right eye shows only 0% of the input", "lower --baseline"),
    bad("baseline-inf", "convert", GOOD + " --baseline inf", "--baseline inf: must be a finite number"),
    bad("near-above-far", "convert", GOOD + " --near 5 --far 1", "--near 5.0 must be smaller than --far 1.0"),
    bad("near-nan", "convert", GOOD + " --near nan", "--near nan: must be finite"),
    ok("prompt-with-classical-fill", "convert", GOOD + " --prompt 'a red ball'", left_is(decoded("video")), "--prompt is used by the diffusion filler only"),
    bad("strength-zero", "convert", GOOD + " --strength 0", "--strength 0.0: must be in (0, 20]"),
    bad("strength-nan", "convert", GOOD + " --strength nan", "--strength nan: must be in (0, 20]"),
    bad("convergence-out-of-range", "convert", GOOD + " --convergence 1.5", "--convergence 1.5: must be in [0, 1]"),
    bad("strength-with-baseline", "convert", GOOD + " --strength 2 --baseline 0.1", "--strength and --baseline both set the 3D effect"),
    bad("one-view", "convert", GOOD + " --num-views 1", "--num-views 1: need at least 2"),
    bad("chunk-frames-zero", "convert", GOOD + " --chunk-frames 0", "--chunk-frames 0: must be >= 1"),
    bad("max-gpu-memory-zero", "convert", GOOD + " --max-gpu-memory 0", "--max-gpu-memory 0.0: must be > 0 (GiB)"),
    bad("start-frame-past-the-end", "convert", GOOD + " --start-frame 6", "--start-frame 6: the clip has 6 frames (0..5)"),
    bad("start-frame-negative", "convert", GOOD + " --start-frame -1", "--start-frame -1: must be >= 0"),
    bad("num-frames-past-the-end", "convert", GOOD + " --start-frame 4 --num-frames 5", "--num-frames 5: the clip has 6 frames, so from frame 4 at most 2"),
    bad("width-without-height", "convert", GOOD + " --width 64", "--width and --height go together"),
    bad("size-too-small", "convert", GOOD + " --width 8 --height 8", "--width/--height (8, 8): both sides must be >= 16 px"),
    bad("depth-from-and-depth-model", "convert", GOOD + " --depth-model x/y", "--depth-from and --depth-model"),
    bad("unknown-export", "convert", GOOD.replace("--exports eyes_png", "--exports eyes_png,hologram"), "--exports 'eyes_png,hologram': unknown export hologram"),
    bad("no-export", "convert", GOOD.replace("--exports eyes_png", "--exports ,"), "--exports ',': unknown export (none given)"),
    bad("unknown-codec", "convert", GOOD.replace("eyes_png", "sbs") + " --codec nocodec", "--codec nocodec: not available"),
    bad("unknown-codec-png-exports-only", "convert", GOOD + " --codec nocodec", "--codec nocodec: not available"),
    bad("crf-out-of-range", "convert", GOOD.replace("eyes_png", "sbs") + " --crf 99", "--crf 99: libx264 takes 0..51"),
    bad("unknown-pix-fmt", "convert", GOOD.replace("eyes_png", "sbs") + " --pix-fmt rgb99", "--pix-fmt rgb99: libx264 takes"),
    bad("export-named-twice", "convert", GOOD.replace("--exports eyes_png", "--exports sbs,sbs"), "--exports 'sbs,sbs': sbs named more than once"),
    bad("vr180-fov", "convert", GOOD + " --vr180 --vr180-fov 500", "--vr180-fov 500.0"),
    bad("no-cuda", "convert", GOOD.replace("--device cpu", "--device cuda:7"), "--device cuda:7: no CUDA device"),
    bad("unknown-device", "convert", GOOD.replace("--device cpu", "--device tpu"), "--device tpu: not a device"),
    bad("missing-video-model", "convert", GOOD.replace("classical", "diffusion") + " --video-model {m.root}/no-zeroscope", "--video-model", "no-zeroscope"),
    bad("missing-depth-model", "convert", "{m.video} -o {out} --depth-model {m.root}/no-depth-model " + CONVERT, "--depth-model", "no-depth-model"),
    bad("diffusion-size-not-multiple-of-8", "convert", GOOD + " --diffusion-size 50x30", "--diffusion-size 50x30: both sides must be multiples of 8"),
    bad("window-zero", "convert", GOOD + " --window 0", "--window 0: must be >= 1"),
    bad("overlap-past-window", "convert", GOOD + " --window 4 --overlap 4", "--overlap 4: must be >= 0 and smaller than --window 4"),
    bad("steps-zero", "convert", GOOD + " --steps 0", "--steps 0: must be in 1 .. 1000"),
    bad("steps-past-the-scheduler", "convert", GOOD + " --steps 2000", "--steps 2000: must be in 1 .. 1000"),
    bad("depth-resolution-tiny", "convert", GOOD + " --depth-resolution 4", "--depth-resolution 4: must be >= 16"),
    bad("no-input-no-prompt", "convert", "-o {out} " + CONVERT, "give an INPUT video or frames folder, or --prompt"),
    bad("chunk-frames-not-a-number", "convert", GOOD + " --chunk-frames many", "--chunk-frames: invalid int value: 'many'", usage=True),
    bad("unknown-flow", "convert", GOOD + " --flow sideways", "--flow: invalid choice: 'sideways'", usage=True),
    bad("missing-output-flag", "convert", "{m.video} " + CONVERT, "required: -o/--output", usage=True),
    # ---- convert: output folders
    bad("output-is-a-file", "convert", "{m.video} -o {m.a_file} --depth-from {m.depth} " + CONVERT, "-o {m.a_file}: {m.a_file} is a file, not a folder"),
    bad("output-below-a-file", "convert", "{m.video} -o {m.a_file}/out --depth-from {m.depth} " + CONVERT, "-o {m.a_file}/out: {m.a_file} is a file"),
    bad("output-inside-input-folder", "convert", "{m.f_rgba} -o {m.f_rgba}/out --depth-from {m.depth} " + CONVERT, "-o {m.f_rgba}/out: is inside the input folder"),
    bad("output-inside-depth-folder", "convert", "{m.video} -o {m.depth}/out --depth-from {m.depth} " + CONVERT, "-o {m.depth}/out: is inside the --depth-from folder"),
    bad("work-dir-is-a-file", "convert", GOOD + " --work-dir {m.a_file}", "--work-dir {m.a_file}: {m.a_file} is a file"),
    bad("input-inside-work-dir", "convert", "{m.video} -o {out} --work-dir {m.root} --depth-from {m.depth} " + CONVERT, "INPUT {m.video}: is inside the work folder"),
    bad("read-only-output", "convert", "{m.video} -o {ro}/out --depth-from {m.depth} " + CONVERT, "-o {ro}/out: cannot write in {ro} (read-only file system)"),
    bad("read-only-work-dir", "convert", GOOD + " --work-dir {ro}/work", "--work-dir {ro}/work: cannot write in {ro} (read-only file system)"),
    bad("full-output", "convert", "{m.video} -o {full}/out --depth-from {m.depth} " + CONVERT, "{full}/out/work/", ": No space left on device", late=True),
    ok("nested-output-folders", "convert", "{m.video} -o {out}/a/b/c --depth-from {m.depth} " + CONVERT, lambda m, out: left_is(decoded("video"))(m, out / "a/b/c")),
    ok("240-character-output-folder", "convert", "{m.video} -o {out}/" + LONG + "xxxx --depth-from {m.depth} " + CONVERT,
       lambda m, out: left_is(decoded("video"))(m, out / (LONG + "xxxx"))),  # fmt: skip
    # ---- svg.py (stage 4): the frame matrix and its flags
    bad("svg-missing-matrix", "svg", SVG.replace("{fm}", "{m.root}/nomatrix"), "{m.root}/nomatrix: no such frame-matrix folder"),
    bad("svg-not-a-matrix", "svg", SVG.replace("{fm}", "{m.f_empty}"), "{m.f_empty}: no frame-matrix files"),
    bad("svg-unfinished-matrix", "svg", SVG.replace("{fm}", "{unfinished}"), "{unfinished}: an unfinished frame matrix"),
    bad("svg-num-frames-zero", "svg", SVG + " --num_frames 0", "--num_frames 0: must be >= 1"),
    bad("svg-total-frames-zero", "svg", SVG + " --total_frames 0", "--total_frames 0: must be >= 1, or -1"),
    bad("svg-total-frames-past-the-end", "svg", SVG + " --total_frames 99", "{fm}: holds 6 frames, but frames 0..98 were asked for"),
    bad("svg-overlap-past-window", "svg", SVG + " --num_frames 4 --overlap 4", "--overlap 4: must be >= 0 and smaller than --num_frames 4"),
    bad("svg-batch-size-zero", "svg", SVG + " --batch_size 0", "--batch_size 0: must be >= 1"),
    bad("svg-num-views-differ", "svg", SVG + " --num_views 8", "{fm}: holds 3 views, but --num_views is 8"),
    bad("svg-width-differs", "svg", SVG + " --width 64", "{fm}: the frame matrix is 48x32, but --width/--height are 64x32"),
    bad("svg-latent-w-differs", "svg", SVG + " --latent_w 3", "--latent_w 3 does not match ceil(48 / 8) = 6"),
    bad("svg-layout-differs", "svg", SVG + " --right2left", "{fm}: the frame matrix was made left2right, but --right2left was given"),
    bad("svg-monocular-idx", "svg", SVG + " --monocular_video_idx 2", "--monocular_video_idx 2: the input view of a 3-view left2right matrix is 0"),
    bad("svg-last-view-idx", "svg", SVG + " --last_view_idx 9", "--last_view_idx 9: the matrix has views 0..2"),
    bad("svg-steps-zero", "svg", SVG + " --num_inference_steps 0", "--num_inference_steps 0: must be >= 1"),
    bad("svg-even-erode", "svg", SVG + " --erode_size 2", "--erode_size 2: must be odd"),
    bad("svg-threshold-above-one", "svg", SVG + " --threshold 2", "--threshold 2.0: must be in [0, 1]"),
    bad("svg-steps-past-the-scheduler", "svg", SVG + " --num_inference_steps 2000 --model_path {model} --device cpu",
        "--num_inference_steps 2000: the model's scheduler has 1000 timesteps"),  # fmt: skip
    bad("svg-downscale", "svg", SVG + " --downscale 4 --model_path {model} --device cpu", "--downscale 4: the model's VAE downscales by 8"),
    bad("svg-guidance-nan", "svg", SVG + " --guidance_scale nan", "--guidance_scale nan: must be finite"),
    bad("svg-guidance-inf", "svg", SVG + " --guidance_scale inf", "--guidance_scale inf: must be finite"),
    bad("svg-missing-model", "svg", SVG + " --model_path {m.root}/no-zeroscope --device cpu", "--model_path", "no-zeroscope"),
    bad("svg-no-cuda", "svg", SVG + " --device cuda:7", "--device cuda:7: no CUDA device"),
    bad("svg-output-is-a-file", "svg", SVG.replace("{out}", "{m.a_file}"), "--output_root {m.a_file}: {m.a_file} is a file, not a folder"),
    bad("svg-read-only-output", "svg", SVG.replace("{out}", "{ro}/results"), "--output_root {ro}/results: cannot write in {ro} (read-only file system)"),
    bad("svg-missing-prompt", "svg", "--init_image {m.root} --quiet", "required: --prompt", usage=True),
    ok("svg-text-to-video-long-prompt", "svg", "--prompt " + "a,very,long,prompt," * 20 + " --model_path {model} --device cpu --num_inference_steps 1 "
       "--num_frames 2 --width 32 --height 32 --videos_root {out} --quiet", _t2v_long_prompt),  # fmt: skip
    # ---- create_frame_matrix.py (stage 3)
    bad("matrix-missing-frames", "matrix", "--img_path {m.root}/noclip " + MATRIX, "{m.root}/noclip: no such file or folder"),
    bad("matrix-no-refined-depth", "matrix", "--img_path {m.only_raw} " + MATRIX, "{m.only_raw}: has depths/ but no depths_refined/", "--use_refined_depth 0"),
    bad("matrix-depth-count", "matrix", "--img_path {m.c_count} " + MATRIX, "{m.c_count}/depths_refined: 5 depth maps for 6 frames"),
    bad("matrix-depth-nan", "matrix", "--img_path {m.c_nan} " + MATRIX, "{m.c_nan}/depths_refined/00002_depth.npy: depth has 477 NaN/inf values"),
    bad("matrix-depth-shape", "matrix", "--img_path {m.c_shape} " + MATRIX, "{m.c_shape}/depths_refined/00002_depth.npy: depth size 40x32"),
    bad("matrix-depth-suffix", "matrix", "--img_path {m.clip} --depth_suffix .png " + MATRIX, "{m.refined}: no .png depth maps"),
    bad("matrix-corrupt-frame", "matrix", "--img_path {m.f_corrupt} --depth_path {m.depth} --chunk_frames 1 " + MATRIX, "{m.f_corrupt}/00002.png: cannot decode"),
    bad("matrix-num-frames-zero", "matrix", "--img_path {m.clip} " + MATRIX.replace("-1", "0"), "--num_frames 0: give a positive count"),
    bad("matrix-num-frames-past-the-end", "matrix", "--img_path {m.clip} " + MATRIX.replace("-1", "9"), "--num_frames 9: the clip has 6 frames"),
    bad("matrix-start-past-the-end", "matrix", "--img_path {m.clip} --start_frame 7 " + MATRIX, "--start_frame 7: the clip has 6 frames (0..5)"),
    bad("matrix-one-view", "matrix", "--img_path {m.clip} --num_training_views 1 " + MATRIX, "--num_training_views 1: need at least 2"),
    bad("matrix-baseline-zero", "matrix", "--img_path {m.clip} --max_baseline 0 " + MATRIX, "--max_baseline 0.0: must be a finite number > 0"),
    bad("matrix-baseline-inf", "matrix", "--img_path {m.clip} --max_baseline inf " + MATRIX, "--max_baseline inf: must be a finite number > 0"),
    bad("matrix-focal-inf", "matrix", "--img_path {m.clip} --focal inf " + MATRIX, "--focal inf: must be a finite number"),
    bad("matrix-near-above-far", "matrix", "--img_path {m.clip} --nearest_depth 5 --farest_depth 1 " + MATRIX, "--nearest_depth 5.0 must be smaller than --farest_depth 1.0"),
    bad("matrix-width-alone", "matrix", "--img_path {m.clip} --width 64 " + MATRIX, "--width and --height go together"),
    bad("matrix-size-too-small", "matrix", "--img_path {m.clip} --width 8 --height 8 " + MATRIX, "--width/--height 8x8: at least 16 px a side"),
    bad("matrix-chunk-frames-zero", "matrix", "--img_path {m.clip} --chunk_frames 0 " + MATRIX, "--chunk_frames 0: must be >= 1"),
    bad("matrix-one-plane", "matrix", "--img_path {m.clip} --num_planes 1 " + MATRIX, "--num_planes 1: need at least 2"),
    bad("matrix-output-is-a-file", "matrix", "--img_path {m.clip} " + MATRIX.replace("{out}", "{m.a_file}"), "--output_path {m.a_file}: {m.a_file} is a file"),
    bad("matrix-full-output", "matrix", "--img_path {m.clip} " + MATRIX.replace("{out}", "{full}/fm"), "{full}/fm/", "No space left on device"),
    ok("matrix-odd-size", "matrix", "--img_path {m.clip} --width 47 --height 33 --num_training_views 3 " + MATRIX, matrix_of(3, size=(33, 47)), "--width/--height 47x33"),
    ok("matrix-constant-depth", "matrix", "--img_path {m.images} --depth_path {m.d_constant} --num_training_views 3 " + MATRIX, _flat_matrix),
    ok("matrix-rgba-frames", "matrix", "--img_path {m.f_rgba} --depth_path {m.depth} --num_training_views 2 " + MATRIX, matrix_of(2)),
    ok("matrix-natural-order", "matrix", "--img_path {m.f_natural} --depth_path {m.d_natural} --num_training_views 2 " + MATRIX, _natural_matrix),
    # ---- svg_run.py (stage 1)
    bad("depth-stage-missing-input", "depth", "--img-path {m.root}/noclip --outdir {out} --quiet", "{m.root}/noclip: no such file or folder"),
    bad("depth-stage-corrupt-video", "depth", "--img-path {m.corrupt} --outdir {out} --quiet", "{m.corrupt}: cannot read as a video"),
    bad("depth-stage-audio-only", "depth", "--img-path {m.audio} --outdir {out} --quiet", "{m.audio}: not a video (audio only)"),
    bad("depth-stage-faststart-cut", "depth", "--img-path {m.fast_most} --outdir {out} --quiet", "{m.fast_most}: its index lists 12 frames", "truncated"),
    bad("depth-stage-tiny", "depth", "--img-path {m.f_tiny} --outdir {out} --quiet", "{m.f_tiny}: 12x12 frames are too small"),
    bad("depth-stage-encoder-and-model", "depth", "--img-path {m.images} --outdir {out} --encoder vitl --model x/y --quiet", "--model x/y and --encoder vitl"),
    bad("depth-stage-batch-zero", "depth", "--img-path {m.images} --outdir {out} --batch-size 0 --quiet", "--batch-size 0: must be >= 1"),
    bad("depth-stage-grey-no-preview", "depth", "--img-path {m.images} --outdir {out} --grayscale --no-preview --quiet", "--grayscale styles the previews, but --no-preview"),
    bad("depth-stage-missing-model", "depth", "--img-path {m.images} --outdir {out} --model {m.root}/no-depth-model --device cpu --quiet", "--model", "no-depth-model"),
    bad("depth-stage-outdir-is-a-file", "depth", "--img-path {m.images} --outdir {m.a_file} --quiet", "--outdir {m.a_file}: {m.a_file} is a file, not a folder"),
    bad("depth-stage-read-only-outdir", "depth", "--img-path {m.images} --outdir {ro}/d --quiet", "--outdir {ro}/d: cannot write in {ro} (read-only file system)"),
    bad("depth-stage-full-outdir", "depth", "--img-path {m.images} --outdir {full}/d --model {dm} --device cpu --quiet", "{full}/d/", "No space left on device"),
    bad("depth-stage-1.png-and-01.png", "depth", "--img-path {m.f_dup} --outdir {out} --quiet", "{m.f_dup}: 01.png and 1.png are the same frame number"),
    bad("depth-stage-corrupt-frame", "depth", "--img-path {m.f_corrupt} --outdir {out} --model {dm} --device cpu --quiet", "{m.f_corrupt}/00002.png: cannot decode"),
    ok("depth-stage-natural-order", "depth", "--img-path {m.f_natural} --outdir {out} --model {dm} --device cpu --quiet",
       depth_maps_named(lambda m: [f"{i + 1}_depth" for i in range(12)])),  # fmt: skip
    ok("depth-stage-long-names", "depth", "--img-path {m.f_long} --outdir {out} --model {dm} --device cpu --quiet --no-preview",
       depth_maps_named(lambda m: [f"{LONG}{t}_depth" for t in range(T)])),  # fmt: skip
    ok("depth-stage-unicode-video", "depth", f"--img-path {{m.unicode}} --outdir '{{out}}/{UNICODE}' --model {{dm}} --device cpu --quiet",
       depth_maps_named(lambda m: [f"{t:05d}_depth" for t in range(T)], UNICODE)),  # fmt: skip
    ok("depth-stage-16-bit-frames", "depth", "--img-path {m.f_16bit} --outdir {out} --model {dm} --device cpu --quiet",
       depth_maps_named(lambda m: [f"{t:05d}_depth" for t in range(T)])),  # fmt: skip
    # ---- svg_enhance_depth.py (stage 2)
    bad("stabilise-missing-frames", "stabilise", STAB.replace("{m.images}", "{m.root}/noclip"), "{m.root}/noclip: no such file or folder"),
    bad("stabilise-missing-depth", "stabilise", STAB.replace("{m.depths}", "{m.root}/nodepth"), "{m.root}/nodepth: no such depth folder"),
    bad("stabilise-depth-count", "stabilise", STAB.replace("{m.depths}", "{m.d_count}"), "{m.d_count}: 5 depth maps for 6 frames"),
    bad("stabilise-out-is-depth", "stabilise", STAB.replace("{out}", "{m.depths}"), "--out_dir {m.depths}: is the depth folder"),
    bad("stabilise-dis-small", "stabilise", STAB + " --small", "--flow dis uses no network: drop --model / --small"),
    bad("stabilise-mixed-precision-cpu", "stabilise", STAB + " --mixed_precision", "--mixed_precision needs a CUDA device"),
    bad("stabilise-even-window", "stabilise", STAB + " --window_size 2", "--window_size 2: must be odd"),
    bad("stabilise-eps-zero", "stabilise", STAB + " --eps 0", "--eps 0.0: must be > 0"),
    bad("stabilise-radius-negative", "stabilise", STAB + " --radius -1", "--radius -1: must be >= 0"),
    bad("stabilise-iters-zero", "stabilise", STAB + " --iters 0", "--iters 0: must be >= 1"),
    bad("stabilise-raft-offline", "stabilise", STAB.replace("--flow dis", "--flow raft"), "RAFT 'raft_large': cannot load it", "--model FILE"),
    bad("stabilise-raft-not-a-checkpoint", "stabilise", STAB.replace("--flow dis", "--flow raft") + " --model {m.a_file}", "{m.a_file}: cannot read as a torch checkpoint"),
    bad("stabilise-tiny", "stabilise", STAB.replace("{m.images}", "{m.f_tiny}"), "{m.f_tiny}: 12x12 frames are too small"),
    bad("stabilise-depth-nan", "stabilise", STAB.replace("{m.depths}", "{m.d_nan}"), "{m.d_nan}/00002.npy: depth has 477 NaN/inf values"),
    bad("stabilise-depth-complex", "stabilise", STAB.replace("{m.depths}", "{m.d_complex}"), "{m.d_complex}/00002.npy: depth must be real numbers, got complex64"),
    bad("stabilise-depth-shape", "stabilise", STAB.replace("{m.depths}", "{m.d_shape}"), "{m.d_shape}/00002.npy: depth size 40x32"),
    bad("stabilise-mixed-formats", "stabilise", STAB.replace("{m.depths}", "{m.d_mixed}"), "{m.d_mixed}: mixed depth formats", "or pick one with --depth_suffix"),
    bad("stabilise-file-suffix", "stabilise", STAB + " --file_suffix .jpg", "{m.images}: no .jpg frames (--file_suffix)"),
    bad("stabilise-out-is-a-file", "stabilise", STAB.replace("{out}", "{m.a_file}"), "--out_dir {m.a_file}: {m.a_file} is a file, not a folder"),
    bad("stabilise-full-out", "stabilise", STAB.replace("{out}", "{full}/s"), "{full}/s/", "No space left on device"),
    ok("stabilise-partly-negative", "stabilise", STAB.replace("{m.depths}", "{m.d_negative}") + " --no-preview",
       depth_maps_named(lambda m: [f"{t:05d}" for t in range(T)]), "{m.d_negative}: negative depth values (from 00002.npy on)"),  # fmt: skip
    ok("stabilise-natural-order", "stabilise", STAB.replace("{m.images}", "{m.f_natural}").replace("{m.depths}", "{m.d_natural}"), _natural_stabilised),
    ok("stabilise-video-input", "stabilise", STAB.replace("{m.images}", "{m.video}"), depth_maps_named(lambda m: [f"{t:05d}_depth" for t in range(T)])),
    # ---- run.sh: its own refusals, and every CLI's, through it
    bad("run.sh-unknown-command", "run.sh", "nonsense", "run.sh: unknown command 'nonsense'", env="BARE=1"),
    bad("run.sh-unknown-recipe", "run.sh", "reproduce sideways", "run.sh reproduce: unknown recipe 'sideways'", env="BARE=1"),
    bad("run.sh-no-clips", "run.sh", "reproduce", "run.sh reproduce: no clip folders with images/ under {m.f_empty}/", env="SVG_VIDEOS={m.f_empty}"),
    bad("run.sh-convert", "run.sh", "convert {m.fast_half} -o {out} " + CONVERT, "{m.fast_half}: its index lists 12 frames", "truncated"),
    bad("run.sh-matrix", "run.sh", "matrix --img_path {m.c_nan} " + MATRIX, "{m.c_nan}/depths_refined/00002_depth.npy: depth has"),
    bad("run.sh-depth", "run.sh", "depth --img-path {m.audio} --outdir {out} --quiet", "{m.audio}: not a video (audio only)"),
    bad("run.sh-stabilise", "run.sh", "stabilise " + STAB.replace("{m.depths}", "{m.d_count}"), "{m.d_count}: 5 depth maps for 6 frames"),
]


def nothing_complete(case: Case, out: Path, extra: dict) -> None:
    """What a refused run may leave: no export, no depth map, no frame matrix, no result, no part; and a convert
    refused before its stages ran (not ``late``) left no stage record either."""
    for folder in {out, *(Path(_format(a, None, out, extra)) for a in shlex.split(case.args) if "{ro}" in a or "{full}" in a)}:
        if not folder.exists():
            continue
        entries = list(folder.rglob("*"))
        assert not [p for p in entries if ".svg3d-part" in p.name or ".part." in p.name], entries
        if case.cli == "convert":
            assert {p.name for p in folder.iterdir()} <= {"work", ".svg3d.lock"}, list(folder.iterdir())
            assert not (folder / "work" / "export.json").exists()
            if not case.late:
                assert not list((folder / "work").glob("*.json")), list((folder / "work").iterdir())
        elif case.cli in ("depth", "stabilise"):
            assert not list(folder.rglob("*.npy")), entries
        elif case.cli == "matrix":
            from svg3d.checks import InputError

            if list(folder.iterdir()):
                with pytest.raises(InputError):
                    matrix.read_matrix_info(folder)
        elif case.cli == "svg":
            assert not [p for p in entries if p.name in ("results3d.mp4", "manifest.json")], entries


def _format(text: str, m: Media | None, out: Path, extra: dict) -> str:
    return text.format(m=m, out=out, **extra)


def _run_sh(argv: list[str], env: dict[str, str], root: Path) -> tuple[int, str]:
    done = subprocess.run(["bash", str(root / "run.sh"), *argv], capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    return done.returncode, done.stderr


def _bare_root(root: Path) -> Path:
    """The repository without a ``.venv`` (run.sh would create one)."""
    root.mkdir()
    for entry in ("run.sh", "requirements.txt", "svg.py", "create_frame_matrix.py", "svg3d", "third_party"):
        (root / entry).symlink_to(ROOT / entry)
    return root


@pytest.fixture(scope="module")
def run_sh_root(tmp_path_factory) -> Path:
    """The repository as run.sh sees it, its ``.venv`` a view of the virtual environment running the tests
    (its pyvenv.cfg and lib/, and the stamp run.sh's setup compares with requirements.txt), so that run.sh
    neither creates one nor installs anything (no network in tests)."""
    import hashlib

    if (ROOT / ".venv" / "bin" / "python").exists():  # CI: ./run.sh test set it up
        return ROOT
    prefix = Path(sys.prefix)
    if sys.prefix == sys.base_prefix or not (prefix / "pyvenv.cfg").is_file():
        pytest.skip("run.sh needs a virtual environment, and the tests run outside one")
    root = _bare_root(tmp_path_factory.mktemp("repo") / "repo")
    venv = root / ".venv"
    (venv / "bin").mkdir(parents=True)
    shutil.copy(prefix / "pyvenv.cfg", venv / "pyvenv.cfg")
    (venv / "lib").symlink_to(prefix / "lib")
    (venv / "bin" / "python").symlink_to(Path(sys.executable).resolve())
    (venv / ".requirements.sha256").write_text(hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest() + "\n")
    return root


def _params(cases: list[Case]):
    for c in cases:
        marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        yield pytest.param(c, id=c.id, marks=marks)


@pytest.mark.parametrize("case", _params(CASES))
def test_catalogue(case: Case, media: Media, tmp_path, capsys, request, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no RAFT weights cached
    extra = {key: request.getfixturevalue(name) for key, name in FIXTURES.items() if f"{{{key}}}" in case.args}
    if "{unfinished}" in case.args:  # a frame matrix whose writer was killed after its first frame
        unfinished = tmp_path / "unfinished"
        shutil.copytree(request.getfixturevalue("frame_matrix"), unfinished)
        (unfinished / matrix.MANIFEST).unlink()
        for p in unfinished.glob("0000[1-5]_*"):
            p.unlink()
        io.write_text(unfinished / matrix.UNFINISHED, "")
        extra["unfinished"] = unfinished
    out = tmp_path / "out"
    argv = [_format(t, media, out, extra) for t in shlex.split(case.args)]
    if case.cli == "run.sh":
        env = dict(_format(kv, media, out, extra).split("=", 1) for kv in case.env.split())
        root = _bare_root(tmp_path / "bare") if env.pop("BARE", None) else request.getfixturevalue("run_sh_root")
        rc, err = _run_sh(argv, env, root)
        assert root == ROOT or (root / ".venv").exists() == (root != tmp_path / "bare")  # (no setup for a refusal)
    elif case.usage:
        with pytest.raises(SystemExit) as exc:
            _main(case.cli)(argv)
        rc, err = exc.value.code, capsys.readouterr().err
    else:
        rc, err = _main(case.cli)(argv), capsys.readouterr().err
    assert "Traceback" not in err and "Logging error" not in err, err
    assert rc == case.rc, err
    says = [_format(s, media, out, extra) for s in case.says]
    lines = err.strip().splitlines()
    if case.usage:  # argparse: its usage, then one error line naming the flag
        assert "error: argument " in lines[-1] or "error: the following arguments are required" in lines[-1], err
        assert all(s in lines[-1] for s in says), (says, lines[-1])
    elif case.rc == 2:  # (run.sh's own refusals start with its name)
        assert len(lines) == 1 and lines[0].startswith(("error: ", "run.sh") if case.cli == "run.sh" else "error: "), err
        assert all(s in lines[0] for s in says), (says, lines[0])
    else:
        assert not [line for line in lines if line.startswith("error")], err
        for s in case.warns:
            assert _format(s, media, out, extra) in err, (s, err)
        case.check(media, out)
    if case.rc == 2:
        nothing_complete(case, out, extra)


def test_the_catalogue_is_large_and_covers_every_cli():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)
    assert {c.cli for c in CASES} == {"convert", "svg", "matrix", "depth", "stabilise", "run.sh"}
    assert all(c.cli == "convert" for c in CASES if c.late)  # (only convert has stages a refusal could come after)


@pytest.mark.parametrize("cli", ["depth", "stabilise"])
def test_a_seed_stage_failing_after_its_first_chunk_leaves_the_folder_as_it_was(cli, media, depth_model, tmp_path, capsys):
    """20 frames, chunks of 16: frame 18 is bad, so one chunk's maps were made before the failure. The output
    folder holds an earlier run's complete set: it must still hold exactly that set, not a mix of two runs."""
    n = 20
    images, depths, out = tmp_path / "images", tmp_path / "depths", tmp_path / "out"
    frames = np.concatenate([media.frames] * 4)[:n]
    for t in range(n):
        io.write_image(images / f"{t:05d}.png", frames[t])
        io.write_depth(depths / f"{t:05d}_depth.npy", media.disparity[t % T])
        io.write_depth(out / f"{t:05d}_depth.npy", np.full((H, W), 7.0, np.float32))  # the earlier run's
    bad = images / "00018.png" if cli == "depth" else depths / "00018_depth.npy"
    good = bad.read_bytes()
    bad.write_bytes(b"damaged" if cli == "depth" else _npy(np.full((H, W), np.nan, np.float32)))
    argv = {"depth": ["--img-path", str(images), "--outdir", str(out), "--model", str(depth_model), "--device", "cpu", "--quiet"],
            "stabilise": ["--path", str(images), "--depth_path", str(depths), "--out_dir", str(out), "--flow", "dis", "--device", "cpu", "--quiet"]}[cli]  # fmt: skip
    assert _main(cli)(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}: ") and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in out.iterdir()) == [f"{t:05d}_depth.npy" for t in range(n)]  # no part, no preview
    assert all((io.read_depth(p) == 7.0).all() for p in out.iterdir())
    bad.write_bytes(good)
    assert _main(cli)(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [*(f"{t:05d}_depth.npy" for t in range(n)), "preview"]
    assert not any((io.read_depth(p) == 7.0).all() for p in out.glob("*.npy"))


# --------------------------------------------------------------------------------------------------
# kill -9 in each stage and in the export; a full disk in a stage and in the export


CHUNKED = ("depth", "stabilised", "filled")
KILL_FRAMES = 24  # frames of the clip killed runs convert, one chunk each: the stage takes long enough to be caught in


@pytest.fixture(scope="module")
def kill_clip(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A 24-frame clip, its depth folder, and the output folder of an uninterrupted convert of it (chunks of 8)."""
    from svg3d.__main__ import main

    folder = tmp_path_factory.mktemp("kill")
    rgb, z = scene.render(scene.make_scene(1, num_frames=KILL_FRAMES, height=H, width=W))
    frames = (rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()  # T 3 H W -> T H W 3
    video = encode(folder / "clip.mp4", frames, pix_fmt="yuv444p")
    for t, d in enumerate(z.numpy()):
        io.write_depth(folder / "depth" / f"{t:05d}.npy", (1.0 / d).astype(np.float32))
    reference = folder / "reference"
    assert main(convert_argv(video, folder / "depth", reference, chunk=8)) == 0
    return video, folder / "depth", reference


def convert_argv(video: Path, depth: Path, out: Path, *, chunk: int, extra: tuple[str, ...] = ()) -> list[str]:
    return ["convert", str(video), "-o", str(out), "--depth-from", str(depth), *CONVERT.replace("--chunk-frames 4", f"--chunk-frames {chunk}").split(), *extra]


def record(work_dir: Path, stage: str) -> dict | None:
    import json

    try:
        return json.loads(stage_folder(work_dir, stage).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None


def parts_in(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".svg3d-part" in p.name] if folder.is_dir() else []


def inside_stage(stage: str, out: Path) -> bool:
    """The run is inside ``stage``: some of its chunks are committed, not all (the export: a part is being written)."""
    if stage == "export":
        return bool(parts_in(out)) and not (out / "work" / "export.json").exists()
    r = record(out / "work", stage)
    return r is not None and 1 <= len(r["chunks"]) and not r["complete"]


def same_eyes(out: Path, reference: Path) -> None:
    for side in ("left", "right"):
        got, want = (io.read_frames(io.list_images(f / "clip_eyes" / side)) for f in (out, reference))
        assert np.array_equal(got, want), side


@pytest.mark.parametrize("stage", [*CHUNKED, "export"])
def test_kill_9_inside_a_stage_then_the_same_command_completes_as_an_uninterrupted_run(stage, kill_clip, tmp_path):
    import signal
    import time

    from svg3d.__main__ import main

    video, depth, reference = kill_clip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    for attempt in range(3):  # a stage can finish between two looks: then the kill came too late, and we try again
        out = tmp_path / f"out{attempt}"
        argv = convert_argv(video, depth, out, chunk=1)
        proc = subprocess.Popen([sys.executable, "-m", "svg3d", *argv], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and not inside_stage(stage, out):
            time.sleep(0.002)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.returncode == -signal.SIGKILL and inside_stage(stage, out):
            break
    else:
        pytest.fail(f"convert never was inside {stage} when killed")
    work_dir = out / "work"
    # (chunks of one frame; the fill computes two runs of them at once on 2 cores and more: the first missing frame)
    firsts = set() if stage == "export" else {c["first"] for c in record(work_dir, stage)["chunks"]}
    done, resumed = len(firsts), next(f for f in range(KILL_FRAMES + 1) if f not in firsts)
    assert not (out / "clip_eyes").exists()  # nothing complete-looking: the killed stage's output is only chunks or parts
    if stage != "export":  # as a kill inside a chunk's write leaves it (io.atomic_path's temporary names)
        folder = stage_folder(work_dir, stage)
        for tmp in (folder / ".chunk_000009.a1b2c3d4.part.npz", work_dir / f".{folder.name}.e5f6g7h8.part.json"):
            tmp.write_bytes(b"half a file")
    assert main(argv) == 0
    litter = [p for p in out.rglob(".*") if ".part" in p.name]
    assert not litter, litter  # the killed run's parts are gone, in the output folder and in the work folder
    log = (work_dir / "convert.log").read_text()
    if stage != "export":
        assert f"{stage:10s} resumed at frame {resumed}: {done} of {KILL_FRAMES} frames were done" in log
    same_eyes(out, reference)
    for s in CHUNKED:  # every stage's data is bit for bit the uninterrupted run's (the digest hashes every frame)
        assert record(work_dir, s)["digest"] == record(reference / "work", s)["digest"], s


def test_a_full_disk_inside_a_stage_is_one_line_and_the_run_resumes_once_there_is_room(kill_clip, tmp_path, capsys):
    from svg3d.__main__ import main

    video, depth, reference = kill_clip
    with tmpfs(tmp_path / "disk", "1m") as disk:
        filler = fill_up(disk, leave=48 << 10)
        out = tmp_path / "out"
        argv = convert_argv(video, depth, out, chunk=1, extra=("--work-dir", str(disk / "work")))
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert err.startswith(f"error: {disk / 'work'}/") and err.endswith(": No space left on device"), err
        stages = [s for s in CHUNKED if record(disk / "work", s) is not None]
        stopped = [s for s in stages if not record(disk / "work", s)["complete"]]
        assert stopped, stages  # it stopped inside a stage (the stages run at once: the ones after it stopped too)
        named = err.removeprefix("error: ").split(":")[0]
        assert any(named.startswith(str(disk / "work" / s)) for s in stopped), (named, stages)  # the file a stage was writing
        assert {p.name for p in out.iterdir()} == {".svg3d.lock"}  # no export
        filler.unlink()
        assert main(argv) == 0
        same_eyes(out, reference)


def test_a_full_disk_inside_the_export_is_one_line_with_every_part_removed(kill_clip, tmp_path, capsys):
    from svg3d.__main__ import main

    video, depth, reference = kill_clip
    with tmpfs(tmp_path / "disk", "1m") as disk:
        out = disk / "out"
        # one stage after another: with the stages at once the others stop too when the export fails, and resume later
        argv = convert_argv(video, depth, out, chunk=4, extra=("--work-dir", str(tmp_path / "work"), "--no-concurrent-stages"))
        out.mkdir()
        filler = fill_up(disk, leave=32 << 10)
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: {out / 'clip_eyes'}: cannot write (No space left on device)", err
        assert {p.name for p in out.iterdir()} == {".svg3d.lock"}  # the parts are removed, nothing else was written
        assert all(record(tmp_path / "work", s)["complete"] for s in CHUNKED) and record(tmp_path / "work", "export") is None
        filler.unlink()
        assert main(argv) == 0
        assert "filled     up to date" in (tmp_path / "work" / "convert.log").read_text()  # only the export ran again
        same_eyes(out, reference)


def test_svg_py_on_a_full_disk_leaves_no_complete_looking_result(frame_matrix, model_dir, tmp_path, capsys):
    """An earlier result in --output_root, a disk too full for the new one: one line naming a file, and the
    earlier manifest (which marks a complete result) is gone with the half-replaced views."""
    with tmpfs(tmp_path / "disk", "256k") as disk:
        root = disk / "results"
        io.write_text(root / "manifest.json", "{}")  # the earlier run's
        fill_up(disk)
        argv = ["--prompt", "p", "--init_image", str(frame_matrix), "--output_root", str(root), "--model_path", str(model_dir),
                "--device", "cpu", "--num_inference_steps", "1", "--quiet"]  # fmt: skip
        assert _main("svg")(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {root}/") and err.endswith(": No space left on device") and len(err.splitlines()) == 1, err
        assert not (root / "manifest.json").exists() and not (root / "results3d.mp4").exists()


# --------------------------------------------------------------------------------------------------
# the same seed, the same bytes


def test_diffusion_is_repeatable_by_seed_and_changes_with_it(media, model_dir, tmp_path):
    """``convert --fill diffusion`` with the tiny zeroscope: one seed, byte-identical exports and stage data; another
    seed, other filled pixels (and the same depth: the seed only drives the fill)."""
    from svg3d.__main__ import main
    from svg3d.work import read_chunk

    def run(name: str, seed: int) -> Path:
        out = tmp_path / name
        extra = ("--video-model", str(model_dir), "--steps", "2", "--window", "4", "--overlap", "1", "--diffusion-size", "48x32",
                 "--num-views", "3", "--seed", str(seed))  # fmt: skip
        argv = convert_argv(Path(media.video), Path(media.depth), out, chunk=3, extra=extra)
        assert main([a if a != "classical" else "diffusion" for a in argv]) == 0
        return out

    def data(out: Path, stage: str) -> dict[str, np.ndarray]:
        r = record(out / "work", stage)
        chunks = [read_chunk(stage_folder(out / "work", stage) / c["file"]) for c in r["chunks"]]
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def files(out: Path) -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "clip_eyes").rglob("*.png"))}

    a, b, c = run("a", 7), run("b", 7), run("c", 8)
    assert files(a) == files(b) and len(files(a)) == 2 * T
    for stage in ("depth", "stabilised", "denoised", "filled"):
        da, db = data(a, stage), data(b, stage)
        assert da.keys() == db.keys() and all(np.array_equal(da[k], db[k]) for k in da), stage
    assert files(a) != files(c)
    assert not np.array_equal(data(a, "denoised")["views"], data(c, "denoised")["views"])
    holes = data(a, "filled")["holes"]
    assert holes.any() and not np.array_equal(data(a, "filled")["values"][holes], data(c, "filled")["values"][holes])
    assert record(a / "work", "stabilised")["digest"] == record(c / "work", "stabilised")["digest"]


# --------------------------------------------------------------------------------------------------
# --help


HELP = {
    "convert": ["convert", "--help"],
    "svg": ["--help"],
    "matrix": ["--help"],
    "depth": ["--help"],
    "stabilise": ["--help"],
}


def _parser(cli: str):
    """The argparse parser of a CLI (convert's sub-parser)."""
    import argparse

    if cli == "convert":
        from svg3d.cli import create_parser

        sub = next(a for a in create_parser()._actions if isinstance(a, argparse._SubParsersAction))
        return sub.choices["convert"]
    return _load(*SCRIPTS[cli]).create_parser()


@pytest.mark.parametrize("cli", HELP)
def test_help_states_each_default_once_and_none_on_required_options(cli, capsys):
    with pytest.raises(SystemExit) as exc:
        _main(cli)(HELP[cli])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    entries = [" ".join(e.split()) for e in re.split(r"\n(?=  \S)", text.split("options:", 1)[1])]  # one per option, unwrapped
    assert len(entries) >= 8, text
    assert "(default: None)" not in " ".join(entries), [e for e in entries if "(default: None)" in e]
    assert not [e for e in entries if e.count("(default:") > 1]  # e.g. "(default: 16) (default: None)"
    required = [a.option_strings[0] for a in _parser(cli)._actions if a.required and a.option_strings]
    assert required, cli  # every one of these CLIs has one (its input or output)
    for flag in required:  # a required option has no default to state
        (entry,) = [e for e in entries if e.startswith(f"{flag} ")]
        assert "(default:" not in entry, entry
