"""Benchmark stage 2 (``stages.stabilise.stabilise_disparity``): time, torch ops and host transfers per frame, ours
beside another checkout's (``--baseline DIR``: the commit before a change) on the same inputs in the same run.

    python bench/bench_stabilise.py --baseline /tmp/base --sizes 640x360,1920x1080 --frames 8     # CPU, DIS
    python bench/bench_stabilise.py --mode equal --baseline /tmp/base --flow dis,torch          # same output?
    python bench/bench_stabilise.py --mode quality --flow dis,torch                            # inverted flows
    python bench/bench_stabilise.py --device cuda --flow torch --sizes 1920x1080 --frames 48 --baseline DIR

Inputs: a rendered clip (``scene``: the truck camera, parallax and occlusions) at the size the stage runs at in
``convert`` for frames of ``--sizes`` (``stages.depth.depth_size``: 1080p -> 921x518), its true disparity with a
10 % scale jitter per frame and 2 % noise per pixel (what stabilisation removes). Speed: the median of
``--repeats`` runs over the whole clip after one warm-up (CUDA synchronised), per frame, and the process's CPU time
(less disturbed by other work on a shared machine). Ops: one more run under a ``TorchDispatchMode`` counting aten
ops per frame (on CUDA each a kernel launch) outside the flow and inside it, the flow calls, the tensors made from
host data (``lift_fresh``: ``torch.tensor`` - on CUDA an upload that waits - and ``from_numpy``, which OpenCV's
results on a CPU go through) and the reads of a value back to the host; with the
DIS flow (OpenCV) only its tensor conversions count. ``--mode equal``: the largest difference of our output from
the baseline's on ``--cameras`` and a few settings, ours with ``invert_flows`` off (a restructuring must give 0).
``--mode quality``: on each camera, the error and flicker to the true disparity (as tests/test_stabilise.py: mean
absolute error and mean error of the frame-to-frame change, relative to the mean disparity) and the PSNR (peak:
the true maximum) of the noisy input and of ours with the backward flows computed and inverted.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the svg3d to measure: this checkout's, or another's in the subprocess that --baseline starts
CODE = os.environ.get("BENCH_STAB_CODE", str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, CODE)

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from svg3d import scene  # noqa: E402
from svg3d.config import DepthConfig, StabiliseConfig  # noqa: E402
from svg3d.flow import DISFlow, TorchFlow  # noqa: E402
from svg3d.stages.depth import depth_size  # noqa: E402
from svg3d.stages.stabilise import stabilise_disparity  # noqa: E402

READ_BACKS = ("_local_scalar_dense", "nonzero", "equal", "is_nonzero", "masked_select")
# (window_size, pairs_per_batch) for --mode equal: the default, one pair per call, a wider window
SETTINGS = ((3, 8), (3, 1), (5, 8))


def make_clip(camera: str, frames: int, height: int, width: int, seed: int = 0, *, truth: bool = False) -> tuple:
    """rgb ``uint8 (T, 3, H, W)`` and a noisy disparity ``(T, H, W)`` of a rendered clip (with ``truth``: rgb, the
    true disparity, the noisy one)."""
    sc = scene.make_scene(seed, num_frames=frames, height=height, width=width, camera_motion=camera)
    rgb, z = scene.render(sc)
    g = torch.Generator().manual_seed(seed + 100)
    true = 1.0 / z
    scale = 1.0 + 0.1 * torch.randn(frames, 1, 1, generator=g)
    noisy = (true * scale + 0.02 * true.mean() * torch.randn(true.shape, generator=g)).clamp_min(0.0)
    rgb8 = (rgb * 255).round().to(torch.uint8)
    return (rgb8, true, noisy) if truth else (rgb8, noisy)


def make_flow(name: str):
    return DISFlow() if name == "dis" else TorchFlow()


class Counter(TorchDispatchMode):
    """aten ops by name, those inside the flow apart (``in_flow`` set by ``CountedFlow``)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops, self.flow_ops = collections.Counter(), collections.Counter()
        self.in_flow = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        (self.flow_ops if self.in_flow else self.ops)[str(func.overloadpacket).removeprefix("aten.")] += 1
        return func(*args, **(kwargs or {}))


class CountedFlow:
    """A flow backend that tells ``counter`` when its ops are the flow's, and counts its calls and pairs."""

    def __init__(self, flow, counter: Counter) -> None:
        self.flow, self.counter, self.name = flow, counter, flow.name
        self.calls = self.pairs = 0

    def __call__(self, src, dst):
        self.calls += 1
        self.pairs += len(src)
        self.counter.in_flow = True
        try:
            return self.flow(src, dst)
        finally:
            self.counter.in_flow = False


def measure(inputs: dict) -> dict:
    """Time and count ``stabilise_disparity`` on ``inputs`` (saved by ``main`` or ``run_baseline``)."""
    device = torch.device(inputs["device"])
    rgb, d = inputs["rgb"], inputs["disparity"]
    known = {f.name for f in dataclasses.fields(StabiliseConfig)}  # a baseline may predate some settings
    config = StabiliseConfig(**{k: v for k, v in inputs["config"].items() if k in known})
    flow = make_flow(inputs["flow"])
    t = len(rgb)

    def run() -> torch.Tensor:
        return stabilise_disparity(rgb, d, flow, config, device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    out = run()
    wall, cpu = [], []
    for _ in range(inputs["repeats"]):
        sync()
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        sync()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    report = {"output": out, "wall_s": wall, "cpu_s": cpu}
    if inputs["count"]:
        with Counter() as counter:
            counted = CountedFlow(flow, counter)
            stabilise_disparity(rgb, d, counted, config, device=device)
            sync()
        report["ops_per_frame"] = round(sum(counter.ops.values()) / t, 1)
        report["flow_ops_per_frame"] = round(sum(counter.flow_ops.values()) / t, 1)
        report["flow_calls_per_frame"] = round(counted.calls / t, 3)
        report["pairs_per_frame"] = round(counted.pairs / t, 3)
        both = counter.ops + counter.flow_ops
        report["host_tensors_per_frame"] = round(both["lift_fresh"] / t, 2)
        report["read_backs_per_frame"] = round(sum(v for k, v in both.items() if k in READ_BACKS) / t, 2)
        report["top_ops_per_frame"] = {k: round(v / t, 1) for k, v in counter.ops.most_common(12)}
    return report


def run_baseline(checkout: Path, inputs: dict) -> dict:
    """``measure`` with the svg3d of another checkout, in a subprocess (the same inputs through a file)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "inputs.pt", Path(tmp) / "outputs.pt"
        torch.save(inputs, src)
        env = {**os.environ, "BENCH_STAB_CODE": str(checkout.resolve())}
        subprocess.run([sys.executable, __file__, "--child", str(src), str(dst)], env=env, check=True)
        return torch.load(dst)


def summary(report: dict, frames: int) -> dict:
    out = {"s_per_frame": statistics.median(report["wall_s"]) / frames, "cpu_s_per_frame": statistics.median(report["cpu_s"]) / frames}
    return {**out, **{k: v for k, v in report.items() if k not in ("output", "wall_s", "cpu_s")}}


def speed(args, device: torch.device) -> list[dict]:
    rows = []
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        sh, sw = depth_size((h, w), DepthConfig().resolution)
        rgb, d = make_clip("truck", args.frames, sh, sw)
        for flow in args.flow.split(","):
            inputs = {"rgb": rgb, "disparity": d, "device": str(device), "flow": flow, "config": {},
                      "repeats": args.repeats, "count": True}  # fmt: skip
            runs = {"ours": measure(inputs)}
            if args.baseline:
                runs["baseline"] = run_baseline(args.baseline, inputs)
            row = {"size": size, "stage_size": f"{sw}x{sh}", "flow": flow, "frames": args.frames}
            for name, rep in runs.items():
                row[name] = summary(rep, args.frames)
                s = row[name]
                print(f"{size} (stage at {sw}x{sh}) flow {flow} {name:8s}: {s['s_per_frame'] * 1e3:7.1f} ms/frame "
                      f"(CPU {s['cpu_s_per_frame'] * 1e3:.1f} ms), {s['ops_per_frame']} ops/frame outside the flow, "
                      f"{s['flow_calls_per_frame']} flow calls ({s['pairs_per_frame']} pairs, {s['flow_ops_per_frame']} ops), "
                      f"{s['host_tensors_per_frame']} host tensors, {s['read_backs_per_frame']} read-backs per frame", flush=True)  # fmt: skip
            if "baseline" in runs:
                row["baseline_over_ours_time"] = row["baseline"]["s_per_frame"] / row["ours"]["s_per_frame"]
                row["baseline_over_ours_cpu_time"] = row["baseline"]["cpu_s_per_frame"] / row["ours"]["cpu_s_per_frame"]
                row["max_abs_diff"] = (runs["baseline"]["output"] - runs["ours"]["output"]).abs().max().item()
                print(f"  baseline / ours: time x{row['baseline_over_ours_time']:.2f}, CPU time "
                      f"x{row['baseline_over_ours_cpu_time']:.2f}; max |ours - baseline| {row['max_abs_diff']:.3g}", flush=True)  # fmt: skip
            rows.append(row)
    return rows


def equal(args, device: torch.device) -> list[dict]:
    rows = []
    w, h = (int(v) for v in args.sizes.split(",")[0].split("x"))
    for camera in args.cameras.split(","):
        rgb, d = make_clip(camera, args.frames, h, w, seed=len(camera))
        for flow in args.flow.split(","):
            for window, pairs in SETTINGS:
                config = {"window_size": window, "pairs_per_batch": pairs, "invert_flows": False}
                inputs = {"rgb": rgb, "disparity": d, "device": str(device), "flow": flow, "config": config,
                          "repeats": 0, "count": False}  # fmt: skip
                ours, base = measure(inputs)["output"], run_baseline(args.baseline, inputs)["output"]
                diff = (ours - base).abs()
                row = {"camera": camera, "size": f"{w}x{h}", "flow": flow, "window_size": window, "pairs_per_batch": pairs,
                       "max_abs_diff": diff.max().item(), "pixels_differing": int((diff > 0).sum()), "pixels": diff.numel()}  # fmt: skip
                print(f"{camera:8s} {flow:5s} window {window} pairs/call {pairs}: max |ours - baseline| "
                      f"{row['max_abs_diff']:.3g}, {row['pixels_differing']} of {row['pixels']} differ", flush=True)  # fmt: skip
                rows.append(row)
    return rows


def scores(x: torch.Tensor, truth: torch.Tensor) -> dict:
    mean = truth.mean()
    return {"error": ((x - truth).abs().mean() / mean).item(),
            "flicker": (((x[1:] - x[:-1]) - (truth[1:] - truth[:-1])).abs().mean() / mean).item(),
            "psnr_db": 10 * math.log10(truth.max().item() ** 2 / ((x - truth) ** 2).mean().item())}  # fmt: skip


def quality(args, device: torch.device) -> list[dict]:
    rows = []
    w, h = (int(v) for v in args.sizes.split(",")[0].split("x"))
    for camera in args.cameras.split(","):
        rgb, truth, noisy = make_clip(camera, args.frames, h, w, seed=3, truth=True)
        for flow in args.flow.split(","):
            row = {"camera": camera, "size": f"{w}x{h}", "flow": flow, "input": scores(noisy, truth)}
            for name, invert in (("computed", False), ("inverted", True)):
                out = stabilise_disparity(rgb, noisy, make_flow(flow), StabiliseConfig(invert_flows=invert), device=device)
                row[name] = scores(out.cpu(), truth)
            c, i = row["computed"], row["inverted"]
            row["flicker_change"] = i["flicker"] / c["flicker"] - 1
            row["error_change"] = i["error"] / c["error"] - 1
            row["psnr_change_db"] = i["psnr_db"] - c["psnr_db"]
            print(f"{camera:8s} {flow:5s}: flicker {row['input']['flicker']:.4f} input, {c['flicker']:.5f} computed, "
                  f"{i['flicker']:.5f} inverted ({100 * row['flicker_change']:+.2f} %); error {c['error']:.5f} / "
                  f"{i['error']:.5f} ({100 * row['error_change']:+.2f} %); PSNR {c['psnr_db']:.3f} / {i['psnr_db']:.3f} dB "
                  f"({row['psnr_change_db']:+.4f})", flush=True)  # fmt: skip
            rows.append(row)
    return rows


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        torch.save(measure(torch.load(sys.argv[2])), sys.argv[3])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("speed", "equal", "quality"), default="speed")
    p.add_argument("--sizes", default="640x360", help="frame sizes WxH,... (speed; equal: the first, as the stage's size)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--flow", default="dis", help="dis, torch or both, comma-separated (default: %(default)s)")
    p.add_argument("--cameras", default="static,pan,truck,dolly,handheld", help="equal and quality modes' clips")
    p.add_argument("--device", default="cpu")
    p.add_argument("--baseline", type=Path, help="another checkout: its stabilise_disparity on the same inputs")
    p.add_argument("--note", default="", help="the machine and its load, for the report")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if args.mode == "equal" and not args.baseline:
        raise SystemExit("--mode equal: give --baseline, the checkout to compare with")
    device = torch.device(args.device)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{platform.node()}: {card}, torch {torch.__version__}", flush=True)
    rows = {"speed": speed, "equal": equal, "quality": quality}[args.mode](args, device)
    if args.json is not None:
        report = {"command": " ".join(sys.argv), "machine": platform.node(), "device": card, "torch": torch.__version__,
                  "note": args.note, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": rows}  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
