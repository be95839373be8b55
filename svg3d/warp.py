"""Forward warping with a z-buffer, and the reference's crack / isolated-point clean-up (DESIGN.md §4).

Pure tensor functions, the same code on CPU and CUDA. Conventions are those of ``camera``: a source
pixel (u, v) with depth Z lands at u' = u - fx * b / Z, v' = v, rounded to the nearest pixel centre,
halves rounded up: floor(u' + 0.5). Deliberately not the reference's ``np.round`` (half to even): with
it, a region of constant depth whose shift is exactly k + 0.5 pixels lands on every other column
(pairs of pixels collide), and the isolated-point clean-up then deletes the whole region.

Occlusion is resolved by explicit depth order: every target pixel takes the source pixel with the
smallest Z among those landing on it (``scatter_reduce(amin)``, which does not depend on the order
of duplicate indices); exact ties go to the larger source index. Holes are a mask, never a colour.
"""

from __future__ import annotations

import math

import torch

from .checks import check_shape

ISOLATED_THRESHOLD = 0.5  # keep a pixel if > 0.5 of its 3x3 window (itself included) is known: >= 5 of 9
CRACK_THRESHOLD = 0.2  # fill a hole whose Gaussian-weighted known support exceeds 0.2 (reference)
CRACK_SIGMA = 1.0  # 3x3 Gaussian of sigma 1 ...


def _gauss_weights() -> list[float]:
    """Weights of the reference's 3x3 Gaussian, in ``_OFFSETS`` order.

    outer(g, g) / (2 pi sigma^2) with g = exp(-x^2 / 2 sigma^2), x in {-1, 0, 1}: the sampled Gaussian
    *density*, whose weights sum to 0.78, not 1. The threshold 0.2 is calibrated against these
    weights, so we keep them.
    """
    return [math.exp(-(dy * dy + dx * dx) / (2 * CRACK_SIGMA**2)) / (2 * math.pi * CRACK_SIGMA**2) for dy, dx in _OFFSETS]


_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def _reflected_index(b: torch.Tensor, y: torch.Tensor, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Flat index of pixel (b, y, x) in a (B, H, W) map, with y, x up to 1 outside reflected (reflect-101)."""
    y = torch.where(y < 0, -y, torch.where(y > h - 1, 2 * (h - 1) - y, y))
    x = torch.where(x < 0, -x, torch.where(x > w - 1, 2 * (w - 1) - x, x))
    return (b * h + y) * w + x


def _pad_reflect(x: torch.Tensor) -> torch.Tensor:
    """Pad the last two dims by 1 with reflect-101 borders (OpenCV's default), for any dtype."""
    x = torch.cat([x[..., 1:2, :], x, x[..., -2:-1, :]], dim=-2)
    return torch.cat([x[..., 1:2], x, x[..., -2:-1]], dim=-1)


def splat(
    rgb: torch.Tensor, depth: torch.Tensor, shift: torch.Tensor, offset: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Z-buffered forward splat of B images by per-image horizontal shifts ``fx * b``.

    rgb: ``(B, C, H, W)``; depth Z ``(B, H, W)`` > 0; shift ``(B,)`` = fx * baseline (pixel-metres);
    offset ``(B,)`` pixels added to every target column (the screen plane: ``fx * b * screen``; None = 0).
    Returns the warped image ``(B, C, H, W)`` (0 in holes), the warped depth ``(B, H, W)`` (0 in holes)
    and the known-mask ``(B, H, W)`` bool.
    """
    s = check_shape(rgb, "B C H W", "rgb")
    check_shape(depth, "B H W", "depth")
    check_shape(shift, "B", "shift")
    b, c, h, w = s["B"], s["C"], s["H"], s["W"]
    u = torch.arange(w, device=rgb.device, dtype=depth.dtype)
    u_t = u - shift[:, None, None] / depth
    if offset is not None:
        check_shape(offset, "B", "offset")
        u_t = u_t + offset[:, None, None]
    u_t = torch.floor(u_t + 0.5)  # (B, H, W) target column
    valid = (u_t >= 0) & (u_t <= w - 1) & (depth > 0)
    row = torch.arange(h, device=rgb.device)[None, :, None] * w
    target = (row + u_t.clamp(0, w - 1).long()).reshape(b, -1)  # flat target pixel per source pixel
    target = torch.where(valid.reshape(b, -1), target, h * w)  # out-of-bounds sources go to a spill slot
    z = depth.reshape(b, -1)
    inf = torch.full((b, h * w + 1), float("inf"), dtype=depth.dtype, device=depth.device)
    zbuf = inf.scatter_reduce(1, target, z, reduce="amin")  # (B, HW + 1) nearest depth per target
    # The winner among sources at a target: depth equal to the z-buffer, ties to the larger index.
    src = torch.arange(h * w, device=rgb.device).expand(b, -1)
    wins = (z == zbuf.gather(1, target)) & (target < h * w)
    owner = torch.full((b, h * w + 1), -1, dtype=torch.long, device=rgb.device)
    owner = owner.scatter_reduce(1, target, torch.where(wins, src, -1), reduce="amax")[:, : h * w]
    mask = owner >= 0
    idx = owner.clamp_min(0)
    # gather whole pixels (channels last), so that the result is laid out as clean_cracks reads it
    pixels = rgb.permute(0, 2, 3, 1).reshape(b * h * w, c)  # (B H W, C)
    flat_idx = idx + torch.arange(b, device=rgb.device)[:, None] * (h * w)
    out = pixels[flat_idx] * mask[..., None]  # (B, H W, C)
    out_depth = torch.where(mask, zbuf[:, : h * w], 0)
    return out.reshape(b, h, w, c).permute(0, 3, 1, 2), out_depth.reshape(b, h, w), mask.reshape(b, h, w)


def _masked_rank(values: torch.Tensor, valid: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """The ``rank``-th smallest valid value of each row: values, valid ``(B, N)``, rank ``(B,)`` -> ``(B,)``.

    A selection (``median``, linear time) instead of a sort, 5-7x cheaper on the CPU: the invalid
    entries, plus two spare ones, become -inf (the first ``a`` of them) or +inf (the rest), with ``a``
    chosen so that the row's lower median is the wanted valid value: position (N' - 1) // 2 = a + rank.
    """
    b, n_all = values.shape
    pad = torch.ones(b, 2, dtype=torch.bool, device=values.device)
    invalid = torch.cat([~valid, pad], 1)  # (B, N + 2)
    a = (n_all + 1) // 2 - rank  # -infs needed; in [0, invalid count] for rank in the valid range
    order = invalid.cumsum(1) - 1  # rank of each invalid entry among the invalid ones
    fill = torch.where(order < a[:, None], float("-inf"), float("inf")).to(values.dtype)
    row = torch.where(invalid, fill, torch.cat([values, values.new_zeros(b, 2)], 1))
    return row.median(1).values


def _layer_splits(depth: torch.Tensor, mask: torch.Tensor, num_planes: int) -> torch.Tensor:
    """Upper depth bound of each layer ``(B, P)``: P//2 equal steps min -> median, the rest median -> max.

    The median is numpy's (mean of the two middle values for an even count), over known pixels.
    """
    b = depth.shape[0]
    valid = mask.reshape(b, -1)
    flat = depth.reshape(b, -1)
    n = valid.sum(1)
    lower = _masked_rank(flat, valid, (n - 1) // 2)
    # the upper middle value (rank n // 2) without a second selection: the lower one again where the count is odd or it
    # repeats, else the smallest valid value above it
    repeats = (valid & (flat <= lower[:, None])).sum(1) > n // 2
    above = torch.where(valid & (flat > lower[:, None]), flat, float("inf")).amin(1)
    median = 0.5 * (lower + torch.where(repeats, lower, above))
    d_min = torch.where(valid, flat, float("inf")).amin(1)
    d_max = torch.where(valid, flat, float("-inf")).amax(1)
    p1 = num_planes // 2
    p2 = num_planes - p1
    steps1 = torch.arange(1, p1 + 1, device=depth.device, dtype=depth.dtype)
    steps2 = torch.arange(1, p2 + 1, device=depth.device, dtype=depth.dtype)
    return torch.cat(
        [d_min[:, None] + steps1 * ((median - d_min) / p1)[:, None], median[:, None] + steps2 * ((d_max - median) / p2)[:, None]],
        dim=1,
    )


def clean_cracks(
    rgb: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor, *, num_planes: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove isolated points and fill cracks of a splatted image, layer by layer (reference §4).

    rgb ``(B, C, H, W)``, depth ``(B, H, W)``, mask ``(B, H, W)`` bool, as returned by ``splat``.
    Known pixels are split into ``num_planes`` depth layers (two equal intervals min -> median, two
    median -> max by default). Per layer: drop a pixel unless >= 5 of its 3x3 window (itself
    included) is known in that layer; then fill a hole pixel whose Gaussian-weighted support of kept
    pixels of the layer is > 0.2 with their normalised Gaussian blur. Layers are composited far to
    near (the nearest layer that covers a pixel wins). Borders reflect (OpenCV's BORDER_REFLECT_101,
    as the reference's ``cv2.filter2D``).

    Computed without materialising the layers: a pixel whose whole 3x3 window lies in its own layer
    provably keeps its colour (its 4 direct neighbours share >= 6 window pixels with it, so they are
    kept, and no other layer reaches it), and a pixel whose window is all hole stays a hole. Only the
    remaining pixels — the edges of holes and of layers, a few percent — are evaluated, exactly.

    Deliberate difference: the last layer has no upper bound, so the farthest pixel can never fall
    outside every layer through rounding of ``median + 2 * (max - median) / 2``.
    Returns rgb ``(B, C, H, W)`` and mask ``(B, H, W)`` bool.
    """
    if num_planes < 2:
        raise ValueError(f"num_planes must be >= 2, got {num_planes}")
    s = check_shape(rgb, "B C H W", "rgb")
    check_shape(depth, "B H W", "depth")
    check_shape(mask, "B H W", "mask")
    c, h, w = s["C"], s["H"], s["W"]
    splits = _layer_splits(depth, mask, num_planes)  # (B, P)
    # Layer per pixel: the number of splits strictly below its depth (depth == split stays in the
    # lower layer, as the reference's `depth <= split`), capped at the last layer; holes get P.
    layer = sum((depth > splits[:, k, None, None]).view(torch.uint8) for k in range(num_planes - 1))  # uint8
    label = torch.where(mask, layer, num_planes)  # (B, H, W) uint8

    # 1. isolated points: pixels of the same label in each 3x3 window (itself included).
    padded = _pad_reflect(label)
    windows = [padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in _OFFSETS]
    same = sum((win == label).view(torch.uint8) for win in windows)  # (B, H, W) in 1..9
    keep = mask & (same > 9 * ISOLATED_THRESHOLD)
    kept_label = torch.where(keep, label, num_planes)

    pixels = rgb.permute(0, 2, 3, 1).contiguous()  # (B, H, W, C): a pixel's channels together for gathers
    out = pixels * keep[..., None]
    out_mask = keep.clone()
    # 2. cracks, at the pixels whose window is not uniform.
    todo = (same < 9).reshape(-1).nonzero()[:, 0]  # flat (b, y, x) indices
    if todo.numel():
        bi, rem = todo // (h * w), todo % (h * w)
        y, x = rem // w, rem % w
        nbr = torch.stack([_reflected_index(bi, y + dy, x + dx, h, w) for dy, dx in _OFFSETS], 1)  # (N, 9)
        kl = kept_label.reshape(-1)[nbr]  # (N, 9) kept label of each neighbour
        weights = torch.tensor(_gauss_weights(), dtype=rgb.dtype, device=rgb.device)
        # support per layer (N, P): Gaussian weight of the neighbours kept in that layer
        onehot = kl[:, :, None] == torch.arange(num_planes, device=rgb.device, dtype=torch.uint8)
        support = (onehot.to(rgb.dtype) * weights[None, :, None]).sum(1)
        filled = support > CRACK_THRESHOLD
        # composite far to near = the nearest filled layer wins
        win = torch.where(filled, torch.arange(num_planes, device=rgb.device), num_planes).amin(1)
        covered = win < num_planes
        flat = pixels.reshape(-1, c)  # (B H W, C)
        wsel = (kl == win[:, None]).to(rgb.dtype) * weights  # (N, 9) weights of the winning layer
        blur = (wsel[:, :, None] * flat[nbr]).sum(1) / (wsel.sum(1, keepdim=True) + 1e-6)  # (N, C)
        own = keep.reshape(-1)[todo] & (label.reshape(-1)[todo] == win)  # kept pixels keep their colour
        value = torch.where(own[:, None], flat[todo], blur) * covered[:, None]
        out.view(-1, c)[todo] = value
        out_mask.view(-1)[todo] = covered
    return out.permute(0, 3, 1, 2), out_mask  # (B, H, W, C) -> (B, C, H, W)


def warp_views(
    frames: torch.Tensor,
    depth: torch.Tensor,
    baselines: torch.Tensor,
    focal: float,
    *,
    screen: float = 0.0,
    num_planes: int = 4,
    clean: bool = True,
    views_per_batch: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp T frames to V views: the frame-matrix cells for these frames.

    frames ``(T, C, H, W)`` in [0, 1]; depth Z ``(T, H, W)``; baselines ``(V,)`` metres; focal in pixels;
    screen: inverse depth (1/m) of the screen plane, which lands where it is in every view (``camera``).
    Returns images ``(V, T, C, H, W)`` (0 in holes) and masks ``(V, T, 1, H, W)`` bool. A view at
    baseline 0 is the input with an all-ones mask (not warped: the identity needs no clean-up).
    ``views_per_batch``: views warped together (default: 1 on the CPU, where a small working set stays
    in cache; all on CUDA, where fewer, larger launches win). The result does not depend on it.
    """
    s = check_shape(frames, "T C H W", "frames")
    check_shape(depth, "T H W", "depth")
    v_count = check_shape(baselines, "V", "baselines")["V"]
    t, c, h, w = s["T"], s["C"], s["H"], s["W"]
    images = torch.empty(v_count, t, c, h, w, dtype=frames.dtype, device=frames.device)
    masks = torch.ones(v_count, t, 1, h, w, dtype=torch.bool, device=frames.device)
    # fx * b in float64, then rounded once to the working precision (reproducible on any device)
    shifts = (focal * baselines.double()).to(depth.dtype)
    offsets = (focal * baselines.double() * screen).to(depth.dtype)
    zero = (baselines == 0).tolist()
    images[[v for v in range(v_count) if zero[v]]] = frames
    moving = [v for v in range(v_count) if not zero[v]]
    group = views_per_batch or (v_count if frames.device.type == "cuda" else 1)
    for i in range(0, len(moving), group):
        views = moving[i : i + group]
        n = len(views)
        rgb_in = frames if n == 1 else frames.repeat(n, 1, 1, 1)  # (n T, C, H, W), views major
        z_in = depth if n == 1 else depth.repeat(n, 1, 1)
        out, zt, m = splat(rgb_in, z_in, shifts[views].repeat_interleave(t), offsets[views].repeat_interleave(t) if screen else None)
        if clean:
            out, m = clean_cracks(out, zt, m, num_planes=num_planes)
        images[views] = out.reshape(n, t, c, h, w)
        masks[views] = m.reshape(n, t, 1, h, w)
    return images, masks
