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


def detect_cuts(scores: np.ndarray, *, start: int = 1, cuts: list[int] | None = None) -> list[int]:
    """First frames of the shots after the first (sorted): where ``cut_scores`` ``(T,)`` has a clear, isolated peak.

    A cut at ``t`` depends on the scores of ``t - CUT_NEIGHBOURHOOD .. t + CUT_NEIGHBOURHOOD`` and on the cut
    before it: the cuts found in a clip's first frames are those of the whole clip up to ``CUT_NEIGHBOURHOOD``
    frames from the end of what is known. ``start`` and ``cuts``: go on from frame ``start`` after these cuts.
    """
    d = np.asarray(scores, np.float64)
    cuts = list(cuts or [])
    for t in range(max(1, start), len(d)):
        around = np.concatenate([d[max(1, t - CUT_NEIGHBOURHOOD) : t], d[t + 1 : t + 1 + CUT_NEIGHBOURHOOD]])
        level = float(np.median(around)) if around.size else 0.0
        if d[t] >= CUT_THRESHOLD and d[t] >= CUT_RATIO * level and t - (cuts[-1] if cuts else 0) >= MIN_SHOT:
            cuts.append(t)
    return cuts


def shot_bounds(num_frames: int, cuts: list[int]) -> list[tuple[int, int]]:
    """``[(first, end), ...]`` of the shots of a clip with these cuts."""
    edges = [0, *cuts, num_frames]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


def chunk_pieces(cuts: list[int], a: int, b: int, context: int, num_frames: int) -> list[tuple[int, int, int, int]]:
    """Frames ``a .. b-1`` cut at ``cuts``: ``[(s, e, lo, hi), ...]``, each piece ``s .. e-1`` inside one shot with
    the frames of that shot within ``context`` of it, ``lo .. hi-1`` (a filler's temporal context stops at a cut)."""
    edges = [a, *(c for c in cuts if a < c < b), b]
    out = []
    for s, e in zip(edges, edges[1:], strict=False):
        first = max([0, *(c for c in cuts if c <= s)])
        end = min([num_frames, *(c for c in cuts if c >= e)])
        out.append((s, e, max(first, s - context), min(end, e + context)))
    return out


def smooth_radius(fps: float) -> int:
    """Frames on each side of the running median and of the running mean (``_smooth``): half of ``SMOOTH_SECONDS``."""
    return max(1, round(SMOOTH_SECONDS * fps / 2))


def range_lookahead(fps: float) -> int:
    """Frames past frame i whose statistics decide frame i's range (``depth_ranges``, mode ``shot``): the median's
    and the mean's radius, and the scores that decide a cut there."""
    return 2 * smooth_radius(fps) + CUT_NEIGHBOURHOOD + 1


def _smooth(x: np.ndarray, radius: int) -> np.ndarray:
    """A running median over ``2 radius + 1`` frames (a spike of a few frames does not move it), then a running
    mean over the same span (no steps); edges use the frames there are. Each value is computed from its own window
    (no running sums), so a window of a longer series gives the same numbers."""
    if radius < 1 or len(x) < 3:
        return x.copy()
    n = len(x)
    med = np.array([np.median(x[max(0, i - radius) : i + radius + 1]) for i in range(n)])
    return np.array([med[max(0, i - radius) : i + radius + 1].mean() for i in range(n)])


def depth_ranges(
    stats: dict[str, np.ndarray], mode: str, *, cuts: list[int] | None = None, fps: float = 25.0, frames: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame normalisation range ``(lo, hi)`` of ``frames`` ``(a, b)`` (default: all), each ``float32 (b - a,)``.

    stats: per-frame ``min``, ``max``, ``p01``, ``p99`` of the disparity (``depth.frame_stats``).
    ``clip``: the clip's min and max for every frame (the reference). ``shot``: per shot (``cuts``), the
    1st/99th percentiles smoothed over ``SMOOTH_SECONDS`` (``_smooth``); frame i's range depends on frames
    ``i - 2 radius .. i + 2 radius`` of its shot alone, so the statistics of the first ``b + range_lookahead(fps)``
    frames give frames ``a .. b-1`` exactly as the whole clip does. (The percentiles lie inside each frame's
    min..max, so the smoothed range never leaves its shot's min..max.)
    """
    n = len(stats["min"])
    a, b = frames if frames is not None else (0, n)
    if mode == "clip":
        lo, hi = float(np.min(stats["min"])), float(np.max(stats["max"]))
        return np.full(b - a, lo, np.float32), np.full(b - a, hi, np.float32)
    if mode != "shot":
        raise ValueError(f"mode must be 'clip' or 'shot', got {mode!r}")
    radius = smooth_radius(fps)
    lo, hi = np.empty(b - a), np.empty(b - a)
    for s0, s1 in shot_bounds(n, cuts or []):
        f0, f1 = max(s0, a), min(s1, b)
        if f0 >= f1:
            continue
        w0, w1 = max(s0, f0 - 2 * radius), min(s1, f1 + 2 * radius)  # what decides frames f0 .. f1-1
        lo[f0 - a : f1 - a] = _smooth(np.asarray(stats["p01"][w0:w1], np.float64), radius)[f0 - w0 : f1 - w0]
        hi[f0 - a : f1 - a] = _smooth(np.asarray(stats["p99"][w0:w1], np.float64), radius)[f0 - w0 : f1 - w0]
    return lo.astype(np.float32), hi.astype(np.float32)
