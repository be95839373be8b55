"""Camera model, view layouts and depth normalisation — and the project's geometric conventions.

Conventions (every other module refers here):

- Pixels. ``(u, v)`` = (column, row). Integer coordinates are pixel *centres*: ``u = 0`` is the centre
  of the leftmost column. Resampling with ``grid_sample`` therefore uses ``align_corners=True`` with
  ``x_norm = 2 u / (W - 1) - 1``.
- Camera. Pinhole, ``fx = fy = focal``, principal point ``(W / 2, H / 2)`` as in the reference
  (``create_frame_matrix.py``). The principal point cancels in a horizontal shift, so it only matters
  for code that unprojects points (the scene renderer).
- Baselines are in metres along +x (the camera's right). A view at baseline ``b`` is the source
  camera translated by ``b``: a point at depth ``Z`` seen at column ``u`` appears at
  ``u' = u - fx * b / Z`` (content moves left when the camera moves right), ``v' = v``.
- Depth ``Z`` is metric depth along the optical axis (metres, larger = farther). *Disparity* ``D``
  is relative inverse depth as monocular networks predict it (larger = nearer, no unit).
- Screen plane. The views are parallel cameras whose images are shifted so that points at inverse depth
  ``screen`` (1/m; 0 = infinity, the paper's rig) land at the same column in every view:
  ``u' = u - fx * b * (1 / Z - screen)``. Nearer points then have crossed disparity (in front of the
  screen), farther ones uncrossed (behind it). ``effect_camera`` derives the baseline and the screen
  from a strength in % of the width and a convergence, as 2D-to-3D converters state the effect.
- Views are indexed ``0 .. V-1`` in baseline order of the layout (see ``view_baselines``). View 0 is
  the input video for ``left2right`` and ``right2left``; the middle view for ``middle2leftright``.
- Frame-matrix layout: pixels ``(V, T, C, H, W)`` in [0, 1], masks ``(V, T, 1, H, W)`` bool
  with True = known.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used, so that the configs (``svg3d.config``) stay light
    import torch

REFERENCE_WIDTH = 576  # zeroscope_v2_576w's native size is 576x320 ...
REFERENCE_FOCAL = 800.0  # ... where the paper uses fx = fy = 800 (SVG README, "Camera settings")
DEFAULT_BASELINE = 0.07  # metres; the paper's 7 cm (SVG README); the reference script's default is 0.08
DEFAULT_FAREST_DEPTH = 10.0  # metres; relative depth is normalised into ~[1, 10] m (SVG README, "Depth range")
DISPARITY_FLOOR = 1e-6  # the reference clamps loaded disparity to > 0 before normalising
DEPTH_EPS = 1e-6  # Z = 1 / (d + eps), as the reference
# The 3D effect as users of 2D-to-3D converters state it (iw3's --divergence / --convergence convention):
DEFAULT_STRENGTH = 2.5  # % of the width between the eyes' views of the nearest and the farthest point (iw3: 2.0)
DEFAULT_CONVERGENCE = 0.5  # the screen plane halfway through the depth range: background behind, foreground in front


class Layout(str, enum.Enum):
    """Where the input camera sits on the baseline (the reference's three flags)."""

    LEFT2RIGHT = "left2right"  # input = left eye (view 0), views move right to the right eye
    RIGHT2LEFT = "right2left"  # input = right eye (view 0), views move left to the left eye
    MIDDLE2LEFTRIGHT = "middle2leftright"  # input in the middle, eyes at -B/2 and +B/2


def default_focal(width: int) -> float:
    """The paper's focal (800 px at 576 px wide), scaled with the image width."""
    return REFERENCE_FOCAL * width / REFERENCE_WIDTH


def view_baselines(num_views: int, max_baseline: float, layout: Layout | str) -> np.ndarray:
    """Baseline (metres, float64) of each view ``(V,)`` for a layout.

    ``left2right``: ``j * B / (V - 1)``. ``right2left``: ``-j * B / (V - 1)``. ``middle2leftright``:
    ``linspace(-B/2, B/2, V)`` with view ``V // 2`` set to 0 — exactly the reference's layout, so its
    frame matrices stay interchangeable with ours (for even ``V`` this makes the spacing around the
    input view uneven; use an odd ``V`` for uniform spacing).
    """
    layout = Layout(layout)
    if num_views < 2:
        raise ValueError(f"num_views must be >= 2 (the two eyes), got {num_views}")
    if layout is Layout.LEFT2RIGHT:
        return np.linspace(0.0, max_baseline, num_views)
    if layout is Layout.RIGHT2LEFT:
        return np.linspace(0.0, -max_baseline, num_views)
    b = np.linspace(-0.5 * max_baseline, 0.5 * max_baseline, num_views)
    b[num_views // 2] = 0.0
    return b


def reference_view(num_views: int, layout: Layout | str) -> int:
    """Index of the view that is the input video itself."""
    return num_views // 2 if Layout(layout) is Layout.MIDDLE2LEFTRIGHT else 0


def eye_views(num_views: int, layout: Layout | str) -> tuple[int, int]:
    """(left eye, right eye) view indices."""
    layout = Layout(layout)
    if layout is Layout.RIGHT2LEFT:
        return num_views - 1, 0
    return 0, num_views - 1


def normalise_disparity(disparity: torch.Tensor, lo: torch.Tensor | float | None = None, hi: torch.Tensor | float | None = None) -> torch.Tensor:
    """Disparity ``(..., H, W)`` mapped to [0, 1] (0 = farthest, 1 = nearest) between ``lo`` and ``hi``.

    ``lo``/``hi`` None: the min and max of the WHOLE tensor (the reference normalises over the clip, so
    depth does not pump between frames). Otherwise scalars or per-frame ``(...)`` tensors (one range per
    frame, e.g. per shot: ``svg3d.shots``), broadcast over H, W; values outside are clamped. A range
    with ``hi <= lo`` (constant disparity) gives 0: the far plane.
    """
    import torch

    d = disparity.clamp_min(DISPARITY_FLOOR)
    if lo is None or hi is None:
        lo, hi = d.min(), d.max()
    lo = torch.as_tensor(lo, dtype=d.dtype, device=d.device).clamp_min(DISPARITY_FLOOR)
    hi = torch.as_tensor(hi, dtype=d.dtype, device=d.device).clamp_min(DISPARITY_FLOOR)
    if lo.ndim:
        lo, hi = lo[..., None, None], hi[..., None, None]
    span = hi - lo
    return torch.where(span > 0, (d - lo) / torch.where(span > 0, span, 1), 0.0).clamp(0, 1)


def disparity_to_depth(
    disparity: torch.Tensor,
    *,
    nearest_depth: float = -1.0,
    farest_depth: float = DEFAULT_FAREST_DEPTH,
    metric: bool = False,
    lo: torch.Tensor | float | None = None,
    hi: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Metric depth ``Z`` from relative disparity ``(..., H, W)``.

    As the reference (DESIGN.md §2): ``d = normalise_disparity(D, lo, hi)`` (over the WHOLE tensor when
    ``lo``/``hi`` are None); ``d /= nearest_depth`` if it is > 0; ``d += 1 / farest_depth`` if it is > 0;
    ``Z = 1 / (d + 1e-6)``. Defaults give Z in [0.91, 10] m. ``metric=True``: the input is already
    inverse metric depth (1/m) and only the last step applies.
    """
    if metric:
        return 1.0 / (disparity.clamp_min(DISPARITY_FLOOR) + DEPTH_EPS)
    d = normalise_disparity(disparity, lo, hi)
    if nearest_depth > 0:
        d = d / nearest_depth
    if farest_depth > 0:
        d = d + 1.0 / farest_depth
    return 1.0 / (d + DEPTH_EPS)


def inverse_depth_range(*, nearest_depth: float = -1.0, farest_depth: float = DEFAULT_FAREST_DEPTH) -> tuple[float, float]:
    """(q_far, q_near): the inverse depths (1/m) ``disparity_to_depth`` maps normalised 0 and 1 to (eps aside)."""
    q_far = 1.0 / farest_depth if farest_depth > 0 else 0.0
    q_near = q_far + (1.0 / nearest_depth if nearest_depth > 0 else 1.0)
    return q_far, q_near


def effect_camera(
    strength: float,
    convergence: float,
    width: int,
    focal: float,
    *,
    nearest_depth: float = -1.0,
    farest_depth: float = DEFAULT_FAREST_DEPTH,
) -> tuple[float, float]:
    """(baseline in metres, screen inverse depth in 1/m) giving a 3D effect of ``strength`` % of ``width``.

    With depth normalised as ``disparity_to_depth`` does (d in [0, 1], 1 = nearest), the view at this
    baseline sees a point of normalised disparity d shifted by ``strength / 100 * width * (d - convergence)``
    pixels against the input (positive = crossed, in front of the screen): the nearest and the farthest
    point are ``strength`` % of the width apart, and the screen plane sits at ``d = convergence``
    (0: at the farthest point, everything in front; 1: at the nearest, everything behind). This is
    iw3's ``--divergence`` / ``--convergence`` convention for the disparity between the two eyes.
    """
    if not strength > 0:
        raise ValueError(f"strength must be > 0, got {strength}")
    q_far, q_near = inverse_depth_range(nearest_depth=nearest_depth, farest_depth=farest_depth)
    baseline = strength / 100.0 * width / (focal * (q_near - q_far))
    return baseline, q_far + convergence * (q_near - q_far)


# --------------------------------------------------------------------------------------------------
# the view plan: decided once per clip


PAPER_VIEWS = 8  # the paper's frame matrix (SVG README: 8 views), what diffusion denoises along


@dataclass(frozen=True)
class ViewPlan:
    """Which views a conversion makes, where they are, and which of them are filled and exported.

    baselines: metres per view (``view_baselines``, or derived from a strength); focal: pixels; screen:
    inverse depth (1/m) of the screen plane (0: infinity); reference: the input's view; eyes: (left,
    right); fill_views: the views whose holes are filled; multiview: every view is an output (grids,
    quilts), not only the eyes.
    """

    num_views: int
    layout: Layout
    baselines: tuple[float, ...]
    focal: float
    screen: float
    fill_views: tuple[int, ...]
    multiview: bool

    @property
    def reference(self) -> int:
        return reference_view(self.num_views, self.layout)

    @property
    def eyes(self) -> tuple[int, int]:
        return eye_views(self.num_views, self.layout)

    @property
    def max_baseline(self) -> float:
        return float(max(abs(b) for b in self.baselines) * (2 if self.layout is Layout.MIDDLE2LEFTRIGHT else 1))


def plan_views(
    config,
    width: int,
    *,
    filler_views: int | None = None,
    all_views: bool = False,
) -> ViewPlan:
    """The view plan of a clip ``width`` pixels wide under a ``config.MatrixConfig``.

    Views: ``config.num_views`` when given; else ``filler_views`` (the filler's own need: diffusion
    denoises along the paper's 8 views) or ``PAPER_VIEWS`` when every view is an output (``all_views``);
    else just the eyes (3 with the input between them for ``middle2leftright``). The baseline and the
    screen come from ``config.strength``/``convergence`` (``effect_camera``) or the physical camera.
    """
    layout = Layout(config.layout)
    if config.num_views is not None:
        num_views = config.num_views
    elif filler_views is not None:
        num_views = filler_views
    elif all_views:
        num_views = PAPER_VIEWS
    else:
        num_views = 3 if layout is Layout.MIDDLE2LEFTRIGHT else 2
    focal = float(config.focal) if config.focal is not None else default_focal(width)
    if config.strength is not None:
        convergence = DEFAULT_CONVERGENCE if config.convergence is None else config.convergence
        max_baseline, screen = effect_camera(
            config.strength, convergence, width, focal, nearest_depth=config.nearest_depth, farest_depth=config.farest_depth
        )
    else:
        max_baseline = config.max_baseline
        q_far, q_near = inverse_depth_range(nearest_depth=config.nearest_depth, farest_depth=config.farest_depth)
        screen = 0.0 if config.convergence is None else q_far + config.convergence * (q_near - q_far)
    baselines = tuple(float(b) for b in view_baselines(num_views, max_baseline, layout))
    ref = reference_view(num_views, layout)
    fill = tuple(range(num_views)) if all_views else tuple(sorted(set(eye_views(num_views, layout)) - {ref}))
    return ViewPlan(num_views, layout, baselines, focal, screen, tuple(v for v in fill if v != ref), all_views)
