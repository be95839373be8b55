"""Benchmark: the fill stage inside a real ``convert`` (warp of the cells, the classical filler, the store), per part,
against another checkout in the same run, and the difference of what the two stored.

    python bench/bench_fill_stage.py --baseline /tmp/base --json bench/results/fill_stage_cpu_66ebc47.json

It converts the bench's generated clip (``bench_stream``'s: FFmpeg's ``testsrc2``, 640x360, 48 frames, a random tiny
Depth Anything, DIS, the classical filler) once, then for each checkout (``--rounds`` times, alternating) deletes the
fill and the export from the work folder and runs ``convert`` again in a subprocess, so that only the fill stage (and
one ``left`` export) is computed: the depth and stabilised stages are the same files for both. Reported per run: the
fill stage's wall and CPU seconds (``time.process_time`` of the process while the stage runs; less disturbed by a
shared machine than the wall time) and the wall seconds of its parts (first passes, flows, warp...), timed by
wrapping the functions that exist in that checkout. ``--threads`` is convert's (1: no thread contention on a loaded
machine). The stored hole pixels of the last runs are compared: count and largest difference in 8-bit levels.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

# the parts timed, (module, attribute, label): those missing in a checkout are skipped
PARTS = [
    ("svg3d.stages.fill.stage", "FillStage.run", "stage"),
    ("svg3d.stages.fill.classical", "fill_views", "filler"),
    ("svg3d.stages.fill.classical", "_fill_frame", "first passes"),
    ("svg3d.stages.fill.classical", "temporal_fill", "temporal_fill"),
    ("svg3d.stages.fill.classical", "row_fill", "row_fill"),
    ("svg3d.stages.fill.classical", "soft_fill", "soft_fill"),
    ("svg3d.stages.fill.classical", "_consolidate", "consolidate"),
    ("svg3d.stages.fill.classical", "_Flows.motion", "flows + motion fit"),
    ("svg3d.flow", "DISFlow.__call__", "DIS"),
    ("svg3d.stages.matrix", "MatrixSource.cells", "cells"),
    ("svg3d.stages.matrix", "warp_cells", "warp"),
    ("svg3d.stages.fill.stage", "pack", "pack"),
]

CHILD = r"""
import collections, functools, importlib, json, os, sys, time
parts, times, calls, inside = json.loads(sys.argv[1]), collections.defaultdict(float), collections.Counter(), [False]
for module, attr, label in parts:
    mod = importlib.import_module(module)
    owner, name = (getattr(mod, attr.split(".")[0]), attr.split(".")[1]) if "." in attr else (mod, attr)
    if not hasattr(owner, name):
        continue
    def wrapped(*a, _f=getattr(owner, name), _label=label, **k):
        if _label == "stage":
            inside[0] = True
            cpu = time.process_time()
        elif not inside[0]:  # the export's calls are not the fill stage's
            return _f(*a, **k)
        start = time.perf_counter()
        try:
            return _f(*a, **k)
        finally:
            times[_label] += time.perf_counter() - start
            calls[_label] += 1
            if _label == "stage":
                times["stage cpu"] += time.process_time() - cpu
                inside[0] = False
    setattr(owner, name, wrapped)
from svg3d.__main__ import main
main(sys.argv[3:])
json.dump({"seconds": times, "calls": calls}, open(sys.argv[2], "w"))
"""


def run_fill(root: Path, out: Path, clip: Path, model: Path, threads: int | None, report: Path) -> dict:
    work = out / "work"
    for path in [*work.glob("filled-*"), *work.glob("export*")]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    cmd = ["convert", str(clip), "-o", str(out), "--depth-model", str(model), "--flow", "dis", "--fill", "classical",
           "--device", "cpu", "--quiet", "--exports", "left"] + (["--threads", str(threads)] if threads else [])  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", CHILD, json.dumps(PARTS), str(report), *cmd], cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(report.read_text())


def stored_difference(a: Path, b: Path) -> dict:
    import numpy as np

    from svg3d.work import read_chunk

    holes = differ = largest = 0
    for chunk in sorted(a.glob("chunk_*.npz")):
        x, y = read_chunk(chunk), read_chunk(b / chunk.name)
        if not (x["holes"] == y["holes"]).all():
            return {"same_holes": False}
        d = np.abs(x["values"].astype(np.int16) - y["values"].astype(np.int16)).max(-1)[x["holes"]]
        holes, differ, largest = holes + d.size, differ + int((d > 0).sum()), max(largest, int(d.max(initial=0)))
    return {"same_holes": True, "hole_pixels": holes, "pixels_differing": differ, "max_diff_levels": largest}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", type=Path, required=True, help="another checkout whose svg3d runs the same fill")
    p.add_argument("--size", default="640x360")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--threads", type=int, default=None, help="convert's --threads (default: the machine's cores)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    from testsrc import make_clip

    from svg3d.tiny_models import save_tiny_depth_anything

    size = tuple(int(v) for v in args.size.split("x"))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, clip = save_tiny_depth_anything(tmp / "depth-model"), make_clip(tmp / "clip.mp4", args.frames, size)
        out = tmp / "out"
        run_fill(ROOT, out, clip, model, args.threads, tmp / "report.json")  # every stage once: depth and stabilised kept
        kept = {}
        for r in range(args.rounds):
            for name, root in (("this", ROOT), ("baseline", args.baseline.resolve())):
                rep = run_fill(root, out, clip, model, args.threads, tmp / "report.json")
                s = rep["seconds"]
                runs.append({"code": name, "round": r, **rep, "load": os.getloadavg()[0]})
                print(f"{name:8s} fill stage {s['stage']:6.2f} s wall, {s['stage cpu']:6.2f} s CPU (load {os.getloadavg()[0]:.1f}); "
                      + ", ".join(f"{k} {v:.2f}" for k, v in s.items() if k not in ("stage", "stage cpu")), flush=True)  # fmt: skip
                kept[name] = tmp / f"filled_{name}"
                shutil.rmtree(kept[name], ignore_errors=True)
                shutil.copytree(next((out / "work").glob("filled-*views")), kept[name], ignore=shutil.ignore_patterns("*.json"))
        diff = stored_difference(kept["baseline"], kept["this"])
    med = {c: sorted(r["seconds"][k] for r in runs if r["code"] == c) for c in ("this", "baseline") for k in ("stage",)}
    cpu = {c: sorted(r["seconds"]["stage cpu"] for r in runs if r["code"] == c) for c in ("this", "baseline")}
    print(f"fill stage, best of {args.rounds}: wall {med['this'][0]:.2f} s against {med['baseline'][0]:.2f} (x{med['baseline'][0] / med['this'][0]:.2f}), "
          f"CPU {cpu['this'][0]:.2f} s against {cpu['baseline'][0]:.2f} (x{cpu['baseline'][0] / cpu['this'][0]:.2f}); stored holes: {diff}")  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "machine": os.uname().nodename, "cpus": os.cpu_count(),
                                         "runs": runs, "stored_difference": diff}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
