"""Benchmark: the classical filler at a cut, its temporal context across the cut (the code before) against stopping at it
(``stages.fill.stage.FillStage``: each shot filled as a clip of its own, ``shots.chunk_pieces``).

    python bench/bench_fill_cuts.py --json bench/results/fill_cuts.json

Two rendered clips of ``bench_fill`` (exact depth, exact right eye) one after the other: the right eye's holes filled
over the pair at once, and each clip alone. PSNR inside the disocclusions over all frames and over the frames within
the filler's context of the cut, and the flicker ratio of the filled pixels (``metrics.region_scores``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import torch  # noqa: E402
from bench_fill import make_clip  # noqa: E402

from svg3d import metrics  # noqa: E402
from svg3d.stages.fill import classical as fill  # noqa: E402

PAIRS = (("truck", "pan"), ("bikes-handheld", "bbb-truck"), ("dolly", "handheld"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="288x160")
    p.add_argument("--frames", type=int, default=16, help="frames of each clip (default: %(default)s)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    n, config = args.frames, fill.FillConfig()
    rows = []
    for first, second in PAIRS:
        clips = [make_clip(name, n, h, w) for name in (first, second)]
        info = clips[0][0].info
        images = torch.cat([c[0].images for c in clips], 1)
        masks = torch.cat([c[0].masks for c in clips], 1)
        depth = torch.cat([c[1] for c in clips], 1)
        truth = torch.cat([c[2] for c in clips])

        def run(images, masks, depth, info=info):
            return fill.fill_frame_matrix(images, masks, depth, config, views=[1], baselines=info.baselines, focal=info.focal).images[0]

        filled = {"across the cut": run(images, masks, depth), "per shot": torch.cat([run(c[0].images, c[0].masks, c[1]) for c in clips])}
        hole, near = ~masks[1, :, 0], slice(n - config.context, n + config.context)
        row = {"clips": [first, second]}
        for name, im in filled.items():
            every, at_cut = metrics.region_scores(im, truth, hole), metrics.region_scores(im[near], truth[near], hole[near])
            row[name] = {"psnr": round(every["psnr"], 3), "psnr_near_cut": round(at_cut["psnr"], 3), "flicker_ratio": round(every["flicker_ratio"], 3)}
        rows.append(row)
        a, b = row["across the cut"], row["per shot"]
        print(f"{first} | {second}: across the cut {a['psnr']:.2f} dB ({a['psnr_near_cut']:.2f} near it, flicker {a['flicker_ratio']:.2f}); "
              f"per shot {b['psnr']:.2f} dB ({b['psnr_near_cut']:.2f}, flicker {b['flicker_ratio']:.2f})", flush=True)  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "machine": os.uname().nodename, "size": args.size, "frames": n,
                                         "context": config.context, "pairs": rows}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
