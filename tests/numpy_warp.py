"""A straightforward numpy + OpenCV implementation of the frame-matrix warp, one image at a time.

It follows the authors' algorithm step by step (sort by depth, assign far to near, per-layer
``cv2.filter2D`` clean-up) and is the reference that ``svg3d.warp`` is tested against and the
baseline that ``bench/bench_warp.py`` measures it against. Kept out of the package on purpose.
"""

from __future__ import annotations

import cv2
import numpy as np


def splat_one(rgb: np.ndarray, depth: np.ndarray, shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rgb (H, W, C) float32, depth (H, W) float32 -> warped rgb, warped depth, mask (H, W) bool."""
    h, w = depth.shape
    u = np.arange(w, dtype=np.float32)[None, :].repeat(h, 0)
    v = np.arange(h)[:, None].repeat(w, 1)
    u_t = np.floor(u - np.float32(shift) / depth + np.float32(0.5))
    ok = (u_t >= 0) & (u_t <= w - 1) & (depth > 0)
    z, ut, vt, src = depth[ok], u_t[ok].astype(np.int64), v[ok], np.flatnonzero(ok)
    # nearest first; among equal depths the larger source index first
    order = np.lexsort((-src, z))
    target = (vt * w + ut)[order]
    first = np.unique(target, return_index=True)[1]
    winners = src[order][first]
    tgt = target[first]
    out = np.zeros_like(rgb).reshape(-1, rgb.shape[2])
    out_d = np.zeros(h * w, np.float32)
    mask = np.zeros(h * w, bool)
    out[tgt] = rgb.reshape(-1, rgb.shape[2])[winners]
    out_d[tgt] = depth.reshape(-1)[winners]
    mask[tgt] = True
    return out.reshape(rgb.shape), out_d.reshape(h, w), mask.reshape(h, w)


def clean_one(rgb: np.ndarray, depth: np.ndarray, mask: np.ndarray, num_planes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    vals = depth[mask]
    d_min, d_med, d_max = vals.min(), np.float32(np.median(vals)), vals.max()
    p1 = num_planes // 2
    p2 = num_planes - p1
    splits = [d_min + (i + 1) * ((d_med - d_min) / p1) for i in range(p1)]
    splits += [d_med + (i + 1) * ((d_max - d_med) / p2) for i in range(p2)]
    g = np.exp(-np.array([-1.0, 0.0, 1.0]) ** 2 / 2)
    gauss = (np.outer(g, g) / (2 * np.pi)).astype(np.float32)
    mean = np.ones((3, 3), np.float32) / 9
    out = np.zeros_like(rgb)
    out_mask = np.zeros_like(mask)
    for i in reversed(range(num_planes)):  # far to near: nearer layers overwrite
        lower = splits[i - 1] if i > 0 else -np.inf
        upper = splits[i] if i < num_planes - 1 else np.inf
        m = (mask & (depth > lower) & (depth <= upper)).astype(np.float32)
        img = rgb * m[..., None]
        keep = (m > 0) & (np.round(cv2.filter2D(m, -1, mean) * 9) >= 5)
        m = keep.astype(np.float32)
        img = img * m[..., None]
        weight = cv2.filter2D(m, -1, gauss)
        blur = cv2.filter2D(img, -1, gauss) / (weight[..., None] + 1e-6)
        filled = weight > 0.2
        layer = np.where((keep & filled)[..., None], img, blur * filled[..., None])
        out = np.where(filled[..., None], layer, out)
        out_mask = filled | out_mask
    return out, out_mask


def warp_views_numpy(frames: np.ndarray, depth: np.ndarray, baselines, focal: float, num_planes: int = 4):
    """frames (T, H, W, C) float32, depth (T, H, W) -> images (V, T, H, W, C), masks (V, T, H, W)."""
    images, masks = [], []
    for b in baselines:
        row_i, row_m = [], []
        for t in range(frames.shape[0]):
            if b == 0:
                row_i.append(frames[t])
                row_m.append(np.ones(depth.shape[1:], bool))
                continue
            img, d, m = splat_one(frames[t], depth[t], np.float32(np.float64(focal) * np.float64(b)))
            img, m = clean_one(img, d, m, num_planes)
            row_i.append(img)
            row_m.append(m)
        images.append(row_i)
        masks.append(row_m)
    return np.array(images), np.array(masks)
