"""Benchmark (quality): comfort on rendered scenes with exact depth and on real stereo captures, measured between the
exported eyes.

    python bench/bench_comfort.py --out bench/results/comfort.json                 # rendered: 320x128, 24 frames each
    python bench/bench_comfort.py --clips real --out bench/results/comfort_real.json   # bench/real_stereo (prepare.py first)

Every clip is converted through ``convert.convert`` with ``--strength auto`` for a TV (``--screen``) and
``--depth-from`` its true depth; the parallax between the exported eyes is measured by block matching
(``tests.test_comfort.measure``, here keeping only the pixels whose match is unique: a real white wall matches
anywhere) and compared with the budget. Per clip: the strength chosen, the share of pixels inside the budget (report
and measured, worst frame), window violations found and left, the largest frame-to-frame change of a point's
parallax inside a shot from the report against what a viewer sees, and, for clips of several frames, that change
measured: the line the measured whole-pixel shifts follow over the true depth (``tests.test_comfort._mapping``),
between the first and the last frame, per frame.

Rendered: for each camera motion of ``svg3d.scene`` (static, handheld, truck, dolly), plus the dolly looking down
at the ground (``tests.test_comfort``'s, whose pixels cover the depths evenly enough to measure that change).
Real (``--clips real``): the OAK-D Lite pairs of bench/real_stereo (12 stills, and 3 pseudo-videos of 24 frames: a
still pair under a pan, a zoom and a shake), the left view as the input and the true pair's SGBM disparity as
depth (proportional to inverse depth, so the depth structure is exact), at ``--real-width`` (area resize), 24 fps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from svg3d import comfort, io, scene  # noqa: E402
from tests.test_comfort import H, W, _mapping, convert_clip, dolly_scene, measure, write_clip  # noqa: E402

REAL = Path(__file__).resolve().parent / "real_stereo" / "data"
UNIQUE = 2.0  # measured pixels: the best match's cost at least this much (0-255) below any other 2+ px away


def score(frames: np.ndarray, disparity: np.ndarray, screen: str, fps: float | None = None) -> dict:
    """Convert one clip (``uint8 (T, H, W, 3)``, true inverse depth ``(T, H, W)``) and measure it."""
    budget = comfort.screen_budget(screen)
    width = frames.shape[2]
    px = 100 / width
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder, depth = write_clip(root, [(frames, disparity)])
        if fps is not None:
            io.write_text(folder / "fps.txt", f"{fps:g}\n")
        started = time.perf_counter()
        left, right, rep = convert_clip(folder, depth, root / "out", auto_strength=True, screen=screen)
        seconds = time.perf_counter() - started
    inside, matched, shifts = [], [], []
    for a, b in zip(left, right, strict=True):
        shift = measure(a, b, unique=UNIQUE)
        shifts.append(shift)
        ok = shift[np.isfinite(shift)] * px
        matched.append(float(np.isfinite(shift).mean()))
        inside.append(float(((ok >= -budget.near - px) & (ok <= budget.far + px)).mean()))
    change = rep["screen_change"]
    row = {
        "frames": len(left), "size": [width, frames.shape[1]], "strength": [s["strength"] for s in rep["shots"]],
        "rho": [s["rho"] for s in rep["shots"]], "report_inside_min": rep["inside_budget_min"],
        "measured_inside_min": min(inside), "matched_min": min(matched), "violation_frames": len(rep["violation_frames"]),
        "handled": [s["handled"] for s in rep["shots"]], "unhandled_violation_frames": len(rep["unhandled_violation_frames"]),
        "change_max": change["max_per_frame"], "change_visible": change["visible"],
        "frames_over_visible": sum(x > change["visible"] for x in change["per_frame"]), "seconds": round(seconds, 1),
    }  # fmt: skip
    if len(left) > 1:  # the change measured between the eyes: first and last frame, per frame between them
        first, last = (_mapping(shifts[t], disparity[t], px=px) for t in (0, -1))
        d = np.array([max(first[2], last[2]), min(first[3], last[3])])
        if d[1] > d[0]:  # (NaN: too few depths measured)
            moved = np.abs((last[0] + last[1] * d) - (first[0] + first[1] * d)).max()
            row["measured_change_per_frame"] = float(moved / (len(left) - 1))
    return row


def real_items(width: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The real items at ``width``: left views and their true disparity (px at that width)."""
    items = {}
    for path in sorted(REAL.glob("*.npz")):
        z = np.load(path)
        left, disparity = z["left"], z["disparity"]
        scale = width / left.shape[2]
        size = (width, round(left.shape[1] * scale))
        left = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in left])
        disparity = np.stack([cv2.resize(d, size, interpolation=cv2.INTER_AREA) for d in disparity]) * scale
        items[path.stem] = (left, disparity.astype(np.float32))
    return items


def machine() -> str:
    """The CPU's model and core count (the benches' timings are indicative only on a shared machine)."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")] if cpuinfo.is_file() else []
    return f"{names[0] if names else platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU only"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=24, help="frames of each rendered clip")
    p.add_argument("--screen", default="tv")
    p.add_argument("--clips", nargs="+", choices=("rendered", "real"), default=["rendered"], help="which clips")
    p.add_argument("--real-width", type=int, default=288, help="the real items' width (px; prepared at 576)")
    p.add_argument("--only", nargs="*", default=None, help="only these clips (names as in the results)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args()
    results = {
        "command": " ".join(["python", *sys.argv]), "screen": args.screen, "machine": machine(),
        "rendered": {}, "real": {},
    }  # fmt: skip

    def report(name: str, row: dict) -> None:  # printed, and the JSON rewritten after every clip (a long run shows its part)
        print(name, json.dumps(row), flush=True)
        if args.out is not None:
            args.out.write_text(json.dumps(results, indent=1) + "\n")

    rendered = {motion: lambda m=motion: scene.make_scene(2, num_frames=args.frames, height=H, width=W, camera_motion=m)
                for motion in ("static", "handheld", "truck", "dolly")}  # fmt: skip
    rendered["dolly-ground"] = lambda: dolly_scene(args.frames)
    for name, make in rendered.items() if "rendered" in args.clips else ():
        if args.only is not None and name not in args.only:
            continue
        rgb, z = scene.render(make())
        row = score((rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy(), (1 / z).numpy(), args.screen)
        results["rendered"][name] = row
        report(name, row)
    if "real" in args.clips:
        if not REAL.is_dir():
            raise SystemExit(f"{REAL}: no real items; run python bench/real_stereo/prepare.py first")
        for name, (left, disparity) in real_items(args.real_width).items():
            if args.only is not None and name not in args.only:
                continue
            row = score(left, disparity, args.screen, fps=24.0)
            results["real"][name] = row
            report(name, row)


if __name__ == "__main__":
    main()
