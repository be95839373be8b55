"""Comfortable 3D without tuning: a disparity budget from the screen, the effect chosen per shot, window violations.

Sign convention (stereographers'): the *parallax* of a point is ``x_right - x_left`` in the two exported
eyes, in % of the image width. Positive = uncrossed = behind the screen; negative = crossed = in front;
0 = on the screen plane. With the effect of ``camera.effect_camera`` (strength S %, convergence c) a point
of normalised disparity d (0 farthest .. 1 nearest of its frame's range, ``shots``) has parallax
``S * (c - d)``: the farthest point ``+S c`` (behind), the nearest ``-S (1 - c)`` (in front).

1. The budget (``Budget``, ``screen_budget``): how far in front (``near``) and behind (``far``) the
   parallax may go, in % of the width, from the viewing situation (``Viewing``: screen width and viewing
   distance, or a preset of ``SCREENS``) by three rules (docs/comfort.md gives the sources):
   the 1-degree rule (angular disparity against the screen within +-1 degree), the zone of comfort of
   Shibata et al. 2011 (the vergence-accommodation conflict in dioptres), and no divergence (the
   parallax behind the screen never wider than the eyes, ``IPD``). Each side takes the tightest. The
   preset ``default`` is the fixed budget convert always had (+-1.25 %: strength 2.5 at convergence 0.5).
2. The effect per shot (``effect_track``): the strength and the convergence of every frame, constant
   within a shot and free to change at a cut. ``auto``: the shot's depth structure ``rho = 1 -
   lo / hi`` (with disparity proportional to inverse depth: ``1 - Z_near / Z_far``) scales the budget, as
   a real camera whose interaxial puts infinity at the far limit would: a landscape reaching to the sky
   (rho ~ 1) gets the whole budget, a close-up against a near wall only part of it, a flat wall almost
   none (monocular depth is normalised per shot, so without this every shot would be stretched to the
   full budget, the "puppet" look of a close-up). Every frame's disparity is normalised over its shot's steady
   range (``steady_ranges``, ``effect_ranges``), so a point's parallax moves no faster than a viewer can see
   when the scene's depth range changes inside a shot (a dolly).
3. Window violations (``edge_disparity``, ``effect_track``): a frame where something cut by the left
   or right frame edge stands in front of the screen (its parallax below ``-WINDOW_TOLERANCE``) is
   handled for its whole shot, by moving the screen plane in front of it (``screen``: the shot's
   convergence raised to the nearest edge object, the strength lowered so the far side stays within
   its limit; a shot with no room behind the screen, e.g. at convergence 0, would flatten below
   ``MIN_KEPT`` of its strength, and floats a window instead) or by a floating window (``float``: black
   bars at the left edge of the left eye and the right edge of the right eye, as wide as the object's
   crossed parallax, so the window's edges float in front of it; ``float_window``).

The per-frame effect reaches the warp through ``EffectTrack.remap`` (``stages.matrix.MatrixSource``): the
views keep ONE camera per clip (the envelope: the budget's, or the fixed strength's), and each frame's
normalised disparity is mapped so that this camera gives the frame's own parallax: with the envelope
(S0, c0), ``d' = c0 + (S / S0) (d - c)`` gives ``S0 (c0 - d') = S (c - d)``; every frame's effect stays
inside the envelope, so d' stays in [0, 1] and the depth the fillers see stays in the matrix's range.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from . import camera

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# 1. the budget

IPD = 0.063  # m: mean adult interpupillary distance (Dodgson 2004); 95 % of adults lie within ~0.053-0.073 m
VERGENCE_LIMIT_DEG = 1.0  # the 1-degree rule: angular disparity against the screen (Lambooij et al. 2009)
# Shibata et al. 2011, the zone of comfort as lines in dioptres: with the screen's focal distance D_f (1/m),
# comfortable vergence distances D_v lie between m_far D_f + T_far and m_near D_f + T_near.
SHIBATA_FAR = (1.035, -0.626)  # (m_far, T_far dioptres)
SHIBATA_NEAR = (1.129, 0.442)  # (m_near, T_near dioptres)
DEFAULT_SCREEN = "default"
DEFAULT_LIMIT = (
    camera.DEFAULT_STRENGTH / 2
)  # % each side: the budget convert always had (strength 2.5 at convergence 0.5)
WINDOW_CHOICES = ("screen", "float", "off")  # what happens to a window violation (module docstring, 3)
WINDOW_TOLERANCE = (
    0.1  # % of the width: crossed parallax at the frame edge below this is not a violation (~2 px at 1080p)
)
EDGE_BAND = 0.02  # of the width: the columns at each edge where an object counts as cut by the frame
EDGE_ROWS = 0.05  # of the height: an edge object must cover at least this many rows (a speck is not an object)
MIN_KEPT = 0.5  # window "screen": a shot whose strength would drop below this share to move its screen plane floats a window instead
RHO_MIN = 0.1  # auto: no shot gets less than this share of the budget (depth noise on a flat wall stays flat)
STEREOACUITY_ARCSEC = 20.0  # a typical observer's stereoacuity (Howard & Rogers 2012): the visible per-frame change
RATE_SHARE = 0.5  # the steady range (``steady_ranges``) moves any point's parallax by at most this share of the visible change per frame
HISTOGRAM_BINS = 64  # of the normalised disparity per frame (the report's histogram)


@dataclass(frozen=True)
class Viewing:
    """A viewing situation: the image's width on the screen and the eyes' distance to it, metres."""

    width: float
    distance: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.width) and self.width > 0 and math.isfinite(self.distance) and self.distance > 0):
            raise ValueError(
                f"screen width and distance must be finite numbers > 0 (metres), got {self.width}, {self.distance}"
            )


SCREENS: dict[str, Viewing | None] = {
    DEFAULT_SCREEN: None,  # no viewing situation: +-DEFAULT_LIMIT, convert's budget before this module
    "phone": Viewing(0.14, 0.35),  # a 6.1" phone held in landscape at reading distance
    "desktop": Viewing(0.60, 0.65),  # a 27" 16:9 monitor at arm's length
    "tv": Viewing(1.21, 2.5),  # a 55" 16:9 TV from the sofa
    "cinema": Viewing(12.0, 15.0),  # a 12 m screen from the middle of the hall
    "headset": Viewing(2.0, 2.0),  # a headset's video player: a virtual screen 2 m wide at 2 m (~53 degrees)
}


def parse_screen(text: str) -> Viewing | None:
    """A ``SCREENS`` name, or ``WIDTH,DISTANCE`` in metres. Raises ``ValueError`` naming what is accepted."""
    if text in SCREENS:
        return SCREENS[text]
    parts = text.split(",")
    try:
        if len(parts) == 2:
            return Viewing(float(parts[0]), float(parts[1]))
    except ValueError as e:
        raise ValueError(f"{text!r}: {e}") from None
    raise ValueError(f"{text!r}: expected one of {', '.join(SCREENS)}, or WIDTH,DISTANCE in metres (e.g. 1.21,2.5)")


@dataclass(frozen=True)
class Budget:
    """Parallax limits in % of the width: ``near`` in front of the screen (crossed, a magnitude), ``far``
    behind it; ``rules``: each rule's (near, far) limits, and which rule binds each side (``binding``)."""

    near: float
    far: float
    screen: str = DEFAULT_SCREEN
    rules: dict[str, tuple[float, float]] = field(default_factory=dict)
    binding: tuple[str, str] = ("default", "default")

    @property
    def strength(self) -> float:
        """The strength that fills the budget: nearest at the near limit, farthest at the far limit."""
        return self.near + self.far

    @property
    def convergence(self) -> float:
        """The screen plane that splits the depth range as the budget splits (0.5 for a symmetric one)."""
        return self.far / (self.near + self.far)

    def contains(self, strength: float, convergence: float, *, slack: float = 1e-9) -> bool:
        return strength * convergence <= self.far + slack and strength * (1 - convergence) <= self.near + slack


def _vergence(parallax: np.ndarray | float, v: Viewing) -> np.ndarray:
    """Vergence angle (rad) of the eyes fixating a point of on-screen ``parallax`` (m, + behind)."""
    return 2 * np.arctan((IPD - np.asarray(parallax, np.float64)) / (2 * v.distance))


def rule_limits(v: Viewing) -> dict[str, tuple[float, float]]:
    """Each rule's (near, far) limit, in metres of on-screen parallax (magnitudes; inf: no limit).

    Geometry: eyes ``IPD`` apart at ``distance`` from the screen; a point of parallax P (+ behind) is
    fixated at vergence distance ``Z = IPD * distance / (IPD - P)`` (dioptres ``(1 - P / IPD) / distance``).
    """
    screen = float(_vergence(0.0, v))
    limit = math.radians(VERGENCE_LIMIT_DEG)
    # 1-degree rule: |vergence(P) - vergence(0)| <= 1 degree, solved for P (behind: none once the eyes would be parallel)
    one_near = 2 * v.distance * math.tan((screen + limit) / 2) - IPD
    one_far = IPD - 2 * v.distance * math.tan((screen - limit) / 2) if screen > limit else math.inf
    # Shibata: D_v within [m_far D_f + T_far, m_near D_f + T_near], P = IPD (1 - D_v / D_f)
    d_f = 1 / v.distance
    far_dv = SHIBATA_FAR[0] * d_f + SHIBATA_FAR[1]
    near_dv = SHIBATA_NEAR[0] * d_f + SHIBATA_NEAR[1]
    shibata_far = IPD * (1 - far_dv / d_f) if far_dv > 0 else math.inf
    shibata_near = IPD * (near_dv / d_f - 1)
    return {"1-degree": (one_near, one_far), "shibata2011": (shibata_near, shibata_far), "divergence": (math.inf, IPD)}


def screen_budget(screen: str = DEFAULT_SCREEN) -> Budget:
    """The ``Budget`` of a ``SCREENS`` name or ``WIDTH,DISTANCE`` (``parse_screen``): each side's tightest rule."""
    v = parse_screen(screen)
    if v is None:
        return Budget(DEFAULT_LIMIT, DEFAULT_LIMIT, screen, {"default": (DEFAULT_LIMIT, DEFAULT_LIMIT)})
    rules = {name: (100 * n / v.width, 100 * f / v.width) for name, (n, f) in rule_limits(v).items()}
    near_rule = min(rules, key=lambda k: rules[k][0])
    far_rule = min(rules, key=lambda k: rules[k][1])
    return Budget(rules[near_rule][0], rules[far_rule][1], screen, rules, (near_rule, far_rule))


def visible_change(screen: str = DEFAULT_SCREEN) -> float:
    """% of the width: the parallax change per frame a viewer can see (``STEREOACUITY_ARCSEC`` at the viewing
    distance). The ``default`` budget has no viewing situation: the ``tv`` one stands for it."""
    v = parse_screen(screen) or SCREENS["tv"]
    return 100 * v.distance * math.tan(math.radians(STEREOACUITY_ARCSEC / 3600)) / v.width


# --------------------------------------------------------------------------------------------------
# 2-3. the effect per shot, and window violations


def depth_structure(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``rho = 1 - lo / hi`` per frame ``(T,)`` in [0, 1] from the normalisation range of raw disparity:
    with disparity proportional to inverse depth, ``1 - Z_near / Z_far`` (1: reaching to infinity, 0: flat)."""
    lo = np.maximum(np.asarray(lo, np.float64), camera.DISPARITY_FLOOR)
    hi = np.maximum(np.asarray(hi, np.float64), camera.DISPARITY_FLOOR)
    return np.clip(1 - lo / hi, 0.0, 1.0)


def edge_disparity(d: np.ndarray) -> np.ndarray:
    """The normalised disparity of the nearest object cut by each side of the frame: ``(n, H, W)`` -> ``(n, 2)``
    (left, right). Per row, the nearest value in the ``EDGE_BAND`` columns; over the rows, the value that
    at least ``EDGE_ROWS`` of them reach (a thin speck at the edge is not an object)."""
    w = d.shape[-1]
    band = max(1, round(EDGE_BAND * w))
    q = 1 - EDGE_ROWS
    left = np.quantile(d[:, :, :band].max(2), q, axis=1)
    right = np.quantile(d[:, :, w - band :].max(2), q, axis=1)
    return np.stack([left, right], 1)


def steady_ranges(lo: np.ndarray, hi: np.ndarray, cuts: list[int], step: float) -> tuple[np.ndarray, np.ndarray]:
    """Per shot, the narrowest range ``(L, H)`` ``(T,)`` that contains every frame's range ``(lo, hi)`` and whose ends
    move by at most ``rate = step x`` (the shot's narrowest ``hi - lo``) per frame: ``L_t = min_k lo_k + rate |t - k|``,
    ``H_t = max_k hi_k - rate |t - k|`` over the shot (a forward and a backward pass each). ``step`` 0: the shot's
    whole range in every frame; inf: the frames' own ranges.

    Why: a point of raw disparity D normalised over ``(L_t, H_t)`` gets the parallax ``S (c - (D - L_t) / (H_t - L_t))``;
    between two frames its normalised value moves by at most ``rate / (H_t - L_t) <= step`` (affine in D, the largest
    at the ends of the range), so its parallax by at most ``S step``: a scene whose depth range changes (a dolly)
    no longer re-stretches every point's parallax frame by frame, and no frame leaves the range it is normalised over.
    """
    from .shots import shot_bounds

    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    low, high = lo.copy(), hi.copy()
    for a, b in shot_bounds(len(lo), cuts):
        rate = step * float(np.min(hi[a:b] - lo[a:b]).clip(min=0.0)) if np.isfinite(step) else np.inf
        if not np.isfinite(rate):
            continue
        for order in (range(a + 1, b), range(b - 2, a - 1, -1)):  # forward, then backward
            for t in order:
                k = t - 1 if order.step > 0 else t + 1
                low[t] = min(low[t], low[k] + rate)
                high[t] = max(high[t], high[k] - rate)
    return low, high


@dataclass
class FrameScan:
    """What ``scan_disparity`` reads from every frame's normalised disparity: ``edge (T, 2)`` (``edge_disparity``)
    and ``histogram (T, HISTOGRAM_BINS)`` (share of the pixels per bin of [0, 1])."""

    edge: np.ndarray
    histogram: np.ndarray

    @classmethod
    def join(cls, pieces: list[FrameScan]) -> FrameScan:
        """The scan of consecutive pieces of a clip (each frame's numbers are its own)."""
        if len(pieces) == 1:
            return pieces[0]
        return cls(np.concatenate([p.edge for p in pieces]), np.concatenate([p.histogram for p in pieces]))


def normalise(d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Raw disparity ``(n, H, W)`` normalised over per-frame ranges ``(n,)`` as ``camera.normalise_disparity`` does."""
    d = np.maximum(d, camera.DISPARITY_FLOOR)
    lo = np.maximum(np.asarray(lo, np.float64), camera.DISPARITY_FLOOR)[:, None, None]
    hi = np.maximum(np.asarray(hi, np.float64), camera.DISPARITY_FLOOR)[:, None, None]
    span = hi - lo
    return np.where(span > 0, np.clip((d - lo) / np.where(span > 0, span, 1), 0, 1), 0.0)


SCAN_THREADS = 4  # chunks scanned at once (numpy's arithmetic lets the others run): on a GPU run the whole clip's scan
# sits between the disparity and the fill's first chunk (5 s of 240 frames of 1080p on an H100, one thread)


def scan_disparity(
    read: Callable[[int, int], np.ndarray], num_frames: int, lo: np.ndarray, hi: np.ndarray, *, chunk: int = 16
) -> FrameScan:
    """Read a clip's raw disparity ``read(a, b) -> (n, h, w)`` chunk by chunk (memory bounded by ``chunk`` times the
    ``SCAN_THREADS`` chunks scanned at once, as many as the process's cores allow; each chunk's numbers are its own)."""
    from concurrent.futures import ThreadPoolExecutor

    from .threads import available_cpus

    edge = np.zeros((num_frames, 2))
    hist = np.zeros((num_frames, HISTOGRAM_BINS))

    def scan(a: int) -> None:
        b = min(a + chunk, num_frames)
        d = normalise(np.asarray(read(a, b), np.float64), lo[a:b], hi[a:b])
        edge[a:b] = edge_disparity(d)
        for i, frame in enumerate(d):
            counts, _ = np.histogram(frame, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
            hist[a + i] = counts / frame.size

    with ThreadPoolExecutor(max(1, min(SCAN_THREADS, available_cpus()))) as pool:
        list(pool.map(scan, range(0, num_frames, chunk)))  # (list: an error in any chunk is raised here)
    return FrameScan(edge, hist)


@dataclass
class EffectTrack:
    """The effect of every frame, and how it was chosen.

    strength, convergence ``(T,)``: per frame (``camera.effect_camera``'s terms); envelope: (S0, c0), the
    one camera of the views (every frame's effect lies inside it); budget: the limits; shots: (first, end)
    per shot; rho ``(T,)``: depth structure; edge ``(T, 2)``: nearest edge objects (left, right), normalised;
    violations ``(T,)`` bool: frames whose edge object stood in front of the screen before handling;
    windows ``(T, 2)`` int: floating-window bars in pixels (left edge of the left eye, right edge of the right
    eye); mode: how violations are to be handled (``WINDOW_CHOICES``); auto: strength per shot.
    """

    strength: np.ndarray
    convergence: np.ndarray
    envelope: tuple[float, float]
    budget: Budget
    shots: list[tuple[int, int]]
    rho: np.ndarray
    edge: np.ndarray
    violations: np.ndarray
    windows: np.ndarray
    mode: str
    auto: bool
    handling: list[str | None] = field(default_factory=list)  # per shot: how its violations were handled (None: none)

    @property
    def remapped(self) -> np.ndarray:
        """``(T,)`` bool: the frames whose effect differs from the envelope, which ``remap`` maps (the others are the
        envelope camera's as they are)."""
        s0, c0 = self.envelope
        return (self.strength != s0) | (self.convergence != c0)

    @property
    def changed(self) -> bool:
        """Whether any frame's effect differs from the envelope (otherwise the views need no remap)."""
        return bool(self.remapped.any())

    @classmethod
    def join(cls, pieces: list[EffectTrack]) -> EffectTrack:
        """The track of consecutive pieces of a clip (each its shots' own track, as ``effect_track`` of the frames
        from its first on makes it): every frame's numbers are its piece's, its shots shifted to the clip's frames."""
        first = pieces[0]
        if len(pieces) == 1:
            return first
        starts = np.cumsum([0, *(len(p.strength) for p in pieces[:-1])])
        joined = {f: np.concatenate([getattr(p, f) for p in pieces]) for f in ("strength", "convergence", "rho", "edge", "violations", "windows")}
        shots = [(a + s, b + s) for p, s in zip(pieces, starts, strict=True) for a, b in p.shots]
        handling = [h for p in pieces for h in p.handling]
        return cls(**joined, envelope=first.envelope, budget=first.budget, shots=shots, mode=first.mode, auto=first.auto, handling=handling)

    def unhandled(self, width: int) -> np.ndarray:
        """``(T,)`` bool: frames whose edge object still stands in front of the screen after the handling (crossed
        parallax over ``WINDOW_TOLERANCE`` on a side without a floating window at least that wide)."""
        crossed = np.maximum(0.0, self.strength[:, None] * (self.edge - self.convergence[:, None]))  # (T, 2) %
        return np.any((crossed > WINDOW_TOLERANCE) & (self.windows * 100 / width < crossed), axis=1)

    def parallax(self, d: np.ndarray | float, frames: slice | np.ndarray = slice(None)) -> np.ndarray:
        """Parallax (% of the width, + behind) of normalised disparity ``d`` at ``frames``: ``S (c - d)``."""
        return self.strength[frames] * (self.convergence[frames] - d)

    def remap(self, d, a: int, b: int):
        """Normalised disparity ``(n, H, W)`` of frames ``a .. b-1`` (torch) -> the ``d'`` the envelope camera
        warps into each frame's own effect: ``d' = c0 + (S / S0) (d - c)`` (module docstring), in [0, 1]."""
        import torch

        s0, c0 = self.envelope
        gain = torch.as_tensor(self.strength[a:b] / s0, dtype=d.dtype, device=d.device)[:, None, None]
        conv = torch.as_tensor(self.convergence[a:b], dtype=d.dtype, device=d.device)[:, None, None]
        # inside the envelope by construction: the clamp only meets rounding
        return (c0 + gain * (d - conv)).clamp(0, 1)


def effect_track(
    lo: np.ndarray,
    hi: np.ndarray,
    edge: np.ndarray,
    cuts: list[int],
    *,
    width: int,
    budget: Budget,
    strength: float | None,
    convergence: float | None,
    auto: bool,
    windows: str = "screen",
) -> EffectTrack:
    """The effect of every frame of a clip (module docstring, 2-3).

    lo, hi ``(T,)``: the per-frame normalisation range of raw disparity (``shots.depth_ranges``); edge ``(T, 2)``:
    ``scan_disparity``'s; cuts: first frames of the shots after the first; width: pixels (for the bars).
    ``auto``: the strength per shot from the budget and the shot's depth structure; else ``strength`` (%) for
    every frame (``None``: the budget's). ``convergence``: the screen plane in the range (``effect_envelope``).
    ``windows``: ``WINDOW_CHOICES``.
    """
    from .shots import shot_bounds

    if windows not in WINDOW_CHOICES:
        raise ValueError(f"windows must be one of {', '.join(WINDOW_CHOICES)}, got {windows!r}")
    n = len(lo)
    s0, c0 = envelope = effect_envelope(budget, strength=strength, convergence=convergence, auto=auto)
    base_c = c0
    far_limit, near_limit = s0 * c0, s0 * (1 - c0)
    rho = depth_structure(lo, hi)
    bounds = shot_bounds(n, cuts)
    s_t, c_t = np.empty(n), np.empty(n)
    violations = np.zeros(n, bool)
    bars = np.zeros((n, 2), np.int64)
    handling: list[str | None] = []
    for a, b in bounds:
        c = base_c
        s = _fit(budget, c, max(RHO_MIN, float(np.median(rho[a:b]))) * budget.strength)[0] if auto else s0
        # crossed parallax of the nearest edge object per frame: s (c - d_edge) < -tolerance is a violation
        nearest = edge[a:b].max(1)
        violations[a:b] = s * (c - nearest) < -WINDOW_TOLERANCE
        how = windows if violations[a:b].any() else None
        if how == "screen":
            moved = max(c, float(nearest.max()))  # the screen plane at the nearest edge object of the shot
            kept = min(s, far_limit / moved)  # ... and the far side kept within the envelope
            if kept >= MIN_KEPT * s:
                s, c = kept, moved
            else:  # no room behind the screen (a convergence near 0): the effect would flatten, so a window floats instead
                how = "float"
        if how == "float":
            crossed = np.maximum(0.0, s * (edge[a:b] - c)).max(0)  # (2,) % per side, over the shot
            bars[a:b] = np.where(crossed > WINDOW_TOLERANCE, np.ceil(crossed / 100 * width) + 1, 0).astype(np.int64)
        handling.append(how)
        s_t[a:b], c_t[a:b] = s, c
    assert np.all(s_t * c_t <= far_limit + 1e-9) and np.all(s_t * (1 - c_t) <= near_limit + 1e-9)  # inside the envelope
    return EffectTrack(
        s_t, c_t, envelope, budget, bounds, rho, np.asarray(edge, np.float64), violations, bars, windows, auto, handling
    )


def effect_envelope(
    budget: Budget, *, strength: float | None, convergence: float | None, auto: bool
) -> tuple[float, float]:
    """(S0, c0): the one camera of the views. A fixed ``strength``: itself, at ``convergence`` (default
    ``camera.DEFAULT_CONVERGENCE``, as ``camera.plan_views``). ``auto``, or no strength: the largest effect the
    budget takes at ``convergence`` (default: the budget's split, which fills both sides)."""
    if strength is not None and not auto:
        return float(strength), camera.DEFAULT_CONVERGENCE if convergence is None else float(convergence)
    return _fit(budget, budget.convergence if convergence is None else float(convergence), budget.strength)


def _fit(budget: Budget, convergence: float, strength: float) -> tuple[float, float]:
    """The largest strength up to ``strength`` whose two sides at ``convergence`` fit the budget."""
    caps = [strength]
    if convergence > 0:
        caps.append(budget.far / convergence)
    if convergence < 1:
        caps.append(budget.near / (1 - convergence))
    return min(caps), convergence


def float_window(left: np.ndarray, right: np.ndarray, bars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Black floating-window bars on the eyes ``uint8 (n, H, W, 3)``: ``bars (n, 2)`` pixels at the left edge of
    the left eye and the right edge of the right eye (the window's edges then have crossed parallax ``-bar``
    and float in front of the screen). Returns new arrays."""
    left, right = left.copy(), right.copy()
    w = left.shape[2]
    for i, (bl, br) in enumerate(np.asarray(bars)):
        left[i, :, : min(int(bl), w)] = 0
        right[i, :, w - min(int(br), w) :] = 0
    return left, right


# --------------------------------------------------------------------------------------------------
# the physical camera


def physical_scale(plan: camera.ViewPlan, width: int) -> float:
    """% of the width of parallax per 1/m of inverse depth for the physical camera of ``plan`` (``camera``: the far
    eye sees a point of inverse depth q ``focal * baseline * (q - screen)`` px to the left)."""
    return 100 * plan.focal * plan.max_baseline / width


def physical_parallax(q_near: np.ndarray, q_far: np.ndarray, *, scale: float, screen: float) -> tuple[np.ndarray, np.ndarray]:
    """(near, far) parallax ``(T,)`` in % of the width of points at inverse depths ``q_near``, ``q_far`` (1/m) for a
    physical camera of ``scale`` (``physical_scale``) and screen plane at inverse depth ``screen``: ``-scale (q - screen)``."""
    return -scale * (np.asarray(q_near) - screen), -scale * (np.asarray(q_far) - screen)


def outside_budget(near: np.ndarray, far: np.ndarray, budget: Budget) -> tuple[float, float] | None:
    """(most crossed, most uncrossed) parallax of a clip when either leaves the budget, else None."""
    lo, hi = float(np.min(near)), float(np.max(far))
    return (lo, hi) if lo < -budget.near - 1e-9 or hi > budget.far + 1e-9 else None


# --------------------------------------------------------------------------------------------------
# what convert calls


def is_effect(config) -> bool:
    """Whether a ``config.MatrixConfig`` sets the effect by strength (fixed or auto), not the physical camera."""
    return config.strength is not None or config.auto_strength


def plan_config(config):
    """The ``MatrixConfig`` to plan the views with (``camera.plan_views``): with the effect by strength, its
    envelope (``effect_envelope``) as a fixed strength and convergence; else the config itself."""
    from dataclasses import replace

    if not is_effect(config):
        return config
    s0, c0 = effect_envelope(
        screen_budget(config.screen),
        strength=config.strength,
        convergence=config.convergence,
        auto=config.auto_strength,
    )
    return replace(config, strength=s0, convergence=c0, auto_strength=False)


def effect_of(config, lo: np.ndarray, hi: np.ndarray, cuts: list[int], scan: FrameScan, *, width: int) -> EffectTrack | None:
    """The ``EffectTrack`` of a clip, or of a piece of one made of whole shots, under a ``config.MatrixConfig`` (None
    for the physical camera); ``say_budget`` and ``say_violations`` tell the user about it."""
    if not is_effect(config):
        return None
    return effect_track(
        lo, hi, scan.edge, cuts, width=width, budget=screen_budget(config.screen), strength=config.strength,
        convergence=config.convergence, auto=config.auto_strength, windows=config.window_violations,
    )  # fmt: skip


def say_budget(config) -> None:
    """Warn when the effect by strength of a ``config.MatrixConfig`` (its envelope) leaves the screen's budget."""
    if not is_effect(config):
        return
    budget = screen_budget(config.screen)
    s0, c0 = effect_envelope(budget, strength=config.strength, convergence=config.convergence, auto=config.auto_strength)
    if not budget.contains(s0, c0):
        log.warning(
            "the effect puts the nearest point at %+.2f %% and the farthest at %+.2f %% of the width, outside the budget of "
            "--screen %s (%+.2f .. %+.2f %%): lower --strength, move --convergence, or use --strength auto",
            -s0 * (1 - c0), s0 * c0, budget.screen, -budget.near, budget.far,
        )  # fmt: skip


def say_violations(track: EffectTrack | None) -> None:
    """One line on the window violations of a clip's track and how each shot's were handled (none: nothing)."""
    if track is None or not track.violations.any():
        return
    said = {"screen": "the screen plane moved in front of it", "float": "a floating window", "off": "left as they are (--window-violations off)"}
    log.info(
        "window violations (an object cut by the frame edge in front of the screen) in %d frames: %s",
        int(track.violations.sum()), "; ".join(f"frames {a}-{b - 1}: {said[h]}" for (a, b), h in zip(track.shots, track.handling, strict=True) if h),
    )  # fmt: skip


def effect_ranges(config, lo: np.ndarray, hi: np.ndarray, cuts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The ranges a ``config.MatrixConfig``'s effect normalises each frame's disparity over: for the effect by strength,
    ``steady_ranges`` at the step that keeps the envelope's parallax change per frame at ``RATE_SHARE`` of what a
    viewer of ``config.screen`` sees (``visible_change``); the physical camera: ``lo, hi`` themselves."""
    if not is_effect(config):
        return np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    return steady_ranges(lo, hi, cuts, RATE_SHARE * visible_change(config.screen) / plan_config(config).strength)


def check_physical(
    config, plan: camera.ViewPlan, lo: np.ndarray, hi: np.ndarray, *, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (near, far) parallax ``(T,)`` in % of the width of the physical camera, with a warning naming the
    flags when it leaves the budget of ``config.screen``."""
    if config.metric_depth:
        q_near, q_far = np.asarray(hi, np.float64), np.asarray(lo, np.float64)
    else:
        q_far0, q_near0 = camera.inverse_depth_range(
            nearest_depth=config.nearest_depth, farest_depth=config.farest_depth
        )
        q_near, q_far = np.full(len(lo), q_near0), np.full(len(lo), q_far0)
    near, far = physical_parallax(q_near, q_far, scale=physical_scale(plan, width), screen=plan.screen)
    budget = screen_budget(config.screen)
    out = outside_budget(near, far, budget)
    if out is not None:
        log.warning(physical_warning(*out, budget), extra={"outside_budget": (*out, budget)})
    return near, far


def physical_warning(most_crossed: float, most_uncrossed: float, budget: Budget) -> str:
    """The one-line warning of a physical camera whose parallax (``outside_budget``) leaves ``budget``, with the flags
    that fix it."""
    return (
        f"the physical camera puts the scene at {most_crossed:+.2f} .. {most_uncrossed:+.2f} % of the width (+: behind the "
        f"screen), outside the budget of --screen {budget.screen} ({-budget.near:+.2f} .. {budget.far:+.2f} %): lower --baseline or "
        "--focal, set --convergence to put the screen plane inside the scene, or give --strength auto instead of the physical camera"
    )


@contextmanager
def one_budget_warning() -> Iterator[None]:
    """Within it, the physical camera's budget warnings (``check_physical``) of every conversion are held back, and
    one is logged at the end for all of them, over the widest parallax they saw (per screen): a run of several
    conversions of one camera (the demo) says it once."""
    held: list[tuple[float, float, Budget]] = []

    def hold(record: logging.LogRecord) -> bool:
        out = getattr(record, "outside_budget", None)
        if out is None:
            return True
        held.append(out)
        return False

    log.addFilter(hold)
    try:
        yield
    finally:
        log.removeFilter(hold)
        for screen in dict.fromkeys(b.screen for *_, b in held):
            mine = [(lo, hi) for lo, hi, b in held if b.screen == screen]
            budget = next(b for *_, b in held if b.screen == screen)
            log.warning(physical_warning(min(lo for lo, _ in mine), max(hi for _, hi in mine), budget))
