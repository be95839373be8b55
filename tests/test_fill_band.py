"""The out-of-view band's fade (svg3d/stages/fill/band.py): hand-computed distances, a reference mean, invariants,
and a horizontal edge through the band kept at its row by the whole classical filler."""

from __future__ import annotations

import pytest
import torch

from svg3d.stages.fill import band as fb
from svg3d.stages.fill import classical as fill


def test_band_distance_counts_from_the_inner_edge():
    band = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    assert fb.band_distance(band, 1).tolist() == [[0, 0, 1, 2, 3], [0, 0, 0, 0, 1], [0] * 5]
    assert fb.band_distance(band.flip(-1), -1).tolist() == [[3, 2, 1, 0, 0], [1, 0, 0, 0, 0], [0] * 5]
    with pytest.raises(ValueError, match="side"):
        fb.band_distance(band, 0)


def ragged_band(h: int = 40, w: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random picture and a right-edge band whose width changes from row to row (as a warp leaves it)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, h, w, generator=g)
    widths = torch.randint(10, 30, (h,), generator=g)
    band = torch.arange(w) >= (w - widths[:, None])
    return image, band


def test_fade_band_is_the_mean_of_the_band_over_its_rows():
    """Where the radius fade x d is a power of two the result is exactly the box level of that radius: the mean of
    the band's pixels of the column within r rows (a reference loop here)."""
    image, band = ragged_band()
    out = fb.fade_band(image, band, 1, fade=0.5)
    d = fb.band_distance(band, 1)
    h = image.shape[-2]
    checked = 0
    for y, x in band.nonzero().tolist():
        r = {2: 1, 4: 2, 8: 4, 16: 8}.get(int(d[y, x]))  # fade 0.5: d = 2 r is level log2(r) + 1 exactly
        if r is None:
            continue
        rows = [i for i in range(max(0, y - r), min(h, y + r + 1)) if band[i, x]]
        ref = image[:, rows, x].mean(-1)
        torch.testing.assert_close(out[:, y, x], ref, rtol=0, atol=1e-6)
        checked += 1
    assert checked > 50


def test_fade_band_reads_and_writes_only_the_band():
    image, band = ragged_band()
    out = fb.fade_band(image, band, 1)
    assert torch.equal(out[:, ~band], image[:, ~band])
    other = torch.where(band, image, torch.rand_like(image))  # anything outside the band: the same band result
    assert torch.equal(fb.fade_band(other, band, 1)[:, band], out[:, band])
    flat = torch.where(band, torch.tensor([0.1, 0.5, 0.9])[:, None, None], image)
    torch.testing.assert_close(fb.fade_band(flat, band, 1), flat, rtol=0, atol=1e-6)  # a constant band stays
    assert torch.equal(fb.fade_band(image, band, 1, fade=0.0), image)


def test_fade_band_mirrors_and_keeps_cells_apart():
    image, band = ragged_band()
    right = fb.fade_band(image, band, 1)
    assert torch.equal(fb.fade_band(image.flip(-1), band.flip(-1), -1).flip(-1), right)
    image2, band2 = ragged_band(seed=1)
    both = fb.fade_band(torch.stack([image, image2]), torch.stack([band, band2]), 1)
    assert torch.equal(both[0], right)
    assert torch.equal(both[1], fb.fade_band(image2, band2, 1))


def test_a_horizontal_edge_through_the_band_stays_at_its_row():
    """Dark above row 24, bright below, a texture along the rows, the right 16 columns out of view: in every band
    column the fill crosses half-way between the two rows of the edge (no drift up or down, however far out), and
    next to the edge it keeps most of the step (measured 0.49 of the 0.6 between rows 22 and 25)."""
    h, w, edge = 48, 80, 24
    img = torch.full((1, 3, h, w), 0.2)
    img[..., edge:, :] = 0.8
    img = img + 0.05 * torch.sin(torch.arange(w) / 3.0)
    known = torch.ones(1, 1, h, w, dtype=torch.bool)
    known[..., w - 16 :] = False
    depth = torch.full((1, 1, h, w), 2.0)
    images = torch.where(known[:, :, None], img[None], 0.0)
    out = fill.fill_views(
        images, known, torch.where(known, depth, 0), source=img, source_depth=depth[0],
        baselines=torch.tensor([0.1], dtype=torch.float64), focal=100.0,
    )[0, 0, 0]  # fmt: skip
    band = out[:, w - 16 :]
    mid = 0.5 + 0.05 * torch.sin(torch.tensor(float(w - 17)) / 3.0)  # the edge's half-way value at the end pixel
    assert (band[edge - 1] < mid).all() and (band[edge] > mid).all(), (band[edge - 1], band[edge])
    around = band[edge - 2 : edge].mean(0) + band[edge : edge + 2].mean(0)
    assert (around - 2 * mid).abs().max() < 0.03  # symmetric about it
    assert band[edge + 1, 0] - band[edge - 2, 0] > 0.4


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_fade_band_on_the_device_equals_the_cpu(device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA")
    image, band = ragged_band()
    ref = fb.fade_band(image, band, 1)
    out = fb.fade_band(image.to(device), band.to(device), 1).cpu()
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)  # float32 running sums in another order
    with pytest.raises(ValueError, match="side"):
        fb.fade_band(image.to(device), band.to(device), 2)
