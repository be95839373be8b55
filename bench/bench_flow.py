"""Benchmark: endpoint error and time per pair of OpenCV DIS (CPU) and our torch flow, on rendered scenes with
exact flow.

    python bench/bench_flow.py --json bench/results/flow.json                      # CPU: 640x360 and 1080p
    python bench/bench_flow.py --device cuda --batch 8 --json $OUT/flow_cuda.json   # ours on the GPU, DIS on the CPU

Scenes: ``scene.make_scene(static=True)`` under each camera preset (pan, truck, dolly, handheld: motion, parallax,
occlusion edges), frames 0 and 2; the exact flow ``scene.true_flow`` where the point stays in view and is not hidden.
EPE: mean (and 95th percentile) of |flow - truth| in pixels over those pixels. Time: per pair, the median of
``--repeats`` calls of ``--batch`` copies of the pair (ours runs the batch in one call, as stabilisation's
``pairs_per_batch``; DIS one pair after another), after one call to warm up; CUDA synchronised. Both flows in the same
run, so their ratio holds on a machine busy with other work; on CUDA ours also with its CUDA graphs off
(``torch-eager``: what replaying each call from one graph saves); torch's and OpenCV's threads are those of
``threads.machine_plan()`` (reported).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import median_seconds  # noqa: E402 (bench/ is the script's folder on sys.path)

from svg3d import scene, threads  # noqa: E402
from svg3d.config import TorchFlowConfig  # noqa: E402
from svg3d.flow import DISFlow, TorchFlow  # noqa: E402

CAMERAS = ("pan", "truck", "dolly", "handheld")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="640x360,1920x1080", help="WxH,... (default: %(default)s)")
    p.add_argument("--cameras", default=",".join(CAMERAS), help="camera presets (default: %(default)s)")
    p.add_argument(
        "--hd-cameras",
        default="truck,handheld",
        help="presets at 1080p and above on a CPU (ours takes ~1 min a pair there)",
    )
    p.add_argument("--device", default="cpu", help="where our flow runs (DIS always on the CPU)")
    p.add_argument("--batch", type=int, default=1, help="pairs per call (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    device = torch.device(args.device)
    plan = threads.machine_plan(1, device.type)
    threads.apply(plan)
    cpu = torch.device("cpu")
    rows = []
    for size in args.sizes.split(","):
        w, h = (int(x) for x in size.split("x"))
        cameras = args.cameras if (device.type == "cuda" or h < 1080) else args.hd_cameras
        for camera in cameras.split(","):
            sc = scene.make_scene(args.seed, num_frames=3, height=h, width=w, static=True, camera_motion=camera)
            rgb, depth = scene.render(sc, device=device)
            truth, valid = scene.true_flow(sc, depth[0], 0, 2, depth_s=depth[2])
            src, dst = rgb[:1].expand(args.batch, -1, -1, -1), rgb[2:].expand(args.batch, -1, -1, -1)
            backends = [("dis", DISFlow(), cpu), ("torch", TorchFlow(), device)]
            if device.type == "cuda":  # ours with its kernels launched one by one: what the CUDA graphs save
                backends.append(("torch-eager", TorchFlow(TorchFlowConfig(cuda_graphs=False)), device))
            for name, backend, where in backends:
                a, b = src.to(where).contiguous(), dst.to(where).contiguous()
                flow, seconds = median_seconds(lambda backend=backend, a=a, b=b: backend(a, b), where, args.repeats)  # noqa: B023
                err = ((flow[0].to(truth.device) - truth) ** 2).sum(0).sqrt()[valid]
                row = {"size": size, "camera": camera, "flow": name, "device": str(where), "epe": err.mean().item(),
                       "epe_p95": err.quantile(0.95).item(), "seconds_per_pair": seconds / args.batch}  # fmt: skip
                rows.append(row)
                print(f"{size} {camera:8s} {name:11s} on {where}: EPE {row['epe']:.3f} px (95th pct {row['epe_p95']:.3f}), "
                      f"{row['seconds_per_pair'] * 1e3:.1f} ms/pair", flush=True)  # fmt: skip
    summary = {}
    for size in args.sizes.split(","):
        cams = {r["camera"] for r in rows if r["size"] == size}
        flows = dict.fromkeys(r["flow"] for r in rows)  # in the order run
        per = {f: [r for r in rows if r["size"] == size and r["flow"] == f] for f in flows}
        summary[size] = {
            "cameras": sorted(cams),
            **{f"{f}_epe": round(statistics.mean(r["epe"] for r in rs), 4) for f, rs in per.items()},
            **{
                f"{f}_ms_per_pair": round(1e3 * statistics.mean(r["seconds_per_pair"] for r in rs), 2)
                for f, rs in per.items()
            },
        }
        s = summary[size]
        s["torch_speedup_over_dis"] = round(s["dis_ms_per_pair"] / s["torch_ms_per_pair"], 3)
        if "torch-eager" in per:
            s["cuda_graphs_speedup"] = round(s["torch-eager_ms_per_pair"] / s["torch_ms_per_pair"], 3)
            print(f"{size}: CUDA graphs x{s['cuda_graphs_speedup']} ({s['torch-eager_ms_per_pair']:.1f} ms/pair eager)")
        print(f"{size}: mean EPE DIS {s['dis_epe']:.3f} px, ours {s['torch_epe']:.3f} px; {s['dis_ms_per_pair']:.1f} vs "
              f"{s['torch_ms_per_pair']:.1f} ms/pair (ours x{s['torch_speedup_over_dis']} DIS's speed)")  # fmt: skip
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        card = (
            torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
        )
        report = {"command": " ".join(sys.argv), "machine": platform.node(), "device": card, "threads": plan.describe(),
                  "torch": torch.__version__, "runs": rows, "summary": summary}  # fmt: skip
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
