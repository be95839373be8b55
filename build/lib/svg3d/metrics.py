"""Image metrics restricted to a region: PSNR, SSIM and the temporal flicker of filled pixels.

Used by the demo's report, bench/bench_fill.py and the hole-filling tests, where the interesting
numbers are those of the disoccluded pixels only (a whole-image score is dominated by the known
pixels, which are copies). Inputs are float ``(N, 3, H, W)`` in [0, 1] with a bool region
``(N, H, W)``; scores are on the 0-1 scale (PSNR in dB with peak 1), flicker on the 0-255 scale.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from .checks import check_same, check_shape

SSIM_SIGMA = 1.5  # Wang et al. 2004: an 11x11 Gaussian window of sigma 1.5 ...
SSIM_RADIUS = 5
SSIM_C1 = 0.01**2  # ... and constants (K1 L)^2, (K2 L)^2 with K1 = 0.01, K2 = 0.03, L = 1
SSIM_C2 = 0.03**2


def _check(a: torch.Tensor, b: torch.Tensor, region: torch.Tensor) -> None:
    sizes = [check_shape(a, "N 3 H W", "a"), check_shape(b, "N 3 H W", "b"), check_shape(region, "N H W", "region")]
    check_same(sizes, "N H W", ["a", "b", "region"])


def masked_psnr(a: torch.Tensor, b: torch.Tensor, region: torch.Tensor) -> float:
    """PSNR (dB, peak 1) of ``a`` against ``b`` over the pixels of ``region`` (all three channels).

    a, b: float ``(N, 3, H, W)`` in [0, 1]; region: bool ``(N, H, W)``. NaN for an empty region,
    inf for identical pixels.
    """
    _check(a, b, region)
    if not region.any():
        return math.nan
    err = ((a.double() - b.double()) ** 2).mean(1)[region].mean().item()  # mean over channels, then pixels
    return math.inf if err == 0 else -10.0 * math.log10(err)


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM ``(N, H, W)`` of ``(N, 3, H, W)`` images in [0, 1], averaged over channels.

    Gaussian window of sigma 1.5 (11 x 11), borders replicated, so every pixel has a value and a
    region's SSIM is the mean of the map over it. float32 (SSIM needs no more).
    """
    check_same([check_shape(a, "N 3 H W", "a"), check_shape(b, "N 3 H W", "b")], "N H W", ["a", "b"])
    n, c, h, w = a.shape
    k = 2 * SSIM_RADIUS + 1

    def blur(img: np.ndarray) -> np.ndarray:  # (P, H, W) planes; OpenCV's separable blur is ~50x torch's CPU conv here
        return np.stack([cv2.GaussianBlur(p, (k, k), SSIM_SIGMA, borderType=cv2.BORDER_REPLICATE) for p in img])

    x = a.detach().float().reshape(n * c, h, w).cpu().numpy()  # channels become planes
    y = b.detach().float().reshape(n * c, h, w).cpu().numpy()
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2))
    return torch.from_numpy(s).reshape(n, c, h, w).mean(1)


def masked_ssim(a: torch.Tensor, b: torch.Tensor, region: torch.Tensor, *, ssim: torch.Tensor | None = None) -> float:
    """Mean SSIM over the pixels of ``region``; NaN for an empty region.

    ``ssim``: ``ssim_map(a, b)`` when already computed (scoring several regions of one pair).
    """
    _check(a, b, region)
    if not region.any():
        return math.nan
    ssim = ssim_map(a, b) if ssim is None else ssim
    return ssim[region].double().mean().item()


def flicker(frames: torch.Tensor, region: torch.Tensor) -> float:
    """Temporal flicker of a region: mean absolute change (0-255 scale) between consecutive frames.

    frames: float ``(T, 3, H, W)`` in [0, 1]; region: bool ``(T, H, W)``. Counts the pixels in the
    region in both frames of a pair. NaN when no pixel is. Compare with the same measure on the
    true video over the same region: a moving scene changes too, so only the excess is flicker.
    """
    check_same([check_shape(frames, "T 3 H W", "frames"), check_shape(region, "T H W", "region")], "T H W", ["frames", "region"])
    both = region[1:] & region[:-1]  # (T-1, H, W)
    if not both.any():
        return math.nan
    change = (frames[1:].double() - frames[:-1].double()).abs().mean(1)  # (T-1, H, W), mean over channels
    return 255.0 * change[both].mean().item()


def flicker_ratio(frames: torch.Tensor, truth: torch.Tensor, region: torch.Tensor) -> float:
    """``flicker`` of ``frames`` over ``region`` divided by the true video's over the same pixels.

    frames, truth: float ``(T, 3, H, W)`` in [0, 1]; region: bool ``(T, H, W)``. 1 means the filled
    pixels change from frame to frame exactly as much as the truth does there (a moving camera moves
    the background too); above 1 is flicker. NaN when the region has no pair of frames, inf when
    the truth does not change there but the frames do.
    """
    check_same([check_shape(truth, "T 3 H W", "truth"), check_shape(frames, "T 3 H W", "frames")], "T H W", ["truth", "frames"])
    ours, true = flicker(frames, region), flicker(truth, region)
    if math.isnan(ours) or math.isnan(true):
        return math.nan
    if true == 0:
        return math.inf if ours > 0 else 1.0
    return ours / true


def region_scores(generated: torch.Tensor, truth: torch.Tensor, region: torch.Tensor) -> dict[str, float]:
    """PSNR, SSIM, flicker and flicker ratio of a video ``(T, 3, H, W)`` against the truth over ``region (T, H, W)``."""
    _check(generated, truth, region)
    return {
        "psnr": masked_psnr(generated, truth, region),
        "ssim": masked_ssim(generated, truth, region),
        "flicker": flicker(generated, region),
        "flicker_ratio": flicker_ratio(generated, truth, region),
    }
