"""Issue 23, the ring test (a negative result, nothing of it is in the library): choose per hole between the classical
fill and Telea by how well each predicts KNOWN pixels next to the hole.

    python bench/results/fill_real_ringtest.py --data /work/main/bench/real_stereo/data --ring 12 > bench/results/fill_real_ringtest.txt

bench/bench_fill_real.py's code path (warp_cells at the pair's focal and baseline, classical.fill_views with the
default FillConfig, telea_fill, metrics). The interior disocclusions (holes minus classical.border_band) are dilated
by ``--ring`` px (an ellipse); the known pixels so covered (the ring) are hidden (known False, depth 0) and the
enlarged holes filled again by both fillers; each connected component of the dilated disocclusions is scored by
the mean squared error of the two re-fills on its ring against the real pixels there, either the whole ring
(``hard``/``soft``) or its background side (``_bg``: ring pixels at least as far as the ring's median depth, since
the classical fill paints background by design and the occluder's side of the ring would always fail it). The
component's disocclusion pixels then take the classical fill (weight 1) or Telea (0): ``hard`` the better one,
``soft`` the weight e_telea / (e_classical + e_telea). ``c50``: the constant 0.5 in every disocclusion (the control:
what blending alone gives). Band pixels keep the classical fill. Printed: hole PSNR gain over Telea per item
(bench_fill_real's number; videos: and the flicker ratio), then the means, and how often the ring's verdict agrees
with the truth's over the components.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from svg3d import metrics  # noqa: E402
from svg3d.stages.fill import classical  # noqa: E402
from svg3d.stages.fill.telea import telea_fill  # noqa: E402
from svg3d.stages.matrix import warp_cells  # noqa: E402

RULES = ("hard", "soft", "hard_bg", "soft_bg", "c50")


def item(path: Path, kind: str, ring_px: int) -> tuple[dict, list]:
    z = np.load(path)
    left, right, d = z["left"], z["right"], z["disparity" if kind == "oracle" else "degraded"]
    focal, baseline = float(z["focal"]), float(z["baseline"])
    rgb = torch.from_numpy(left).permute(0, 3, 1, 2).float() / 255
    truth = torch.from_numpy(right).permute(0, 3, 1, 2).float() / 255
    depth = torch.from_numpy(focal * baseline / d).float()
    baselines = torch.tensor([0.0, baseline], dtype=torch.float64)
    images, masks, cell_depth = warp_cells(rgb, depth, baselines.float(), focal)
    known, seen = masks[1, :, 0], images[1]
    dis = ~known & ~(classical.border_band(known, 1) | classical.border_band(known, -1))

    def ours(k: torch.Tensor) -> torch.Tensor:
        z_k = torch.where(k, cell_depth[1], 0)[None]
        out = classical.fill_views(
            seen[None], k[None], z_k, source=rgb, source_depth=depth, baselines=baselines[1:], focal=focal
        )
        return out[0].clamp(0, 1)

    ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_px + 1, 2 * ring_px + 1))
    grown = np.stack([cv2.dilate(m, ker) for m in dis.numpy().astype(np.uint8)])
    ring = torch.from_numpy(grown.astype(bool)) & known
    fill_o, fill_t = ours(known), telea_fill(seen, known).clamp(0, 1)
    e_o = ((ours(known & ~ring) - seen) ** 2).mean(1)  # the re-fills' errors on the hidden ring
    e_t = ((telea_fill(seen, known & ~ring).clamp(0, 1) - seen) ** 2).mean(1)
    weight = {r: torch.ones(known.shape) for r in RULES}
    weight["c50"] = torch.where(dis, 0.5, 1.0)
    comps = []
    for t in range(len(known)):
        count, labels = cv2.connectedComponents(grown[t], connectivity=8)
        labels = torch.from_numpy(labels)
        for c in range(1, count):
            comp = labels == c
            on_ring, holes = comp & ring[t], comp & dis[t]
            if not on_ring.any() or not holes.any():
                continue
            bg = on_ring & (cell_depth[1, t] >= cell_depth[1, t][on_ring].median())
            errs = {
                "": (e_o[t][on_ring].mean().item(), e_t[t][on_ring].mean().item()),
                "_bg": (e_o[t][bg].mean().item(), e_t[t][bg].mean().item()),
            }
            for side, (eo, et) in errs.items():
                weight["hard" + side][t][holes] = float(eo <= et)
                weight["soft" + side][t][holes] = et / (eo + et) if eo + et > 0 else 0.5
            true = [((f[t] - truth[t]) ** 2).mean(0)[holes].sum().item() for f in (fill_o, fill_t)]
            comps.append((kind, path.stem, int(holes.sum()), *true, *errs[""], *errs["_bg"]))
    base = metrics.masked_psnr(fill_t, truth, ~known)
    flicker_truth = metrics.flicker(truth, ~known) if len(known) > 1 else math.nan
    row = {
        "ours": (
            metrics.masked_psnr(fill_o, truth, ~known) - base,
            metrics.flicker(fill_o, ~known) / flicker_truth if len(known) > 1 else math.nan,
        )
    }
    for r, w in weight.items():
        out = w[:, None] * fill_o + (1 - w[:, None]) * fill_t
        row[r] = (
            metrics.masked_psnr(out, truth, ~known) - base,
            metrics.flicker(out, ~known) / flicker_truth if len(known) > 1 else math.nan,
        )
    return row, comps


def agreement(comps: list, bg: bool) -> str:
    """How often the ring's verdict (which fill errs less on the ring) is the truth's (which errs less in the hole)."""
    n = agree = 0
    stake = stake_ok = 0.0
    logs = []
    for *_, px, true_o, true_t, eo, et, eob, etb in comps:
        ro, rt = (eob, etb) if bg else (eo, et)
        ok = (ro <= rt) == (true_o <= true_t)
        n, agree = n + 1, agree + ok
        stake, stake_ok = stake + abs(true_o - true_t), stake_ok + ok * abs(true_o - true_t)
        if px >= 50 and min(ro, rt, true_o, true_t) > 0:
            logs.append((math.log(rt / ro), math.log(true_t / true_o)))
    corr = np.corrcoef(np.array(logs).T)[0, 1]
    return f"right in {agree}/{n} components, {100 * stake_ok / stake:.0f} % of the squared error at stake; corr(log ring ratio, log hole ratio) {corr:+.2f} over the {len(logs)} of >= 50 px"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--ring", type=int, default=12, help="px of known pixels hidden around each disocclusion")
    p.add_argument("--items", nargs="+")
    args = p.parse_args()
    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    paths = [args.data / f"{n}.npz" for n in args.items] if args.items else sorted(args.data.glob("*.npz"))
    paths = [q for q in paths if "-" not in q.stem] + [q for q in paths if "-" in q.stem]  # the stills first
    rows, comps = [], []
    print(f"# ring {args.ring} px; hole PSNR gain over Telea (videos: / flicker ratio) of: ours | " + " | ".join(RULES))
    for path in paths:
        for kind in ("oracle", "degraded"):
            row, c = item(path, kind, args.ring)
            rows.append((path.stem, kind, row))
            comps += [x for x in c if "-" not in path.stem]
            cells = [f"{g:+.2f}" + (f"/{f:.2f}" if math.isfinite(f) else "") for g, f in row.values()]
            print(f"  {kind:8s} {path.stem:16s} " + " | ".join(cells), flush=True)
    for group, sel in (
        ("stills", [r for n, _, r in rows if "-" not in n]),
        ("videos", [r for n, _, r in rows if "-" in n]),
    ):
        if sel:
            print(
                f"# {group} ({len(sel)} item x depth): mean / worst gain over Telea, items losing > 0.1 dB against ours"
            )
            for rule in ("ours", *RULES):
                g = [r[rule][0] for r in sel]
                lost = sum(r[rule][0] < r["ours"][0] - 0.1 for r in sel)
                print(f"#   {rule:8s} {sum(g) / len(g):+.3f} / {min(g):+.2f}   lost {lost}")
    if comps:
        print(f"# stills, the ring's verdict over the whole ring: {agreement(comps, False)}")
        print(f"# stills, over its background side: {agreement(comps, True)}")


if __name__ == "__main__":
    main()
