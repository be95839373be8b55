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
- Views are indexed ``0 .. V-1`` in baseline order of the layout (see ``view_baselines``). View 0 is
  the input video for ``left2right`` and ``right2left``; the middle view for ``middle2leftright``.
- Frame-matrix layout: pixels ``(V, T, C, H, W)`` in [0, 1], masks ``(V, T, 1, H, W)`` bool
  with True = known.
"""

from __future__ import annotations

import enum

import numpy as np
import torch

REFERENCE_WIDTH = 576  # zeroscope_v2_576w's native size is 576x320 ...
REFERENCE_FOCAL = 800.0  # ... where the paper uses fx = fy = 800 (SVG README, "Camera settings")
DEFAULT_BASELINE = 0.07  # metres; the paper's 7 cm (SVG README); the reference script's default is 0.08
DEFAULT_FAREST_DEPTH = 10.0  # metres; relative depth is normalised into ~[1, 10] m (SVG README, "Depth range")
DISPARITY_FLOOR = 1e-6  # the reference clamps loaded disparity to > 0 before normalising
DEPTH_EPS = 1e-6  # Z = 1 / (d + eps), as the reference


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


def disparity_to_depth(
    disparity: torch.Tensor,
    *,
    nearest_depth: float = -1.0,
    farest_depth: float = DEFAULT_FAREST_DEPTH,
    metric: bool = False,
) -> torch.Tensor:
    """Metric depth ``Z`` from relative disparity ``(..., H, W)``, normalised over the WHOLE tensor.

    As the reference (DESIGN.md §2): ``D = max(D, 1e-6)``; ``d = (D - min) / (max - min)`` over the
    whole clip (not per frame, so depth does not pump between frames); ``d /= nearest_depth`` if it is
    > 0; ``d += 1 / farest_depth`` if it is > 0; ``Z = 1 / (d + 1e-6)``. Defaults give Z in [0.91, 10] m.
    ``metric=True``: the input is already inverse metric depth (1/m) and only the last step applies.
    A constant disparity (max == min) gives the far plane everywhere instead of dividing by zero.
    """
    d = disparity.clamp_min(DISPARITY_FLOOR)
    if not metric:
        lo, hi = d.min(), d.max()
        d = (d - lo) / (hi - lo) if hi > lo else torch.zeros_like(d)
        if nearest_depth > 0:
            d = d / nearest_depth
        if farest_depth > 0:
            d = d + 1.0 / farest_depth
    return 1.0 / (d + DEPTH_EPS)
