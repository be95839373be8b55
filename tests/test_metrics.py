"""Region metrics: PSNR, SSIM and flicker on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from svg3d import metrics


def test_region_metrics():
    a = torch.zeros(2, 3, 8, 8)
    b = a.clone()
    b[:, :, :4] = 0.1  # error 0.1 in the top half only
    top = torch.zeros(2, 8, 8, dtype=torch.bool)
    top[:, :4] = True
    assert metrics.masked_psnr(a, b, top) == pytest.approx(20.0)
    assert metrics.masked_psnr(a, b, ~top) == math.inf
    assert math.isnan(metrics.masked_psnr(a, b, torch.zeros_like(top)))
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert metrics.masked_ssim(img, img, torch.ones(1, 16, 16, dtype=torch.bool)) == pytest.approx(1.0, abs=1e-5)
    assert metrics.masked_ssim(img, img.flip(-1), torch.ones(1, 16, 16, dtype=torch.bool)) < 0.5
    video = torch.zeros(3, 3, 4, 4)
    video[1] = 2 / 255  # 0 -> 2 -> 0 on the 0-255 scale
    assert metrics.flicker(video, torch.ones(3, 4, 4, dtype=torch.bool)) == pytest.approx(2.0)


def test_ssim_matches_a_hand_computed_constant_case():
    """Two constant images mu_x = 0.2, mu_y = 0.6 (no variance): SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)."""
    a = torch.full((1, 3, 20, 20), 0.2)
    b = torch.full((1, 3, 20, 20), 0.6)
    want = (2 * 0.2 * 0.6 + metrics.SSIM_C1) / (0.2**2 + 0.6**2 + metrics.SSIM_C1)
    # float32 blur of constants: the means are exact to ~1e-7, the variances ~1e-8 against C2 = 9e-4
    assert metrics.masked_ssim(a, b, torch.ones(1, 20, 20, dtype=torch.bool)) == pytest.approx(want, abs=1e-4)


def test_flicker_ratio_compares_with_the_truth_over_the_same_pixels():
    truth = torch.zeros(4, 3, 2, 2)
    truth[1::2] = 4 / 255  # the true video changes by 4 every frame
    ours = torch.zeros(4, 3, 2, 2)
    ours[1::2] = 2 / 255  # ours by 2: half as much
    region = torch.ones(4, 2, 2, dtype=torch.bool)
    assert metrics.flicker_ratio(ours, truth, region) == pytest.approx(0.5)
    still = torch.zeros(4, 3, 2, 2)
    assert metrics.flicker_ratio(still, still, region) == 1.0  # nothing changes in either
    assert metrics.flicker_ratio(ours, still, region) == math.inf  # ours changes where the truth does not
    region[1:] = False
    region[0] = True
    assert math.isnan(metrics.flicker_ratio(ours, truth, region))  # no pixel in two consecutive frames
    scores = metrics.region_scores(ours, truth, torch.ones(4, 2, 2, dtype=torch.bool))
    assert scores["flicker"] == pytest.approx(2.0) and scores["flicker_ratio"] == pytest.approx(0.5)
    assert scores["psnr"] == pytest.approx(-10 * math.log10(0.5 * (2 / 255) ** 2))  # error 2/255 on half the frames, 0 on the rest
