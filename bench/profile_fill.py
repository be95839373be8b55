"""Profile: where the classical filler's time goes per frame (issue 21: the fill is the pipeline's slowest stage).

    python bench/profile_fill.py --device cuda --size 1920x1080 --frames 16      # on the GPU (bench/gpu_runs.sh fill-profile)
    python bench/profile_fill.py --size 640x360 --frames 16                      # on the CPU
    BENCH_FILL_CODE=/tmp/base python bench/profile_fill.py --device cuda --out /tmp/base-profile   # another checkout's svg3d

The right eye of ``bench_fill``'s rendered truck clip (exact depth, ``--frames`` frames) filled by
``fill.fill_frame_matrix`` once as a warm-up, then:

1. timed (wall seconds, CUDA synchronised);
2. with every torch op counted as it is dispatched (one op ~ one kernel launch on CUDA), by the innermost function
   of svg3d that called it, and the ops that wait for the GPU (a value read back to the host: ``item``, ``nonzero``,
   ``tolist``, a copy to the CPU): per frame;
3. under ``torch.profiler``: on CUDA the kernels' summed time and the time the card was busy against the wall time
   (the rest is the host launching and waiting), the top kernels and the top host ops by their own time.

A filler bound by its launches shows ~10-20 us of wall per dispatched op and a card busy a small share of the wall;
one bound by its kernels, a busy card. ``--flow torch --flow-batch N`` on a CPU counts the ops that the filler launches on
CUDA with N pairs a flow call (the cells batched as there too): launches are what a GPU pays for. Writes ``<out>/profile_fill-<device>.json`` and ``.txt``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402
from bench_fill import make_clip  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from svg3d.flow import TorchFlow  # noqa: E402
from svg3d.stages.fill import classical as fill  # noqa: E402

# ops that read a value back to the host: on CUDA each waits for the queued kernels
READ_BACKS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::nonzero_static", "aten::_unique2", "aten::masked_select")


class OpCounter(TorchDispatchMode):
    """Counts the dispatched ops by the innermost svg3d function on the stack, and the read-backs among them."""

    def __init__(self) -> None:
        super().__init__()
        self.by_function: Counter = Counter()
        self.read_backs: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        frame = sys._getframe(1)
        while frame is not None and "/svg3d/" not in frame.f_code.co_filename:
            frame = frame.f_back
        where = "(outside svg3d)" if frame is None else f"{frame.f_code.co_filename.split('/svg3d/')[-1]}:{frame.f_code.co_name}"
        self.by_function[where] += 1
        name = f"aten::{func.__name__.split('.')[0]}"
        to_host = name == "aten::_to_copy" and (kwargs or {}).get("device") is not None and torch.device(kwargs["device"]).type == "cpu"
        if name in READ_BACKS or (to_host and any(isinstance(a, torch.Tensor) and a.is_cuda for a in args)):
            self.read_backs[f"{name} in {where}"] += 1
        return func(*args, **(kwargs or {}))


def busy_us(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of ``(start, end)`` intervals (the card busy with at least one kernel)."""
    total, end = 0.0, -1.0
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", default="1920x1080", help="WxH")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--clip", default="truck")
    p.add_argument("--flow", choices=("auto", "torch"), default="auto", help="the source's flow: the device's (auto: ours on CUDA, DIS on a CPU) or ours")
    p.add_argument("--flow-batch", type=int, default=None, help="pairs a flow call on this device (fill.FLOW_BATCH; default: the filler's)")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    device = torch.device(args.device)
    fm, depth, _ = make_clip(args.clip, args.frames, height, width)
    images, masks, depth = fm.images.to(device), fm.masks.to(device), depth.to(device)
    config = fill.FillConfig()
    flow = TorchFlow() if args.flow == "torch" else None
    if args.flow_batch is not None:
        fill.FLOW_BATCH[device.type] = args.flow_batch
        fill.BATCH_PIXELS.setdefault(device.type, fill.BATCH_PIXELS["cuda"])  # and the cells batched as on CUDA
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def run():
        fill.fill_frame_matrix(images, masks, depth, config, views=[1], baselines=fm.info.baselines, focal=fm.info.focal, flow=flow)
        sync()

    run()  # warm-up: the allocator, OpenCV, cuSOLVER, the flow's CUDA graphs
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    counter = OpCounter()
    with counter:
        run()
    ops = sum(counter.by_function.values())
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
    events = prof.events()
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    kernel_rows = [(e.name, e.time_range.elapsed_us()) for e in kernels]
    by_kernel: dict[str, list[float]] = defaultdict(list)
    for name, t in kernel_rows:
        by_kernel[name].append(t)
    n = args.frames
    host = prof.key_averages()
    report = {
        "command": " ".join(["python", *sys.argv]),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "code": str(Path(fill.__file__).resolve().parents[3]),  # the checkout whose svg3d ran (bench_fill's BENCH_FILL_CODE)
        "size": [width, height],
        "frames": n,
        "flow": args.flow,
        "flow_batch": fill.FLOW_BATCH.get(device.type, 1),
        "wall_ms_per_frame": 1000 * wall / n,
        "ops_per_frame": ops / n,
        "wall_us_per_op": 1e6 * wall / max(ops, 1),
        "ops_per_frame_by_function": {k: v / n for k, v in counter.by_function.most_common(args.top)},
        "read_backs_per_frame": sum(counter.read_backs.values()) / n,
        "read_backs_by_op": {k: v / n for k, v in counter.read_backs.most_common(args.top)},
        "kernels_per_frame": len(kernel_rows) / n,
        "kernel_ms_per_frame": sum(t for _, t in kernel_rows) / 1000 / n,
        "busy_ms_per_frame": busy_us([(e.time_range.start, e.time_range.end) for e in kernels]) / 1000 / n,
        "top_kernels": [
            {"name": k[:120], "calls_per_frame": len(v) / n, "ms_per_frame": sum(v) / 1000 / n}
            for k, v in sorted(by_kernel.items(), key=lambda kv: -sum(kv[1]))[: args.top]
        ],
        "top_host_ops": [
            {"name": e.key, "calls_per_frame": e.count / n, "self_cpu_ms_per_frame": e.self_cpu_time_total / 1000 / n}
            for e in sorted(host, key=lambda e: -e.self_cpu_time_total)[: args.top]
        ],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / (f"profile_fill-{device.type}" + ("" if args.flow_batch is None else f"-flow{args.flow}-batch{args.flow_batch}"))
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    lines = [
        f"# {report['command']}",
        f"# {report['device']}, torch {report['torch']}, {width}x{height}, {n} frames of one view, svg3d of {report['code']}, "
        f"flow {args.flow}, {report['flow_batch']} pairs a flow call",
        f"wall {report['wall_ms_per_frame']:.1f} ms/frame; {report['ops_per_frame']:.0f} dispatched ops/frame "
        f"({report['wall_us_per_op']:.1f} us of wall per op); {report['read_backs_per_frame']:.1f} read-backs/frame",
    ]
    if device.type == "cuda":
        lines.append(f"kernels {report['kernels_per_frame']:.0f}/frame, {report['kernel_ms_per_frame']:.1f} ms/frame summed, "
                     f"card busy {report['busy_ms_per_frame']:.1f} ms/frame ({report['busy_ms_per_frame'] / report['wall_ms_per_frame']:.0%} of the wall)")  # fmt: skip
    lines.append("\nops per frame by svg3d function:")
    lines += [f"  {v:9.1f}  {k}" for k, v in report["ops_per_frame_by_function"].items()]
    lines.append("\nread-backs per frame:")
    lines += [f"  {v:9.1f}  {k}" for k, v in report["read_backs_by_op"].items()]
    if device.type == "cuda":
        lines.append("\ntop kernels (ms per frame, calls per frame):")
        lines += [f"  {r['ms_per_frame']:8.2f}  {r['calls_per_frame']:7.1f}  {r['name']}" for r in report["top_kernels"]]
    lines.append("\ntop host ops by own time (ms per frame, calls per frame):")
    lines += [f"  {r['self_cpu_ms_per_frame']:8.2f}  {r['calls_per_frame']:7.1f}  {r['name']}" for r in report["top_host_ops"]]
    text = "\n".join(lines)
    stem.with_suffix(".txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
