"""The scene's motion between two frames: plane plus parallax, fitted robustly to point matches (pure torch).

A pinhole camera moving rigidly maps a static point at pixel x (homogeneous) and inverse depth rho to
``x_s ~ H x + e rho`` whatever it does (pan, truck, dolly, shake); ``fit_scene_motion`` finds H and e from
matches (optical flow) with moving objects left out, ``predict_motion`` carries points with it. Pixel
coordinates are ``camera``'s (pixel centres at integers). Used by the classical filler
(``stages.fill.classical``) to follow hidden background from frame to frame; float64 fit, any device.
"""

from __future__ import annotations

import torch

from .graphs import to_device

MOTION_SAMPLE_STRIDE = 4  # the scene's motion is fitted to the flow at every 4th pixel (of the flow's grid) each way
MOTION_TRIMS = 3  # least-squares fits on the best-fitting half of the matches (trimmed least squares) ...
MOTION_ROUNDS = 2  # ... then on the inliers of the previous fit
MOTION_EDGE = 0.05  # samples whose 4 depth taps differ by more than 5 % (depth edges) do not enter the fit
STILL = (1.0, 0, 0, 0, 1.0, 0, 0, 0, 0, 0, 0, 1.0)  # fit_scene_motion's parameters of no motion (H = I, scale 1)


def _motion_rows(u, v, rho, us, vs, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear equations ``A p = b`` (float64, ``(..., 2N, 11)`` and ``(..., 2N)``) of the plane-plus-parallax model."""
    h, w = size
    x, y = (u - 0.5 * w) / w, (v - 0.5 * h) / w  # centred, one scale for both axes
    xs, ys = (us - 0.5 * w) / w, (vs - 0.5 * h) / w
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    row_x = torch.stack([x, y, one, zero, zero, zero, -xs * x, -xs * y, rho, zero, -xs * rho], -1)
    row_y = torch.stack([zero, zero, zero, x, y, one, -ys * x, -ys * y, zero, rho, -ys * rho], -1)
    return torch.cat([row_x, row_y], -2), torch.cat([xs, ys], -1)


def predict_motion(params: torch.Tensor, u: torch.Tensor, v: torch.Tensor, rho: torch.Tensor, size: tuple[int, int]):
    """Where points of frame t land in frame s under the fitted scene motion (``fit_scene_motion``).

    params: float64 ``(12,)``, or ``(N, 12)``: each point's own (points of several frame pairs at once);
    u, v ``(N,)`` pixel coordinates; rho ``(N,)`` inverse depth 1/Z of each point at frame t. Returns u_s,
    v_s ``(N,)`` and w ``(N,)``, the model's Z_s / Z_t, in the dtype of ``u`` (float32 keeps 1e-4 px at
    any frame size the project handles; the fit itself is float64).
    """
    h, w = size
    # the coefficients rounded to u's dtype, as a Python float is in an op with a tensor, on the device (no copy to
    # the host): every element's arithmetic is the same whether its point comes alone or with others
    p = params.to(u.dtype).unbind(-1)
    x, y, q = (u - 0.5 * w) * (1.0 / w), (v - 0.5 * h) * (1.0 / w), rho * p[11]
    den = x * p[6] + y * p[7] + q * p[10] + 1.0
    xs = (x * p[0] + y * p[1] + q * p[8] + p[2]) / den
    ys = (x * p[3] + y * p[4] + q * p[9] + p[5]) / den
    return xs * w + 0.5 * w, ys * w + 0.5 * h, den


def fit_scene_motion(
    u: torch.Tensor, v: torch.Tensor, rho: torch.Tensor, us: torch.Tensor, vs: torch.Tensor, size: tuple[int, int], *,
    inlier_px: float, valid: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """Fit the motion of the static scene between two frames to point matches, robust to moving objects.

    A pinhole camera moving rigidly maps a static point x (homogeneous pixel) at inverse depth rho to
    ``x_s ~ H x + e rho`` (plane plus parallax: H = K R^T K^-1, e = -K R^T c for a camera that turns by R
    and moves by c), exactly for any rotation and translation; H's last entry is fixed to 1 (motion
    between neighbouring frames is close to the identity). The 11 unknowns come from linear least
    squares on the multiplied-out equations: first on all matches, then ``MOTION_TRIMS`` times on the
    half that fits best (trimmed least squares: moving objects, up to half the matches, drop out even
    when they move only a few pixels), then ``MOTION_ROUNDS`` times on the matches within
    ``max(inlier_px, 3 x median)`` px. An affine inverse depth (a monocular network's) fits as well:
    its offset folds into H. u, v, us, vs, rho ``(N,)``: matches at frame t -> s (pixels) and 1/Z at t.
    valid: bool ``(N,)``, the matches to fit (None: all), the others ignored whatever their values: the fit of
    the valid ones alone, to rounding, with nothing read back to the host (on CUDA selecting them would wait for
    the GPU). Returns float64 ``(12,)``: the 11 parameters and the scale applied to rho (for ``predict_motion``).
    With ``valid``, all of them may be ``(B, N)``: B pairs of frames fitted at once, each alone (no op mixes them;
    kernels may round differently for another B), returning ``(B, 12)``.
    """
    u, v, us, vs, rho = (a.double() for a in (u, v, us, vs, rho))
    device = u.device
    still = to_device(STILL, device, torch.float64)  # (no copy here waits for the GPU: graphs.to_device)
    n = u.shape[-1]
    if n < 12:  # too few matches to say anything: no motion
        return still.expand(*u.shape[:-1], 12)
    if valid is None:
        if u.dim() != 1:
            raise ValueError(f"fit_scene_motion: matches of several pairs {tuple(u.shape)} need valid=")
        count, kth = n, lambda x, k: x.kthvalue(k).values  # (k: 1 = the smallest)
        half = max(12, n // 2)
    else:  # the others' values replaced (an invalid 1/Z may be inf: weight 0 times inf is not 0), put last in any order
        count = valid.sum(-1)
        u, v, us, vs = (torch.where(valid, a, 0.0) for a in (u, v, us, vs))
        rho = torch.where(valid, rho, 1.0)

        def kth(x: torch.Tensor, k) -> torch.Tensor:
            ordered = torch.where(valid, x, torch.inf).sort(-1).values
            return ordered.gather(-1, (torch.as_tensor(k, device=device) - 1).clamp(0, n - 1).unsqueeze(-1)).squeeze(-1)

        half = (count // 2).clamp(min=12)

    def median(x: torch.Tensor) -> torch.Tensor:  # torch.median's: the lower of the two middle values
        return x.median() if valid is None else kth(x, (count + 1) // 2)

    mask = torch.ones(n, dtype=torch.float64, device=device) if valid is None else valid.double()
    scale = 1.0 / median(rho).clamp_min(1e-12)
    a, b = _motion_rows(u, v, rho * scale.unsqueeze(-1), us, vs, size)
    # A small ridge pulls e (depth-dependent motion) towards 0: where depth is nearly constant, e rho and H's
    # last column explain the same motion and Z_s / Z_t (the denominator) would be anything; with the ridge
    # it stays near 1 (no dolly), and where depth varies the data outweighs it by ~1e6.
    ridge = torch.diag(to_device([1e-12] * 8 + [1e-6] * 3, device, torch.float64))

    # Everything stays on the device (no value read back to the host: on CUDA each read would stall the queue).
    def solve(use: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weighted = a * torch.cat([use, use], -1).unsqueeze(-1)
        if a.dim() == 2:
            ata, atb = weighted.T @ a, weighted.T @ b
        else:  # several pairs: sums over the matches, not a batched product (on the CPU its rounding depends on an entry's place)
            ata, atb = (weighted.unsqueeze(-1) * a.unsqueeze(-2)).sum(-3), (weighted * b.unsqueeze(-1)).sum(-2)
        # solve_ex: solve's result, without its check that reads the status back (a singular system gives
        # non-finite parameters, which move no point: predict_motion's points then land nowhere)
        damped = ata + ata.diagonal(dim1=-2, dim2=-1).mean(-1)[..., None, None] * ridge
        solution = torch.linalg.solve_ex(damped, atb.unsqueeze(-1)).result.squeeze(-1)
        params = torch.cat([solution, scale.unsqueeze(-1)], -1)
        pu, pv, _ = predict_motion(params.unsqueeze(-2), u, v, rho, size)  # (each pair's parameters over its points)
        return params, ((pu - us) ** 2 + (pv - vs) ** 2).sqrt()

    params, err = solve(mask)
    for _ in range(MOTION_TRIMS):
        params, err = solve((err <= kth(err, half).unsqueeze(-1)).double() * mask)
    for _ in range(MOTION_ROUNDS):
        use = (err <= (3.0 * median(err)).clamp_min(inlier_px).unsqueeze(-1)).double() * mask
        enough = (use.sum(-1) >= 12).unsqueeze(-1)  # too few inliers: keep the previous fit (the next round would find the same few)
        refit, refit_err = solve(use)
        params, err = torch.where(enough, refit, params), torch.where(enough, refit_err, err)
    if valid is not None:  # too few valid matches: no motion
        params = torch.where((count >= 12).unsqueeze(-1), params, still)
    return params
