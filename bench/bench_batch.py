"""Benchmark: batch throughput on a local Ray cluster with one and with two CPU workers, in one run (their ratio).

    python bench/bench_batch.py                         # 8 clips of 48 frames at 320x180
    python bench/bench_batch.py --clips 4 --frames 24 --json bench/results/batch.json

The clips are FFmpeg's moving ``testsrc2`` pattern with a tone; each is converted with a tiny random Depth Anything
(the model's cost is not what is measured; each worker loads it once and keeps it: ``batch.ModelCache``), OpenCV DIS
flow, the classical filler and the default exports. For each worker count a fresh local cluster is started with that
many CPUs (``batch.connect(num_cpus=n)``) and the same folder is converted into a fresh output folder with one CPU per
worker (``unit_cpus=1``, so torch runs one thread in each: the workers, not the threads, are what changes). The two
counts alternate, ``--repeat`` times each in the order 1, 2, 2, 1, ... so that a drift in the machine's load falls on
both. Reported: each run's wall time once the cluster is up (worker start-up included), the median clips per minute
of each count and the ratio of the medians, an in-process run (this process, torch's default threads) for reference,
and the load average before and after: on a machine whose cores are shared with other work the ratio says as much
about the others as about batch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testsrc import make_clip  # noqa: E402  (bench/ is the script's folder on sys.path)


def run(folder: Path, out: Path, config, ray: str | None) -> float:
    from svg3d import batch

    settings = batch.BatchSettings(ray=ray, unit_cpus=1.0, segment_frames=0)
    start = time.perf_counter()
    report = batch.run_batch(folder, out, config, settings=settings, device="cpu")
    seconds = time.perf_counter() - start
    if not report.ok:
        raise SystemExit(report.table())
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--size", default="320x180", help="WxH")
    p.add_argument("--repeat", type=int, default=2, help="runs of each worker count")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads must not spin on a shared machine
    os.environ["HF_HUB_OFFLINE"] = "1"
    import ray

    from svg3d import batch
    from svg3d.config import ConvertConfig, DepthConfig
    from svg3d.tiny_models import save_tiny_depth_anything

    w, h = (int(x) for x in args.size.split("x"))
    results = {"clips": args.clips, "frames": args.frames, "size": args.size, "load_before": os.getloadavg()}
    order = [n for k in range(args.repeat) for n in ((1, 2) if k % 2 == 0 else (2, 1))]
    runs: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        tmp = Path(tmp)
        folder = tmp / "in"
        folder.mkdir()
        for k in range(args.clips):
            make_clip(folder / f"clip{k:02d}.mp4", args.frames, (w, h), hue=37 * k)
        model = save_tiny_depth_anything(tmp / "depth-model")
        config = ConvertConfig(depth=DepthConfig(model=str(model)), flow="dis", filler="classical")
        results["in_process_s"] = round(run(folder, tmp / "in_process", config, None), 2)
        for i, workers in enumerate(order):
            batch.connect(None, num_cpus=workers, include_dashboard=False, object_store_memory=100 * 1024 * 1024)
            try:
                runs[workers].append(run(folder, tmp / f"ray{i}", config, "auto"))
            finally:
                ray.shutdown()
            print(f"ray, {workers} worker{'s' if workers > 1 else ' '} {runs[workers][-1]:7.1f} s", flush=True)
    results["load_after"] = os.getloadavg()
    for workers, times in runs.items():
        results[f"ray_{workers}_s"] = [round(t, 2) for t in times]
        results[f"ray_{workers}_clips_per_min"] = round(60 * args.clips / statistics.median(times), 2)
    results["ratio_2_over_1"] = round(statistics.median(runs[1]) / statistics.median(runs[2]), 3)
    print(f"in-process        {results['in_process_s']:7.1f} s")
    print(f"clips/min: 1 worker {results['ray_1_clips_per_min']}, 2 workers {results['ray_2_clips_per_min']}; "
          f"two workers / one: {results['ratio_2_over_1']:.2f}x (load average {results['load_before'][0]:.1f} before, "
          f"{results['load_after'][0]:.1f} after)")  # fmt: skip
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
