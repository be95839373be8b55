"""The 3D report written beside the exports: where the clip's depth sits against the screen's budget.

``build_report`` turns a clip's per-frame effect into numbers (a dict, saved as JSON); ``write_report``
saves them and draws them (PNG, matplotlib, imported only here). Parallax is in % of the image width,
+ behind the screen, - in front (``comfort``'s convention). Per frame: the parallax of the top (``near``) and the
bottom (``far``) of the range the frame is normalised over (its 1 % nearest and farthest pixels at most there), the
screen plane's place in the depth range (``convergence``), the strength, whether a window violation was handled
there and the floating-window bars; per shot: strength, screen plane, depth structure; the
histogram of every pixel's parallax over the clip; the share of pixels inside the budget; the largest
frame-to-frame change of a point's parallax inside a shot (depth "breathing") against what a viewer sees.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import comfort, io

REPORT_SUFFIX = "_3d_report"  # <stem>_3d_report.json / .png beside the exports
CLIP_BINS = 80  # the report's histogram of parallax over the clip
REPORT_NAMES = ("report", "report_json")  # the report's keys among a convert's outputs (``write_report``)


def build_report(
    *,
    near: np.ndarray,
    far: np.ndarray,
    histogram: np.ndarray,
    budget: comfort.Budget,
    shots: list[tuple[int, int]],
    fps: float,
    track: comfort.EffectTrack | None = None,
    lo: np.ndarray | None = None,
    hi: np.ndarray | None = None,
    width: int = 0,
    physical: tuple[float, float] | None = None,
) -> dict:
    """The report's numbers.

    near, far ``(T,)``: parallax of normalised disparity 1 and 0 per frame (% of the width); histogram
    ``(T, comfort.HISTOGRAM_BINS)``: share of pixels per bin of normalised disparity (``comfort.scan_disparity``);
    shots: (first, end); track: the effect by strength (None: the physical camera); lo, hi ``(T,)``: the raw
    disparity range per frame (for the change of a point's parallax from frame to frame; None: not computed);
    width: pixels (for the violations left after the handling); physical: the physical camera's (scale, screen),
    needed when there is no track (``comfort.physical_scale``: % of the width per 1/m of inverse depth; the screen plane's
    inverse depth, 1/m, 0 at infinity). Its strength and convergence per frame are then the effective ones of its
    range: ``far - near`` and where 0 lies in it, ``far / (far - near)`` (below 0: the screen behind everything).
    """
    near, far = np.asarray(near, np.float64), np.asarray(far, np.float64)
    n = len(near)
    edges = np.linspace(0.0, 1.0, comfort.HISTOGRAM_BINS + 1)
    # parallax is linear in d per frame: p(d) = far + d (near - far)
    p_edges = far[:, None] + edges[None] * (near - far)[:, None]  # (T, bins + 1)
    inside_bin = (p_edges >= -budget.near - 1e-6) & (p_edges <= budget.far + 1e-6)
    inside = (histogram * (inside_bin[:, :-1] & inside_bin[:, 1:])).sum(1)  # share of pixels whose whole bin is inside
    centres = 0.5 * (p_edges[:, :-1] + p_edges[:, 1:])
    span = (min(float(near.min()), -budget.near) - 0.1, max(float(far.max()), budget.far) + 0.1)
    clip_hist, clip_edges = np.histogram(centres.ravel(), bins=CLIP_BINS, range=span, weights=histogram.ravel())
    frames = {
        "near": near.round(5).tolist(), "far": far.round(5).tolist(), "inside_budget": inside.round(5).tolist(),
    }  # fmt: skip
    shot_rows = []
    if track is not None:
        frames |= {
            "strength": track.strength.round(5).tolist(), "convergence": track.convergence.round(5).tolist(),
            "violation": track.violations.astype(int).tolist(), "float_left_px": track.windows[:, 0].tolist(),
            "float_right_px": track.windows[:, 1].tolist(),
        }  # fmt: skip
        for (a, b), handled in zip(shots, track.handling, strict=True):
            shot_rows.append({
                "first": a, "end": b, "strength": round(float(track.strength[a]), 5), "convergence": round(float(track.convergence[a]), 5),
                "rho": round(float(np.median(track.rho[a:b])), 5), "violation_frames": int(track.violations[a:b].sum()),
                "handled": handled,
            })  # fmt: skip
    else:
        span = far - near
        frames |= {
            "strength": span.round(5).tolist(),
            "convergence": np.divide(far, span, out=np.zeros(n), where=span > 0).round(5).tolist(),
        }
        scale, screen = physical  # given whenever there is no track
        shot_rows = [{"first": a, "end": b, "scale": round(scale, 6), "screen": round(screen, 6)} for a, b in shots]
    change = screen_change(near, far, lo, hi, shots) if lo is not None and hi is not None else None
    return {
        "frames_count": n, "fps": fps, "mode": "physical" if track is None else ("auto" if track.auto else "fixed"),
        "screen": budget.screen, "budget": {"near": -budget.near, "far": budget.far, "rules": budget.rules, "binding": list(budget.binding)},
        "window_violations": None if track is None else track.mode,
        "violation_frames": [] if track is None else np.flatnonzero(track.violations).tolist(),
        "unhandled_violation_frames": [] if track is None else np.flatnonzero(track.unhandled(width)).tolist(),
        "cuts": [a for a, _ in shots[1:]], "shots": shot_rows, "frames": frames,
        "histogram": {"edges": clip_edges.round(5).tolist(), "share": (clip_hist / max(n, 1)).round(6).tolist()},
        "inside_budget_min": float(inside.min()) if n else 1.0,
        "screen_change": None if change is None else {
            "max_per_frame": float(change.max(initial=0.0)), "visible": comfort.visible_change(budget.screen), "per_frame": change.round(5).tolist(),
        },
    }  # fmt: skip


def screen_change(
    near: np.ndarray, far: np.ndarray, lo: np.ndarray, hi: np.ndarray, shots: list[tuple[int, int]]
) -> np.ndarray:
    """Per frame ``(T,)``: the largest change (% of the width) since the frame before, inside a shot, of the
    parallax of any raw disparity D (0 at a shot's first frame). p_t(D) is piecewise linear in D with its
    corners at the two frames' range ends, so the largest change is at one of those four values."""
    out = np.zeros(len(near))
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)

    def p(t: int, d_raw: np.ndarray) -> np.ndarray:
        span = hi[t] - lo[t]
        d = np.clip((d_raw - lo[t]) / span, 0, 1) if span > 0 else np.zeros_like(d_raw)
        return far[t] + d * (near[t] - far[t])

    for a, b in shots:
        for t in range(a + 1, b):
            corners = np.array([lo[t], hi[t], lo[t - 1], hi[t - 1]])
            out[t] = np.abs(p(t, corners) - p(t - 1, corners)).max()
    return out


def write_report(out_dir: Path, stem: str, report: dict) -> dict[str, Path]:
    """``<stem>_3d_report.json`` and ``.png`` in ``out_dir``, each written atomically. Returns {name: path}."""
    json_path = Path(out_dir) / f"{stem}{REPORT_SUFFIX}.json"
    png_path = Path(out_dir) / f"{stem}{REPORT_SUFFIX}.png"
    io.write_text(json_path, json.dumps(report, indent=1))
    with io.atomic_path(png_path) as tmp:
        draw_report(report, tmp)
    return {"report_json": json_path, "report": png_path}


def draw_report(report: dict, path: Path) -> None:
    """The report as a PNG: parallax over time with the budget and the cuts; strength and screen plane per frame;
    the histogram of parallax over the clip."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    fr = report["frames"]
    t = np.arange(report["frames_count"])
    near, far = np.array(fr["near"]), np.array(fr["far"])
    budget = report["budget"]
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), gridspec_kw={"height_ratios": [3, 1.5, 2]})
    ax = axes[0]
    ax.fill_between(t, near, far, color="tab:blue", alpha=0.25, step="mid", label="depth range")
    ax.step(t, near, where="mid", color="tab:red", label="nearest")
    ax.step(t, far, where="mid", color="tab:blue", label="farthest")
    ax.axhline(0, color="black", lw=1, label="screen plane")
    ax.axhline(budget["near"], color="tab:red", ls="--", lw=1, label=f"budget ({report['screen']})")
    ax.axhline(budget["far"], color="tab:blue", ls="--", lw=1)
    for c in report["cuts"]:
        ax.axvline(c - 0.5, color="grey", ls=":", lw=1)
    v = np.array(report["violation_frames"], int)
    if v.size:
        ax.plot(
            v,
            np.full(v.size, budget["near"]),
            "v",
            color="darkorange",
            ms=4,
            label=f"window violation ({report['window_violations']})",
        )
    ax.set_ylabel("parallax, % of width\n(+ behind the screen)")
    ax.set_title(
        f"3D report: {report['mode']} effect, {len(report['shots'])} shots, pixels inside the budget >= {100 * report['inside_budget_min']:.1f} % per frame"
    )
    ax.legend(loc="upper right", fontsize=7, ncol=3)
    ax = axes[1]
    physical = report["mode"] == "physical"
    ax.step(t, fr["strength"], where="mid", color="tab:green", label="parallax span %" if physical else "strength %")
    ax2 = ax.twinx()
    ax2.step(t, fr["convergence"], where="mid", color="tab:purple", label="screen plane (convergence)")
    ax2.set_ylim(min(-0.05, min(fr["convergence"], default=0.0)), max(1.05, max(fr["convergence"], default=1.0)))
    ax2.set_ylabel("convergence", fontsize=8)
    ax2.legend(loc="lower right", fontsize=7)
    ax.set_ylim(0, max(fr["strength"], default=1.0) * 1.2 or 1.0)
    ax.set_ylabel("parallax span, %" if physical else "strength, %")
    shot = report["shots"][0]
    if physical:
        where = "at infinity" if shot["screen"] == 0 else f"at {1 / shot['screen']:.2f} m"
        ax.text(0.01, 0.88, f"physical camera: {shot['scale']:.3f} % of the width per 1/m, screen plane {where}",
                transform=ax.transAxes, fontsize=8)  # fmt: skip
    change = report["screen_change"]
    if change is not None:
        ax.set_title(
            f"largest change of a point's parallax from one frame to the next inside a shot: {change['max_per_frame']:.3f} % "
            f"(a viewer sees ~{change['visible']:.3f} %)",
            fontsize=9,
        )
    for c in report["cuts"]:
        ax.axvline(c - 0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel("frame")
    ax.legend(loc="upper right", fontsize=7)
    ax = axes[2]
    h = report["histogram"]
    e = np.array(h["edges"])
    ax.bar(e[:-1], h["share"], width=np.diff(e), align="edge", color="tab:blue", alpha=0.7)
    ax.axvline(budget["near"], color="tab:red", ls="--", lw=1)
    ax.axvline(budget["far"], color="tab:blue", ls="--", lw=1)
    ax.axvline(0, color="black", lw=1)
    ax.set_xlabel("parallax, % of width (- in front of the screen, + behind)")
    ax.set_ylabel("share of pixels")
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)


def join_reports(reports: list[dict], counts: list[int]) -> dict:
    """One report of consecutive segments (a batch's long input, split at cuts): per-frame numbers end to end,
    shots, cuts (each segment's start among them) and violation frames shifted, the histograms re-binned onto
    their common span (each counted by its frames)."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
    total = int(sum(counts))
    first = reports[0]
    frames = {k: [x for r in reports for x in r["frames"][k]] for k in first["frames"]}
    lo = min(r["histogram"]["edges"][0] for r in reports)
    hi = max(r["histogram"]["edges"][-1] for r in reports)
    share = np.zeros(CLIP_BINS)
    for r, n in zip(reports, counts, strict=True):
        e = np.asarray(r["histogram"]["edges"])
        share += np.histogram(
            0.5 * (e[:-1] + e[1:]), bins=CLIP_BINS, range=(lo, hi), weights=np.asarray(r["histogram"]["share"]) * n
        )[0]
    changes = [r["screen_change"] for r in reports]
    out = {
        **first, "frames_count": total, "frames": frames,
        "violation_frames": [s + f for r, s in zip(reports, starts, strict=True) for f in r["violation_frames"]],
        "unhandled_violation_frames": [s + f for r, s in zip(reports, starts, strict=True) for f in r["unhandled_violation_frames"]],
        "cuts": sorted({*starts[1:], *(s + c for r, s in zip(reports, starts, strict=True) for c in r["cuts"])}),
        "shots": [{**shot, "first": shot["first"] + s, "end": shot["end"] + s} for r, s in zip(reports, starts, strict=True) for shot in r["shots"]],
        "histogram": {"edges": np.linspace(lo, hi, CLIP_BINS + 1).round(5).tolist(), "share": (share / max(total, 1)).round(6).tolist()},
        "inside_budget_min": min(r["inside_budget_min"] for r in reports),
    }  # fmt: skip
    if all(c is not None for c in changes):
        per_frame = [x for c in changes for x in c["per_frame"]]
        out["screen_change"] = {**changes[0], "per_frame": per_frame, "max_per_frame": max(per_frame, default=0.0)}
    return out
