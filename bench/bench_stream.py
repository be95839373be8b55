"""Benchmark: ``convert`` end to end: time, memory and work-folder disk against clip length; on a GPU, frames/s per
stage, GPU use and busy cores.

    python bench/bench_stream.py                      # 48, 240, 960 frames at 640x360, and 48 frames of 1080p
    python bench/bench_stream.py --lengths 48 240 --no-hd --json bench/results/stream.json
    python bench/bench_stream.py --lengths 240 --no-hd --shots 5 --args '--concurrent-stages' --baseline OLD  # the fill a shot behind
    python bench/bench_stream.py --lengths 240 --size 1920x1080 --no-hd --device cuda --depth v2-small \\
        --baseline OLD_CHECKOUT --json OUT.json   # issue 21: 1080p on the GPU, against another checkout in the same run

Each run is a fresh ``python -m svg3d convert`` process on a generated clip (FFmpeg's ``testsrc2`` pattern, which
moves, with a sine tone; ``--shots K``: cut into K shots), with a random Depth Anything (``--depth tiny``: the model's cost left out; ``v2-small``:
the real V2-Small architecture, which runs at its real speed), the product's default flow (``--flow``), the classical
filler and the default exports. Reported per run: wall time and frames/s, peak RSS of the process (``os.wait4``),
busy cores (the process tree's CPU time over the wall time), each stage's time from the run's log, the work
folder's bytes per frame; on CUDA also the GPU's mean utilisation and peak memory (``nvidia-smi``, sampled).
``--baseline DIR`` runs the same clips with the svg3d of another checkout (the commit before a change) in the same
process: their ratio is the figure to report. Each row keeps the 1-minute load average before and after its run: on a
shared machine that, not the code, often decides the time. A quiet 2-core machine can be had from a larger idle
one: ``taskset -c 0,1 python bench/bench_stream.py ... --args '--threads 2'`` (``--threads``: convert plans for the
machine's cores, not the affinity; the encoders still take ``os.cpu_count() // 3`` threads each, in both checkouts).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testsrc import make_clip  # noqa: E402  (bench/ is the script's folder on sys.path)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class GpuSampler:
    """``nvidia-smi``'s utilisation and memory, sampled every ``interval`` s while a run lasts (nothing without it)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.samples, self._stop = interval, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout  # fmt: skip
                util, mem = (float(x) for x in out.splitlines()[0].split(","))
                self.samples.append((util, mem))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        if not self.samples:
            return {}
        util = [u for u, _ in self.samples]
        return {"gpu_util_mean": sum(util) / len(util), "gpu_mem_peak_mb": max(m for _, m in self.samples)}


def stage_times(log: Path) -> dict[str, float]:
    """Each stage's seconds from a convert log ("<stage> done: N frames in X s": from its thread's start)."""
    if not log.is_file():
        return {}
    return {m[1]: float(m[2]) for m in re.finditer(r"(\w+)\s+done: \d+ \w+ in ([\d.]+) s", log.read_text())}


def timeline(log: Path, started: float) -> dict[str, float]:
    """Seconds from the process's start (``started``, epoch) to the log's first line (imports, model loading, checks),
    to each stage's first chunk written ("<stage> first", from its record in the work folder) and to each stage's
    "done" line, from the log's timestamps (milliseconds)."""
    if not log.is_file():
        return {}
    out = {}
    for line in log.read_text().splitlines():
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ [\w.]+: (.*)", line)
        if m is None:
            continue
        at = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp() - started
        out.setdefault("first_log_line", round(at, 2))
        if done := re.match(r"(\w+)\s+done: ", m[2]):
            out[done[1]] = round(at, 2)
    for record in sorted(log.parent.glob("*.json")):  # the stores' records beside the log
        try:
            chunks = json.loads(record.read_text()).get("chunks", [])
        except (OSError, ValueError, AttributeError):
            continue
        written = [c["written"] for c in chunks if isinstance(c, dict) and "written" in c]
        if written:
            out[f"{record.stem} first"] = round(min(written) - started, 2)
    return out


def run_convert(clip: Path, out: Path, model: Path, extra: list[str], device: str = "cpu", root: Path = ROOT, flow: str = "auto") -> dict:
    cmd = [sys.executable, "-m", "svg3d", "convert", str(clip), "-o", str(out), "--depth-model", str(model),
           "--flow", flow, "--fill", "classical", "--device", device, "--quiet", *extra]  # fmt: skip
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": path}
    load_before = os.getloadavg()[0]
    started = time.time()
    start = time.perf_counter()
    with GpuSampler() as gpu:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"convert failed: {err}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "work_bytes": folder_bytes(out / "work"),
            "busy_cores": cpu / seconds, "stages": stage_times(out / "work" / "convert.log"),
            "timeline": timeline(out / "work" / "convert.log", started), **gpu.summary(),
            "load": [load_before, os.getloadavg()[0]]}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[48, 240, 960])
    p.add_argument("--size", default="640x360")
    p.add_argument("--hd", action=argparse.BooleanOptionalAction, default=True, help="also 48 frames of 1920x1080")
    p.add_argument("--shots", type=int, default=1, help="cut each clip into this many shots (testsrc.make_clip) (default: %(default)s)")
    p.add_argument("--chunk-frames", type=int, default=None)
    p.add_argument("--device", default="cpu", help="convert's --device (default: %(default)s)")
    p.add_argument("--flow", default="auto", help="convert's --flow (default: %(default)s, the product's choice)")
    p.add_argument("--depth", choices=("tiny", "v2-small"), default="tiny", help="the random depth model (default: %(default)s)")
    p.add_argument("--baseline", type=Path, default=None, help="another checkout whose svg3d runs the same clips (a ratio in one run)")
    p.add_argument("--baseline-flow", default="dis", help="--flow for the baseline (older checkouts: dis) (default: %(default)s)")
    p.add_argument("--this-args", action="append", default=None,
                   help="more convert flags for this checkout only (e.g. --no-concurrent-stages); given again, this checkout runs "
                        "once per value, each row's code naming its flags (e.g. --this-args '' --this-args '--fill-workers 1')")
    p.add_argument("--args", default="", help="more convert flags for both checkouts (e.g. '--threads 2' under taskset -c 0,1)")
    p.add_argument("--clips", type=Path, default=None, help="keep the generated clips here and reuse those found")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args()

    from svg3d.tiny_models import save_random_depth_anything_v2_small, save_tiny_depth_anything

    extra = ([] if args.chunk_frames is None else ["--chunk-frames", str(args.chunk_frames)]) + args.args.split()
    size = tuple(int(x) for x in args.size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = (save_random_depth_anything_v2_small if args.depth == "v2-small" else save_tiny_depth_anything)(tmp / "depth-model")
        cases = [(n, size) for n in args.lengths] + ([(48, (1920, 1080))] if args.hd else [])
        variants = args.this_args or [""]
        checkouts = [("this" if not more.strip() else f"this {more.strip()}", ROOT, args.flow, more.split()) for more in variants]
        checkouts += [("baseline", args.baseline.resolve(), args.baseline_flow, [])] if args.baseline else []
        for n, (w, h) in cases:
            cut = f"_{args.shots}shots" if args.shots > 1 else ""
            clip = (args.clips.resolve() if args.clips else tmp) / f"clip_{w}x{h}_{n}{cut}.mp4"  # (the baseline runs in its own folder)
            if not clip.exists():
                clip.parent.mkdir(parents=True, exist_ok=True)
                make_clip(clip, n, (w, h), shots=args.shots)
            for name, root, flow, more in checkouts:
                r = run_convert(clip, tmp / f"out_{name}_{w}x{h}_{n}", model, extra + more, args.device, root, flow)
                row = {"code": name, "frames": n, "size": f"{w}x{h}", "shots": args.shots, **r, "seconds_per_frame": r["seconds"] / n,
                       "frames_per_second": n / r["seconds"], "work_mb_per_frame": r["work_bytes"] / n / 1e6}  # fmt: skip
                rows.append(row)
                gpu = f", GPU {row['gpu_util_mean']:.0f} %, {row['gpu_mem_peak_mb']:.0f} MB" if "gpu_util_mean" in row else ""
                print(f"{name:8s} {w}x{h} {n:4d} frames: {row['frames_per_second']:.2f} frames/s ({row['seconds_per_frame']:.3f} s/frame), "
                      f"load {row['load'][0]:.1f}-{row['load'][1]:.1f}, "
                      f"peak RSS {row['peak_rss_mb']:.0f} MB, {row['busy_cores']:.1f} cores busy{gpu}, work {row['work_mb_per_frame']:.2f} MB/frame; "
                      f"stages {', '.join(f'{k} {v:.1f} s' for k, v in row['stages'].items())}; "
                      f"from the process's start: {', '.join(f'{k} {v:.1f} s' for k, v in row['timeline'].items())}", flush=True)  # fmt: skip
    same = [r for r in rows if r["size"] == args.size and r["code"] == checkouts[0][0]]
    if len(same) > 1:
        first, last = same[0], same[-1]
        print(f"{last['frames']} vs {first['frames']} frames: peak RSS x{last['peak_rss_mb'] / first['peak_rss_mb']:.2f}, "
              f"time per frame x{last['seconds_per_frame'] / first['seconds_per_frame']:.2f}")  # fmt: skip
    for r in rows:
        if r["code"] != checkouts[0][0]:
            this = next(x for x in rows if x["code"] == checkouts[0][0] and x["frames"] == r["frames"] and x["size"] == r["size"])
            print(f"{r['size']} {r['frames']} frames: {checkouts[0][0]} / {r['code']} speed x{r['seconds'] / this['seconds']:.2f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        machine = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "device": args.device}
        if args.device.startswith("cuda"):
            import torch

            machine |= {"card": torch.cuda.get_device_name(), "torch": torch.__version__}
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), **machine, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
