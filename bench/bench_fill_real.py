"""Benchmark: hole filling of the right eye on REAL stereo captures (the one that decides; bench_fill.py is a regression check).

    python bench/real_stereo/prepare.py                    # once: gets and prepares bench/real_stereo/data/
    python bench/bench_fill_real.py --json bench/results/fill_real.json
    python bench/bench_fill_real.py --items selfie selfie-pan --previews /tmp/previews   # PNGs to look at
    python bench/bench_fill_real.py --fillers classical telea     # only the filler and the baseline (faster)

Each item (bench/real_stereo/prepare.py) is a rectified real pair: left = the input, right = the truth, and
the geometry of the true pair (SGBM with a left-right check). That disparity d becomes metric depth
Z = focal x baseline / d and goes through the library calls ``convert --depth-from --metric-depth`` makes
(``matrix.warp_cells`` at the pair's focal and baseline, screen at infinity), so a known pixel of the
warped right eye lands exactly where the true right camera saw it (up to the matcher's error). The same
items again with ``degraded`` depth: the errors monocular estimators make (blurred and shifted edges, scale
and shift error, flattened saturated and textureless regions), the depth the product really gets.

Fillers: ``classical`` (``fill_views``), ``previous`` (``previous_fill``), ``telea`` (Telea on the product's
warp) and ``dibr-telea`` (this harness's own plain DIBR: nearest-pixel splat with a z-buffer, no crack
clean-up, then Telea). Scores against the true right view: PSNR and SSIM inside the disocclusions (the
product warp's holes) and on all pixels, and for videos the flicker ratio of the hole pixels (their
frame-to-frame change over the true right video's: > 1 = more flicker than reality). Means over items
per depth kind. Times are wall seconds per frame of one view on this machine (shared: indicative only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from svg3d import metrics  # noqa: E402
from svg3d.stages.fill import classical  # noqa: E402
from svg3d.stages.fill.previous import previous_fill  # noqa: E402
from svg3d.stages.fill.telea import telea_fill  # noqa: E402
from svg3d.stages.matrix import warp_cells  # noqa: E402

DATA = Path(__file__).resolve().parent / "real_stereo" / "data"
FILLERS = ("classical", "previous", "telea", "dibr-telea")


def plain_dibr(left: np.ndarray, disparity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The harness's own right view: each left pixel to column round(x - d), nearest (largest d) wins.

    left uint8 ``(H, W, 3)``, disparity ``(H, W)`` px. Returns the image and its known mask (bool ``(H, W)``).
    """
    h, w = disparity.shape
    out = np.zeros_like(left)
    best = np.full((h, w), -np.inf, np.float32)
    xs = np.round(np.arange(w)[None] - disparity).astype(int)
    ys = np.arange(h)[:, None].repeat(w, 1)
    inside = (xs >= 0) & (xs < w)
    order = np.argsort(disparity[inside], kind="stable")  # far first: nearer writes last and wins
    y, x, src_y, src_x = ys[inside][order], xs[inside][order], ys[inside][order], np.nonzero(inside)[1][order]
    out[y, x] = left[src_y, src_x]
    best[y, x] = disparity[src_y, src_x]
    return out, np.isfinite(best)


def dibr_telea(left: np.ndarray, disparity: np.ndarray) -> torch.Tensor:
    """``plain_dibr`` of every frame, holes by Telea: float ``(T, 3, H, W)``."""
    frames = []
    for lf, d in zip(left, disparity, strict=True):
        img, known = plain_dibr(lf, d)
        frames.append(cv2.inpaint(img, (~known).astype(np.uint8), 3, cv2.INPAINT_TELEA))
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255  # T H W 3 -> T 3 H W


def run_item(
    path: Path, depth_kind: str, config: classical.FillConfig, fillers: tuple[str, ...] = FILLERS
) -> tuple[dict, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    z = np.load(path)
    left, right, d = z["left"], z["right"], z["disparity" if depth_kind == "oracle" else "degraded"]
    focal, baseline = float(z["focal"]), float(z["baseline"])
    rgb = torch.from_numpy(left).permute(0, 3, 1, 2).float() / 255  # T H W 3 -> T 3 H W
    truth = torch.from_numpy(right).permute(0, 3, 1, 2).float() / 255
    depth = torch.from_numpy(focal * baseline / d).float()  # metric Z: focal x baseline / Z = d exactly
    baselines = torch.tensor([0.0, baseline], dtype=torch.float64)
    images, masks, cell_depth = warp_cells(rgb, depth, baselines.float(), focal)
    known = masks[1, :, 0]
    t = len(rgb)
    runs = {
        "classical": lambda: classical.fill_views(
            images[1:], masks[1:, :, 0], cell_depth[1:], source=rgb, source_depth=depth, baselines=baselines[1:], focal=focal, config=config
        )[0],
        "previous": lambda: previous_fill(images, masks, cell_depth, views=[1]).images[0],
        "telea": lambda: telea_fill(images[1], known),
        "dibr-telea": lambda: dibr_telea(left, d),
    }
    out, row = {}, {"item": path.stem, "depth": depth_kind, "frames": t, "holes_pct": 100 * (~known).float().mean().item()}
    row["band_pct"] = 100 * (classical.border_band(known, 1) | classical.border_band(known, -1)).float().mean().item()
    everywhere = torch.ones_like(known)
    band = classical.border_band(known, 1) | classical.border_band(known, -1)  # out of view: no camera saw it
    disoccluded = ~known & ~band  # background a nearer object hid
    for name, run in runs.items():
        if name not in fillers:
            continue
        start = time.perf_counter()
        out[name] = run().clamp(0, 1)
        seconds = time.perf_counter() - start
        s = metrics.region_scores(out[name], truth, ~known) if t > 1 else {
            "psnr": metrics.masked_psnr(out[name], truth, ~known), "ssim": metrics.masked_ssim(out[name], truth, ~known)}  # fmt: skip
        row[name] = {
            "hole_psnr": s["psnr"], "hole_ssim": s["ssim"],
            "all_psnr": metrics.masked_psnr(out[name], truth, everywhere), "all_ssim": metrics.masked_ssim(out[name], truth, everywhere),
            "disocclusion_psnr": metrics.masked_psnr(out[name], truth, disoccluded), "band_psnr": metrics.masked_psnr(out[name], truth, band),
            "ms_per_frame": 1000 * seconds / t,
        }  # fmt: skip
        if t > 1:
            row[name]["flicker_ratio"] = s["flicker_ratio"]
    return row, out, truth, known


def save_previews(folder: Path, row: dict, out: dict[str, torch.Tensor], truth: torch.Tensor, known: torch.Tensor) -> None:
    """Frame 0 (and the middle frame of videos): truth | classical | telea | previous (black if not run), holes outlined in red."""
    folder.mkdir(parents=True, exist_ok=True)
    for t in sorted({0, len(truth) // 2}):
        edge = cv2.morphologyEx((~known[t]).numpy().astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        tiles = []
        for img in (truth[t], out["classical"][t], out["telea"][t], out.get("previous", torch.zeros_like(truth))[t]):
            a = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8).copy()
            a[edge] = (a[edge] * 0.5 + np.array([0, 0, 127])).astype(np.uint8)  # BGR red outline
            tiles.append(a)
        grid = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
        cv2.imwrite(str(folder / f"{row['item']}-{row['depth']}-{t:02d}.png"), grid)


def mean(rows: list[dict], filler: str, key: str) -> float:
    values = [r[filler][key] for r in rows if key in r[filler] and math.isfinite(r[filler][key])]
    return sum(values) / len(values) if values else math.nan


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", nargs="+", help="item names (default: every file in the data folder)")
    p.add_argument("--depth", nargs="+", default=["oracle", "degraded"], choices=["oracle", "degraded"])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--fillers", nargs="+", default=list(FILLERS), choices=FILLERS, help="which fillers (telea is always run: the gains are over it)")
    p.add_argument("--previews", type=Path, help="write PNGs of the filled frames here")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    paths = sorted(args.data.glob("*.npz")) if not args.items else [args.data / f"{n}.npz" for n in args.items]
    if not paths or not all(p.exists() for p in paths):
        raise SystemExit(f"{args.data}: no prepared items (run bench/real_stereo/prepare.py first)")
    config = classical.FillConfig()
    fillers = tuple(f for f in FILLERS if f in args.fillers or f in ("classical", "telea"))
    rows = []
    stills, videos = [p for p in paths if "-" not in p.stem], [p for p in paths if "-" in p.stem]
    for path, kind in [(p, k) for group in (stills, videos) for k in args.depth for p in group]:  # the stills first
        row, out, truth, known = run_item(path, kind, config, fillers)
        rows.append(row)
        gain = row["classical"]["hole_psnr"] - row["telea"]["hole_psnr"]
        dis = row["classical"]["disocclusion_psnr"] - row["telea"]["disocclusion_psnr"]
        flick = f", flicker {row['classical']['flicker_ratio']:.2f} vs Telea {row['telea']['flicker_ratio']:.2f}" if row["frames"] > 1 else ""
        print(f"  {kind:8s} {path.stem:16s} holes {row['holes_pct']:4.1f} %  classical {row['classical']['hole_psnr']:.2f} dB  "
              f"telea {row['telea']['hole_psnr']:.2f}  ({gain:+.2f}; disocclusions {dis:+.2f}, band {row['band_pct']:.1f} %){flick}", flush=True)  # fmt: skip
        if args.previews:
            save_previews(args.previews, row, out, truth, known)
        if args.json:  # after every item: a long run interrupted keeps what it measured
            write_report(args.json, config, rows, {})
    summary = {}
    print("\n| depth | filler | hole PSNR | disocclusion PSNR | band PSNR | hole SSIM | all PSNR | all SSIM | flicker ratio (videos) | worst hole PSNR - Telea | ms/frame |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind in args.depth:
        sub = [r for r in rows if r["depth"] == kind]
        for f in fillers:
            worst = min(r[f]["hole_psnr"] - r["telea"]["hole_psnr"] for r in sub)
            vids = [r[f]["flicker_ratio"] for r in sub if "flicker_ratio" in r[f]]
            keys = ("hole_psnr", "disocclusion_psnr", "band_psnr", "hole_ssim", "all_psnr", "all_ssim", "flicker_ratio", "ms_per_frame")
            summary[f"{kind}/{f}"] = s = {k: mean(sub, f, k) for k in keys}
            s["worst_gain_over_telea"] = worst
            s["max_flicker_ratio"] = max(vids) if vids else math.nan
            print(f"| {kind} | {f} | {s['hole_psnr']:.2f} | {s['disocclusion_psnr']:.2f} | {s['band_psnr']:.2f} | {s['hole_ssim']:.3f} | {s['all_psnr']:.2f} | {s['all_ssim']:.3f} | "
                  f"{s['flicker_ratio']:.2f} (max {s['max_flicker_ratio']:.2f}) | {worst:+.2f} | {s['ms_per_frame']:.0f} |")  # fmt: skip
    if args.json:
        write_report(args.json, config, rows, summary)


def write_report(path: Path, config: classical.FillConfig, rows: list[dict], summary: dict) -> None:
    report = {
        "command": "python " + " ".join(sys.argv),
        "config": config.__dict__,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "summary": summary,
        "items": rows,
    }
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
