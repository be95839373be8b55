"""The out-of-view band's last step: a fill that fades, with the distance from the band's inner edge, into a
vertical average of the band (issue 23, bench/bench_fill_real.py).

The band (``classical.border_band``) is the strip at the frame edge that no camera saw: what lies there is
unknown on a still, whatever the filler (a door frame, the arm holding the camera). On the real captures the
structure-following fills measured for it (bench/results/fill_real_sweeps.txt 12.: a linear predictor fitted
on the picture itself, row continuation segmented at horizontal edges, exemplar continuation, and the
session before's direction along the structure tensor's isophote) all lost to Telea in the band: they paint
an edge or a texture where the truth has another one. What won is the opposite: the less a pixel can be
predicted (the farther from the edge), the more of an average it should be. ``fade_band`` therefore smooths
the band's fill (classical step 3 blended with Telea) over its rows with a radius of ``BAND_FADE`` px per px
of distance: the first pixels keep the edge's structure, the far ones become the band's local mean.
"""

from __future__ import annotations

import torch

from ...filters import column_mean_growing

BAND_FADE = 0.5  # px of vertical smoothing radius per px from the band's inner edge (0.35-1.0 measured: within 0.03 dB)
FADE_LEVELS = 6  # box radii 1, 2, 4, ... 32 px (a band at 576 px wide is up to ~90 px: radius ~45 at its far end)


def _check_side(side: int) -> None:
    if side not in (1, -1):
        raise ValueError(f"side must be +1 (right edge) or -1 (left edge), got {side}")


def band_distance(band: torch.Tensor, side: int) -> torch.Tensor:
    """Columns from the band's inner edge: 1 at the band's first pixel, 0 outside it.

    band: bool ``(..., H, W)``, each row's band a run at the ``side`` edge (+1 right, -1 left), as
    ``classical.border_band`` gives. Returns long ``(..., H, W)``.
    """
    _check_side(side)
    w = band.shape[-1]
    cols = torch.arange(w, device=band.device)
    count = band.sum(-1, keepdim=True)  # (..., H, 1): the band's width per row
    d = cols - (w - 1 - count) if side > 0 else count - cols
    return torch.where(band, d, 0)


def fade_band(image: torch.Tensor, band: torch.Tensor, side: int, *, fade: float | None = None, width: int | None = None) -> torch.Tensor:
    """Smooth the filled ``band`` of ``image`` over its rows, radius ``fade`` (default ``BAND_FADE``) px per px
    from its inner edge (0: unchanged).

    image: float ``(..., 3, H, W)`` with the band filled; band: bool ``(..., H, W)`` (``band_distance``).
    Each band pixel at distance d takes the mean of the band's pixels of its column within ``r = fade d``
    rows (``filters.column_mean_growing``, as ``classical.row_fill`` smooths); pixels outside the band
    are neither changed nor read. ``width``: the band's widest row, where the caller knows it (else read back from
    the GPU: a wait). Returns ``(..., 3, H, W)``.
    """
    _check_side(side)
    fade = BAND_FADE if fade is None else fade
    h, w = image.shape[-2:]
    lead = image.shape[:-3]
    # only the columns the band reaches are read and written
    if width is None:
        width = int(band.sum(-1).max()) if band.numel() else 0
    if width == 0 or fade == 0:
        return image
    cols = slice(w - width, w) if side > 0 else slice(0, width)
    flat = image.reshape(-1, 3, h, w)[..., cols]
    m = band.reshape(-1, h, w)[..., cols]
    spread = band_distance(band, side).reshape(-1, h, w)[..., cols].to(image.dtype) * fade
    out = torch.where(m.unsqueeze(1), column_mean_growing(flat, m, spread, FADE_LEVELS), flat)
    whole = image.reshape(-1, 3, h, w).clone()
    whole[..., cols] = out
    return whole.reshape(*lead, 3, h, w)
