"""Benchmark: peak RSS of ``convert`` against ``svg3d.memory.estimate_peak`` (its calibration and its check).

    python bench/bench_rss.py --json bench/results/rss.json
    python bench/bench_rss.py --cases 1280x720:8:8:2:sbs,hsbs,anaglyph   # size:frames:chunk:views:exports

Each case is a fresh ``python -m svg3d convert`` process on a generated clip (``testsrc``), with a tiny random
Depth Anything (whose weights the estimate is told: ``model_mb``), OpenCV DIS flow and the classical filler. Its
peak RSS (``os.wait4``) is compared with the estimate for the same settings: the ratio measured / estimated is
what ``tests/test_memory.py`` bounds. ``svg3d/memory.py``'s constants were fitted to these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_stream import run_convert  # noqa: E402  (bench/ is the script's folder on sys.path)
from testsrc import make_clip  # noqa: E402

CASES = [  # size:frames:chunk:views:exports (8 frames: within one chunk and its context; a 1080p run of 8 views needs ~10 GB)
    "640x360:8:8:2:sbs,hsbs,anaglyph",
    "1280x720:8:4:2:sbs,hsbs,anaglyph",
    "1280x720:8:8:2:sbs",
    "1280x720:8:8:4:sbs,grid,quilt",
    "1920x1080:8:8:2:sbs,hsbs,anaglyph",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=CASES)
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args()

    from svg3d.memory import estimate_peak
    from svg3d.tiny_models import save_tiny_depth_anything

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = save_tiny_depth_anything(tmp / "depth-model")
        model_mb = sum(f.stat().st_size for f in model.rglob("*") if f.is_file()) / 2**20
        for case in args.cases:
            size, frames, chunk, views, exports = case.split(":")
            w, h = (int(x) for x in size.split("x"))
            clip = tmp / f"clip_{w}x{h}_{frames}.mp4"
            if not clip.exists():
                make_clip(clip, int(frames), (w, h))
            extra = ["--chunk-frames", chunk, "--exports", exports] + (["--num-views", views] if views != "2" else [])
            r = run_convert(clip, tmp / f"out_{case.replace(':', '_').replace(',', '-')}", model, extra)
            estimate = estimate_peak((h, w), chunk_frames=int(chunk), num_views=int(views), filler="classical",
                                     exports=tuple(exports.split(",")), model_mb=model_mb, num_frames=int(frames))  # fmt: skip
            row = {"case": case, "peak_rss_mb": r["peak_rss_mb"], "estimate_mb": estimate.total_mb, "parts_mb": estimate.parts,
                   "ratio": r["peak_rss_mb"] / estimate.total_mb, "seconds": r["seconds"]}  # fmt: skip
            rows.append(row)
            print(f"{case:42s} peak RSS {row['peak_rss_mb']:7.0f} MB, estimate {row['estimate_mb']:7.0f} MB, ratio {row['ratio']:.2f}", flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "machine": os.uname().nodename, "cpus": os.cpu_count(), "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
