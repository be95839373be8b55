"""Sampling at points and the pull-push pyramid (Gortler et al. 1996), pure torch on any device.

``bilinear_taps``/``sample_bilinear``: bilinear samples at arbitrary points, elementwise (a point's value
never depends on the others, so results do not depend on how points are batched). ``pull_push``: fill
zero-weight pixels by a pyramid of weighted averages; ``pull_push_holes`` evaluates it at hole pixels only.
Pixel centres at integers (``camera``'s convention), ``align_corners=False`` resampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import check_same, check_shape


def bilinear_taps(h: int, w: int, x: torch.Tensor, y: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Flat indices and weights of the 4 bilinear taps of points ``x, y (N,)`` (pixel centres, clamped inside)."""
    x = x.nan_to_num(0.0).clamp(0, w - 1)  # a point that left to infinity samples a border pixel (and counts as outside)
    y = y.nan_to_num(0.0).clamp(0, h - 1)
    x0 = x.floor().clamp(max=max(w - 2, 0))
    y0 = y.floor().clamp(max=max(h - 2, 0))
    fx, fy = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    index = [y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1]
    weight = [(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]
    return index, weight


def sample_bilinear(img: torch.Tensor, x: torch.Tensor, y: torch.Tensor, which: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear samples ``(C, N)`` of ``img (C, H, W)`` at ``x, y (N,)`` (``camera``'s pixel centres; clamped inside).

    With ``which`` (long ``(N,)``), ``img`` is a stack ``(C, B, H, W)`` and point i samples image ``which[i]``.
    """
    c, h, w = img.shape[0], img.shape[-2], img.shape[-1]
    index, weight = bilinear_taps(h, w, x, y)
    if which is not None:
        index = [i + which * (h * w) for i in index]
    flat = img.reshape(c, -1)
    out = flat.index_select(1, index[0]) * weight[0]
    for i, wt in zip(index[1:], weight[1:], strict=True):
        out = out + flat.index_select(1, i) * wt
    return out


def pull_push(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Fill zero-weight pixels by pull-push (Gortler et al. 1996): a pyramid of weighted averages.

    values: float ``(N, C, H, W)``; weights: float ``(N, 1, H, W)`` in [0, 1]. Pull: halve the
    resolution, averaging weight-premultiplied values, down to one pixel on the short side (always
    the whole pyramid, so an image's result does not depend on the others in the batch). Push: from
    coarse to fine, each level's pixel is its own average blended with the bilinear upsampling of
    the coarser level by its coverage. Pixels of weight 1 are returned unchanged; an image with no
    weight at all comes back as zeros.
    """
    check_same([check_shape(values, "N C H W", "values"), check_shape(weights, "N 1 H W", "weights")], "N H W", ["values", "weights"])
    levels = [(values * weights, weights)]
    while min(levels[-1][1].shape[-2:]) > 1:
        p, w = levels[-1]
        levels.append((F.avg_pool2d(p, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)))
    p, w = levels[-1]
    colour = p / w.clamp_min(1e-12)
    for p, w in reversed(levels[:-1]):
        up = F.interpolate(colour, size=p.shape[-2:], mode="bilinear", align_corners=False)
        alpha = w.clamp(0, 1)
        colour = p / w.clamp_min(1e-12) * alpha + up * (1 - alpha)
    return torch.where(weights >= 1, values, colour)


def pull_push_holes(values: torch.Tensor, weights: torch.Tensor, todo: torch.Tensor) -> torch.Tensor:
    """``pull_push`` evaluated only at the pixels of ``todo``, which must have weight 0: their colours ``(C, M)``.

    values ``(C, H, W)``; weights ``(H, W)`` in [0, 1]; todo bool ``(H, W)``. A pixel of weight 0 takes
    the bilinear upsampling of the next coarser level, so the full-resolution level is never built:
    the pyramid starts at half resolution (a third of the work), and M samples finish it.
    """
    c, h, w = values.shape
    level = F.avg_pool2d(torch.cat([values * weights, weights[None]])[None], 2, ceil_mode=True)  # (1, C + 1, H/2, W/2)
    levels = [level]
    while min(levels[-1].shape[-2:]) > 1:
        levels.append(F.avg_pool2d(levels[-1], 2, ceil_mode=True))
    top = levels[-1]
    colour = top[:, :c] / top[:, c:].clamp_min(1e-12)
    for lv in reversed(levels[:-1]):
        up = F.interpolate(colour, size=lv.shape[-2:], mode="bilinear", align_corners=False)
        alpha = lv[:, c:].clamp(0, 1)
        colour = lv[:, :c] / lv[:, c:].clamp_min(1e-12) * alpha + up * (1 - alpha)
    ys, xs = todo.nonzero(as_tuple=True)
    lh, lw = colour.shape[-2:]
    # interpolate(align_corners=False)'s source coordinates, clamped as it clamps them
    sx = ((xs.to(values.dtype) + 0.5) * (lw / w) - 0.5).clamp_min(0)
    sy = ((ys.to(values.dtype) + 0.5) * (lh / h) - 0.5).clamp_min(0)
    return sample_bilinear(colour[0], sx, sy)
