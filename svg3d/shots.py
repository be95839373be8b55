"""Shots and the depth range each frame is normalised over.

Monocular depth is relative: each frame's disparity has its own scale, so the frame matrix normalises
it over a range (``camera.normalise_disparity``). The reference takes the whole clip's min and max
(``depth_range="clip"``): one near particle anywhere, or a cut to a close-up, then changes the 3D of
every frame. ``depth_range="shot"`` (``convert``'s default) normalises each shot on its own, over a
robust range (the 1st and 99th percentiles of each frame) smoothed over time inside the shot, so one
frame cannot make the shot jump and a cut does not carry one shot's range into the next.

Cuts come from a colour-histogram test: each frame's signature is the histogram of its hue,
saturation and value (``frame_signature``); the depth stage, which decodes every frame anyway, records
each frame's distance to the one before (``cut_scores``) among its statistics. A cut
is a frame whose distance to the previous one is both large (``CUT_THRESHOLD``) and far above the
local level of change (``CUT_RATIO`` x the median around it), which keeps fast pans and flashes out.
"""

from __future__ import annotations

import cv2
import numpy as np

SIGNATURE_SIZE = (64, 36)  # (w, h) a frame is shrunk to before its histogram: cheap, and noise averages out
HIST_BINS = 16  # per channel (hue, saturation, value)
CUT_THRESHOLD = 0.35  # half the L1 distance of two normalised histograms (0: same, 1: disjoint), per channel mean
CUT_RATIO = 3.0  # ... and at least this many times the median distance of the frames around it
CUT_NEIGHBOURHOOD = 8  # frames on each side whose distances make that median
MIN_SHOT = 4  # frames: a shorter "shot" is a flash, not a cut
SMOOTH_SECONDS = 1.0  # the per-frame range is smoothed over this long inside a shot


def frame_signature(frames: np.ndarray) -> np.ndarray:
    """Hue/saturation/value histograms of ``uint8 (n, H, W, 3)`` RGB frames: ``float32 (n, 3 * HIST_BINS)``,
    each channel's histogram summing to 1."""
    out = np.empty((len(frames), 3 * HIST_BINS), np.float32)
    for i, f in enumerate(frames):
        small = cv2.resize(f, SIGNATURE_SIZE, interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        for c, top in enumerate((180, 256, 256)):  # OpenCV's 8-bit hue runs 0..179
            hist = cv2.calcHist([hsv], [c], None, [HIST_BINS], [0, top]).reshape(-1)  # (bins, 1) in OpenCV 4, (bins,) in 5
            out[i, c * HIST_BINS : (c + 1) * HIST_BINS] = hist / max(hist.sum(), 1.0)
    return out


def cut_scores(signatures: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """Distance of each frame to the one before it ``(n,)``: half the L1 distance of their histograms,
    averaged over the three channels, in [0, 1]. ``previous``: the signature of the frame before the first
    (a chunk's context), else the first frame scores 0."""
    sig = signatures.astype(np.float64)
    before = np.concatenate([sig[:1] if previous is None else previous[None].astype(np.float64), sig[:-1]])
    return 0.5 * np.abs(sig - before).sum(1) / 3


def detect_cuts(scores: np.ndarray) -> list[int]:
    """First frames of the shots after the first (sorted): where ``cut_scores`` ``(T,)`` has a clear, isolated peak."""
    d = np.asarray(scores, np.float64)
    cuts: list[int] = []
    for t in range(1, len(d)):
        around = np.concatenate([d[max(1, t - CUT_NEIGHBOURHOOD) : t], d[t + 1 : t + 1 + CUT_NEIGHBOURHOOD]])
        level = float(np.median(around)) if around.size else 0.0
        if d[t] >= CUT_THRESHOLD and d[t] >= CUT_RATIO * level and t - (cuts[-1] if cuts else 0) >= MIN_SHOT:
            cuts.append(t)
    return cuts


def shot_bounds(num_frames: int, cuts: list[int]) -> list[tuple[int, int]]:
    """``[(first, end), ...]`` of the shots of a clip with these cuts."""
    edges = [0, *cuts, num_frames]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


def _smooth(x: np.ndarray, radius: int) -> np.ndarray:
    """A running median over ``2 radius + 1`` frames (a spike of a few frames does not move it), then a running
    mean over the same span (no steps); edges use the frames there are."""
    if radius < 1 or len(x) < 3:
        return x.copy()
    med = np.array([np.median(x[max(0, i - radius) : i + radius + 1]) for i in range(len(x))])
    csum = np.concatenate([[0.0], np.cumsum(med)])
    idx = np.arange(len(x))
    lo, hi = np.maximum(0, idx - radius), np.minimum(len(x), idx + radius + 1)
    return (csum[hi] - csum[lo]) / (hi - lo)


def depth_ranges(
    stats: dict[str, np.ndarray], mode: str, *, cuts: list[int] | None = None, fps: float = 25.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame normalisation range ``(lo, hi)``, each ``float32 (T,)``.

    stats: per-frame ``min``, ``max``, ``p01``, ``p99`` of the disparity (``depth.frame_stats``).
    ``clip``: the clip's min and max for every frame (the reference). ``shot``: per shot (``cuts``), the
    1st/99th percentiles smoothed over ``SMOOTH_SECONDS`` (``_smooth``), never a wider span than the
    shot's own min..max.
    """
    n = len(stats["min"])
    if mode == "clip":
        lo, hi = float(np.min(stats["min"])), float(np.max(stats["max"]))
        return np.full(n, lo, np.float32), np.full(n, hi, np.float32)
    if mode != "shot":
        raise ValueError(f"mode must be 'clip' or 'shot', got {mode!r}")
    radius = max(1, round(SMOOTH_SECONDS * fps / 2))
    lo, hi = np.empty(n), np.empty(n)
    for a, b in shot_bounds(n, cuts or []):
        lo[a:b] = np.maximum(_smooth(stats["p01"][a:b], radius), stats["min"][a:b].min())
        hi[a:b] = np.minimum(_smooth(stats["p99"][a:b], radius), stats["max"][a:b].max())
    return lo.astype(np.float32), hi.astype(np.float32)
