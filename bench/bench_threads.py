"""Benchmark: ``convert`` on the CPU with thread counts inherited (every core) or chosen (``svg3d.threads``), on a
quiet machine and on one made busy.

    python bench/bench_threads.py --json bench/results/threads.json           # 16 frames of 640x360, busy = 2 spinners
    python bench/bench_threads.py --frames 24 --busy 1 --repeats 2

Each run is a fresh process that sets torch's and OpenCV's threads to a ``ThreadPlan`` (``threads.apply``) and runs
``convert`` (tiny random Depth Anything, OpenCV DIS, classical filler, default exports, as ``bench_stream``) on one
generated clip. Plans: ``inherited`` (torch and OpenCV as they start: one thread per core), ``one`` (one thread
each), ``plan`` (``threads.machine_plan()``: what the process picks from the cores and the load). Busy: ``--busy``
processes spin on the CPU for the whole run (other programs' work); the 1-minute load average before each run is
recorded, because this machine is shared and is rarely quiet. Wall time per frame and CPU seconds per frame
(``os.wait4``) per run; ratios to ``inherited`` in the same conditions.
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

# The child: apply a plan, then run convert in-process (a fresh interpreter per run: torch's pools start once).
CHILD = """
import sys
from svg3d import threads
plan = sys.argv[1]
cpus = threads.available_cpus()
if plan == "one":
    threads.apply(threads.plan_threads(1))
elif plan == "plan":
    threads.apply(threads.machine_plan())
elif plan != "inherited":
    raise SystemExit(f"unknown plan {plan}")
from svg3d.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


def spin(stop) -> None:  # a busy core: another program's work
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def run(plan: str, clip: Path, out: Path, model: Path) -> dict:
    cmd = [sys.executable, "-c", CHILD, plan, "convert", str(clip), "-o", str(out), "--depth-model", str(model),
           "--flow", "dis", "--fill", "classical", "--device", "cpu", "--quiet"]  # fmt: skip
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"):  # inherited means torch's own defaults
        env.pop(var, None)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"convert ({plan}) failed: {proc.stderr.read().decode()}")
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "load_before": load}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", default="640x360")
    p.add_argument("--busy", type=int, default=2, help="spinning processes in the busy runs (default: %(default)s)")
    p.add_argument("--plans", default="inherited,one,plan")
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
        if "inherited" in best:
            summary[f"busy_{busy}"] = {
                plan: round(best["inherited"] / s, 3) for plan, s in best.items()
            }  # speed-up over inherited
            print(
                f"busy {busy}: speed-up over inherited threads "
                + ", ".join(f"{k} x{v}" for k, v in summary[f"busy_{busy}"].items())
            )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "command": " ".join(sys.argv), "machine": platform.node(), "cpus": threads.available_cpus(),
            "plan_quiet": threads.plan_threads(threads.available_cpus()).describe(), "runs": rows, "speedup_over_inherited": summary,
        }  # fmt: skip
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
