"""Benchmark: ``convert`` on the CPU with the thread plan of every core, of one, or of the cores other work leaves
free (``svg3d.threads``), on a quiet machine and on one made busy.

    python bench/bench_threads.py --json bench/results/threads.json           # 16 frames of 640x360, busy = 2 spinners
    python bench/bench_threads.py --frames 24 --busy 1 --repeats 2

``convert`` plans every pool's threads itself (``threads.plan_threads``) for ``--threads N`` cores, by default the
machine's: that count is what a user chooses. Plans: ``cores`` (no ``--threads``: every core), ``one`` (``--threads
1``), ``free`` (``--threads`` = the cores the 1-minute load average leaves, ``threads.free_cpus``, read before the
run). Each run is a fresh ``python -m svg3d convert`` (tiny random Depth Anything, OpenCV DIS, classical filler,
default exports, as ``bench_stream``) of one generated clip. Busy: ``--busy`` processes spin on the CPU for the whole
run (other programs' work). Wall time per frame and CPU seconds per frame (``os.wait4``) per run; ratios to ``cores``
in the same conditions.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testsrc import make_clip  # noqa: E402  (bench/ is the script's folder on sys.path)


def spin(stop) -> None:  # a busy core: another program's work
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def run(plan: str, clip: Path, out: Path, model: Path) -> dict:
    from svg3d import threads

    load = os.getloadavg()[0]
    count = {"cores": None, "one": 1, "free": threads.free_cpus(threads.available_cpus(), load)}[plan]
    cmd = [sys.executable, "-m", "svg3d", "convert", str(clip), "-o", str(out), "--depth-model", str(model),
           "--flow", "dis", "--fill", "classical", "--device", "cpu", "--quiet", *([] if count is None else ["--threads", str(count)])]  # fmt: skip
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"):  # (convert's plan decides, not these)
        env.pop(var, None)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"convert ({plan}) failed: {proc.stderr.read().decode()}")
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "load_before": load, "threads_flag": count}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", default="640x360")
    p.add_argument("--busy", type=int, default=2, help="spinning processes in the busy runs (default: %(default)s)")
    p.add_argument("--plans", default="cores,one,free")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    from svg3d import threads
    from svg3d.tiny_models import save_tiny_depth_anything

    w, h = (int(x) for x in args.size.split("x"))
    plans = args.plans.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = save_tiny_depth_anything(tmp / "depth-model")
        clip = make_clip(tmp / "clip.mp4", args.frames, (w, h))
        for busy in (0, args.busy):
            stop = multiprocessing.Event()
            spinners = [multiprocessing.Process(target=spin, args=(stop,), daemon=True) for _ in range(busy)]
            for s in spinners:
                s.start()
            try:
                for repeat in range(args.repeats):
                    for plan in plans:  # interleaved, so that drifts of the machine's load hit every plan alike
                        r = run(plan, clip, tmp / f"out_{busy}_{plan}_{repeat}", model)
                        row = {"busy": busy, "plan": plan, "repeat": repeat, **r, "seconds_per_frame": r["seconds"] / args.frames,
                               "cpu_seconds_per_frame": r["cpu_seconds"] / args.frames}  # fmt: skip
                        rows.append(row)
                        print(f"busy {busy} {plan:9s}: {row['seconds_per_frame']:.3f} s/frame, {row['cpu_seconds_per_frame']:.3f} "
                              f"CPU s/frame (load before {r['load_before']:.1f})", flush=True)  # fmt: skip
            finally:
                stop.set()
                for s in spinners:
                    s.join()
    summary = {}
    for busy in (0, args.busy):
        best = {
            plan: min(r["seconds_per_frame"] for r in rows if r["busy"] == busy and r["plan"] == plan) for plan in plans
        }
        if "cores" in best:
            summary[f"busy_{busy}"] = {plan: round(best["cores"] / s, 3) for plan, s in best.items()}  # speed-up over every core
            print(f"busy {busy}: speed-up over the plan of every core " + ", ".join(f"{k} x{v}" for k, v in summary[f"busy_{busy}"].items()))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "command": " ".join(sys.argv), "machine": platform.node(), "cpus": threads.available_cpus(),
            "plan_quiet": threads.plan_threads(threads.available_cpus()).describe(), "runs": rows, "speedup_over_cores": summary,
        }  # fmt: skip
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
