"""Benchmark: memory, time and work-folder disk of ``convert`` against clip length (streamed stages).

    python bench/bench_stream.py                      # 48, 240, 960 frames at 640x360, and 48 frames of 1080p
    python bench/bench_stream.py --lengths 48 240 --no-hd --json bench/results/stream.json
    python bench/bench_stream.py --lengths 48 --size 1920x1080 --no-hd --device cuda --clips CLIPS   # GPU, clips made here

Each run is a fresh ``python -m svg3d convert`` process on a generated clip (FFmpeg's ``testsrc2`` pattern, which
moves, with a sine tone), with a tiny random Depth Anything as the depth model (the model's cost is not what is
measured), OpenCV DIS flow, the classical filler and the default exports. Reported per run: peak RSS of the
process (``os.wait4``), wall time per frame, and the work folder's bytes per frame when the run ends. Issue 11's
targets: peak RSS within 1.2x and time per frame within 1.2x from 48 to 960 frames; at most ~4 MB per 1080p frame
in the work folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testsrc import make_clip  # noqa: E402  (bench/ is the script's folder on sys.path)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_convert(clip: Path, out: Path, model: Path, extra: list[str], device: str = "cpu") -> dict:
    cmd = [sys.executable, "-m", "svg3d", "convert", str(clip), "-o", str(out), "--depth-model", str(model),
           "--flow", "dis", "--fill", "classical", "--device", device, "--quiet", *extra]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"convert failed: {err}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "work_bytes": folder_bytes(out / "work")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[48, 240, 960])
    p.add_argument("--size", default="640x360")
    p.add_argument("--hd", action=argparse.BooleanOptionalAction, default=True, help="also 48 frames of 1920x1080")
    p.add_argument("--chunk-frames", type=int, default=None)
    p.add_argument("--device", default="cpu", help="convert's --device (default: %(default)s)")
    p.add_argument("--clips", type=Path, default=None, help="keep the generated clips here and reuse those found")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args()

    from svg3d.tiny_models import save_tiny_depth_anything

    extra = [] if args.chunk_frames is None else ["--chunk-frames", str(args.chunk_frames)]
    size = tuple(int(x) for x in args.size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = save_tiny_depth_anything(tmp / "depth-model")
        cases = [(n, size) for n in args.lengths] + ([(48, (1920, 1080))] if args.hd else [])
        for n, (w, h) in cases:
            clip = (args.clips or tmp) / f"clip_{w}x{h}_{n}.mp4"
            if not clip.exists():
                clip.parent.mkdir(parents=True, exist_ok=True)
                make_clip(clip, n, (w, h))
            r = run_convert(clip, tmp / f"out_{w}x{h}_{n}", model, extra, args.device)
            row = {"frames": n, "size": f"{w}x{h}", **r, "seconds_per_frame": r["seconds"] / n, "work_mb_per_frame": r["work_bytes"] / n / 1e6}
            rows.append(row)
            print(f"{w}x{h} {n:4d} frames: {row['seconds_per_frame']:.3f} s/frame, peak RSS {row['peak_rss_mb']:.0f} MB, "
                  f"work {row['work_mb_per_frame']:.2f} MB/frame", flush=True)  # fmt: skip
    same = [r for r in rows if r["size"] == args.size]
    if len(same) > 1:
        first, last = same[0], same[-1]
        print(f"{last['frames']} vs {first['frames']} frames: peak RSS x{last['peak_rss_mb'] / first['peak_rss_mb']:.2f}, "
              f"time per frame x{last['seconds_per_frame'] / first['seconds_per_frame']:.2f}")  # fmt: skip
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "machine": os.uname().nodename, "cpus": os.cpu_count(), "device": args.device, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
