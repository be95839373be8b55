"""Generic image filters on ``(N, H, W)`` tensors: the box filter, the box sum and the guided filter.

Used by depth stabilisation (the guided filter of DESIGN.md §3) and by hole filling (the classical filler's box
sums). ``box_filter``'s borders reflect as OpenCV's BORDER_REFLECT, so results can be compared with OpenCV's own
filters; ``box_sum`` counts nothing outside the image (BORDER_CONSTANT 0).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .checks import check_same, check_shape


def _reflect_index(n: int, r: int, device: torch.device) -> torch.Tensor:
    """Indices ``(n + 2r,)`` of a length-``n`` axis padded by ``r`` with OpenCV's BORDER_REFLECT
    (``fedcba|abcdefgh|hgfedcb``), repeating the reflection when ``r > n``."""
    idx = torch.arange(-r, n + r, device=device) % (2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the ``(2r+1) x (2r+1)`` window of each pixel, borders reflected as OpenCV's BORDER_REFLECT.

    x: ``(N, H, W)``. Returns ``(N, H, W)`` in x's dtype. O(1) per pixel whatever the radius. On a CPU, float
    maps go through OpenCV's ``boxFilter`` (running sums in float64, ~10x faster than the cumsums below on a 2-core
    VM: a few passes over memory instead of ten); elsewhere separable cumsums, the same means to float rounding
    (tested). Use float64 for large images: the cumsums lose precision in float32.
    """
    check_shape(x, "N H W", "x")
    k = 2 * radius + 1
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        src = x.detach().contiguous().numpy()
        out = np.empty_like(src)
        for i in range(len(src)):  # each map on its own (OpenCV's filters take one image)
            cv2.boxFilter(src[i], -1, (k, k), dst=out[i], normalize=True, borderType=cv2.BORDER_REFLECT)
        return torch.from_numpy(out)
    return _box_filter_cumsum(x, radius)


def _box_filter_cumsum(x: torch.Tensor, radius: int) -> torch.Tensor:
    """``box_filter`` by separable cumsums, on any device: ``(N, H, W)`` -> ``(N, H, W)``."""
    k = 2 * radius + 1
    for dim in (1, 2):
        n = x.shape[dim]
        if radius <= n:  # the reflected borders as two flipped slices: a copy, not a gather (index_select) of every pixel
            padded = torch.cat([x.narrow(dim, 0, radius).flip(dim), x, x.narrow(dim, n - radius, radius).flip(dim)], dim)
        else:
            padded = x.index_select(dim, _reflect_index(n, radius, x.device))  # (.., n + 2r, ..)
        csum = F.pad(padded.cumsum(dim), (1, 0) if dim == 2 else (0, 0, 1, 0))  # a leading 0 along dim
        x = (csum.narrow(dim, k, n) - csum.narrow(dim, 0, n)) / k
    return x


def box_sum(x: torch.Tensor, radius_y: int, radius_x: int) -> torch.Tensor:
    """Sum over the ``(2 radius_y + 1) x (2 radius_x + 1)`` window of each pixel, zero outside the image.

    x: ``(..., H, W)``, each map on its own. Returns ``(..., H, W)`` in x's dtype. On a CPU, float maps go through
    OpenCV's ``boxFilter`` (running sums in float64: exact to the output's rounding, and 30-60x faster than the
    cumsums below on a 2-core VM, which pad and sum twice over memory per axis); elsewhere separable cumsums, in
    float64 for float32 maps: the same sums to float rounding (tested). float32 cumsums drift by ~1e-3 over a few
    thousand pixels of ones, and on CUDA their rounding depended on the batch's shape, so the classical filler's
    output depended on how its cells were batched (up to 25 code values in ~1 % of the pixels on an H100); in float64
    the sums round to the same float32 whatever the batch, but for ties one in millions.
    """
    h, w = x.shape[-2:]
    if radius_x == radius_y == 0:
        return x
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        src = x.detach().contiguous().numpy().reshape(-1, h, w)
        out = np.empty_like(src)
        for i in range(len(src)):  # each map on its own (OpenCV's filters take one image)
            cv2.boxFilter(src[i], -1, (2 * radius_x + 1, 2 * radius_y + 1), dst=out[i], normalize=False, borderType=cv2.BORDER_CONSTANT)
        return torch.from_numpy(out.reshape(x.shape))
    if x.dtype == torch.float32:  # running sums in float64 as OpenCV's: float32 ones round by the batch's shape on CUDA
        return _box_sum_cumsum(x.double(), radius_y, radius_x).to(x.dtype)
    return _box_sum_cumsum(x, radius_y, radius_x)


def _box_sum_cumsum(x: torch.Tensor, radius_y: int, radius_x: int) -> torch.Tensor:
    """``box_sum`` by separable cumsums, on any device: ``(..., H, W)`` -> ``(..., H, W)``."""
    h, w = x.shape[-2:]
    if radius_x:
        csum = F.pad(x, (radius_x + 1, radius_x)).cumsum(-1)  # (..., H, W + 2r + 1): a leading 0
        x = csum[..., 2 * radius_x + 1 :] - csum[..., :w]
    if radius_y:
        csum = F.pad(x, (0, 0, radius_y + 1, radius_y)).cumsum(-2)
        x = csum[..., 2 * radius_y + 1 :, :] - csum[..., :h, :]
    return x


def column_mean_growing(value: torch.Tensor, mask: torch.Tensor, radius: torch.Tensor, levels: int) -> torch.Tensor:
    """Each pixel's mean of ``value`` over the ``mask`` pixels of its column within ``radius`` rows of it, a radius of
    its own per pixel: masked box means at radii 1, 2, 4 .. 2^(levels - 1) (``box_sum``), interpolated on log2 of the
    radius (0: the value itself; up to 1: towards radius 1; beyond 2^(levels - 1): that level).

    value ``(..., C, H, W)``, mask bool ``(..., H, W)`` (a masked pixel counts itself), radius ``(..., H, W)`` px.
    Returns ``(..., C, H, W)``; outside ``mask`` the result means nothing (callers keep their own pixels there).
    On a CPU only the columns with a ``mask`` pixel in some map are computed (each column is its own: the same sums),
    the others keep ``value``: a fill's holes reach ~5 % of a 640x360 frame's columns (the bench's clip).
    """
    if value.device.type == "cpu":
        w = value.shape[-1]
        cols = mask.reshape(-1, w).any(0).nonzero()[:, 0]
        if len(cols) == 0:
            return value
        if len(cols) < w:
            inner = _column_mean_growing(value.index_select(-1, cols), mask.index_select(-1, cols), radius.index_select(-1, cols), levels)
            return value.index_copy(-1, cols, inner)
    return _column_mean_growing(value, mask, radius, levels)


def _column_mean_growing(value: torch.Tensor, mask: torch.Tensor, radius: torch.Tensor, levels: int) -> torch.Tensor:
    """``column_mean_growing`` over every column."""
    m = mask.to(value.dtype).unsqueeze(-3)
    stack = torch.stack([value] + [box_sum(value * m, 2**k, 0) / box_sum(m, 2**k, 0).clamp_min(1e-12) for k in range(levels)])
    pos = (torch.log2(radius.clamp_min(1)) + radius.clamp(0, 1)).clamp(0, levels)  # level k + 1 at radius 2^k
    lo = pos.floor().long().clamp(max=levels - 1)
    frac = (pos - lo).to(value.dtype).unsqueeze(-3)
    at = lo.unsqueeze(-3).expand(1, *value.shape)  # (1, ..., C, H, W)
    a, b = stack.gather(0, at)[0], stack.gather(0, at + 1)[0]
    return a + (b - a) * frac


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """Grey-guide guided filter (He et al. 2010), equal to ``cv2.ximgproc.guidedFilter(guide, src, radius, eps)``.

    guide, src: ``(N, H, W)``. Returns ``(N, H, W)`` in src's dtype. Never NaN/inf for finite inputs and
    ``eps > 0``: computed in float64 on inputs shifted by their means (the filter commutes with such
    shifts), and the local variance is clamped at 0 before ``+ eps`` — the reference's float32
    ``var = E[I^2] - E[I]^2`` can go negative on flat regions and divide by ~0.
    """
    sizes = [check_shape(guide, "N H W", "guide"), check_shape(src, "N H W", "src")]
    check_same(sizes, "N H W", ["guide", "src"])
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    i = guide.double()
    p = src.double()
    i = i - i.mean(dim=(1, 2), keepdim=True)
    p_mean = p.mean(dim=(1, 2), keepdim=True)
    p = p - p_mean
    n = i.shape[0]
    # the four means in one box filter over a stacked batch, then the two of step 2: every map is filtered on its own
    # (the sums run along H and W only), so the results are the separate calls', in a third of the calls
    mean_i, mean_p, mean_ii, mean_ip = box_filter(torch.cat([i, p, i * i, i * p]), radius).split(n)
    var_i = (mean_ii - mean_i * mean_i).clamp_min(0.0)
    cov_ip = mean_ip - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    mean_a, mean_b = box_filter(torch.cat([a, b]), radius).split(n)
    q = mean_a * i + mean_b + p_mean
    return q.to(src.dtype)
