"""Benchmark (quality): comfort on rendered scenes with exact depth, measured between the exported eyes.

    python bench/bench_comfort.py                  # 320x128, 24 frames per camera motion, --screen tv --strength auto
    python bench/bench_comfort.py --out bench/results/comfort.json

For each camera motion of ``svg3d.scene`` (static, handheld, truck, dolly) a clip is converted through
``convert.convert`` with ``--strength auto`` for a TV; the parallax between the exported eyes is measured by block
matching (``tests.test_comfort.measure``) and compared with the budget; the report's numbers are read beside it:
the strength chosen, the share of pixels inside the budget (report and measured, worst frame), window violations
found and left, and the largest frame-to-frame change of a point's parallax inside a shot against what a viewer sees.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from svg3d import comfort, scene  # noqa: E402
from tests.test_comfort import PX, H, W, convert_clip, measure, write_clip  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--screen", default="tv")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args()
    budget = comfort.screen_budget(args.screen)
    results = {
        "size": [W, H],
        "frames": args.frames,
        "screen": args.screen,
        "machine": platform.machine(),
        "motions": {},
    }
    for motion in ("static", "handheld", "truck", "dolly"):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            rgb, z = scene.render(scene.make_scene(2, num_frames=args.frames, height=H, width=W, camera_motion=motion))
            shot = ((rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy(), (1 / z).numpy())
            frames, depth = write_clip(root, [shot])
            left, right, rep = convert_clip(frames, depth, root / "out", auto_strength=True, screen=args.screen)
        inside = []
        for a, b in zip(left, right, strict=True):
            par = measure(a, b) * PX
            ok = par[np.isfinite(par)]
            inside.append(float(((ok >= -budget.near - PX) & (ok <= budget.far + PX)).mean()))
        change = rep["screen_change"]
        row = {
            "strength": [s["strength"] for s in rep["shots"]], "report_inside_min": rep["inside_budget_min"],
            "measured_inside_min": min(inside), "violation_frames": len(rep["violation_frames"]),
            "unhandled_violation_frames": len(rep["unhandled_violation_frames"]), "change_max": change["max_per_frame"],
            "change_visible": change["visible"], "frames_over_visible": sum(x > change["visible"] for x in change["per_frame"]),
        }  # fmt: skip
        results["motions"][motion] = row
        print(motion, json.dumps(row), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
