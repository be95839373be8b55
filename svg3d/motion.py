"""The scene's motion between two frames: plane plus parallax, fitted robustly to point matches (pure torch).

A pinhole camera moving rigidly maps a static point at pixel x (homogeneous) and inverse depth rho to
``x_s ~ H x + e rho`` whatever it does (pan, truck, dolly, shake); ``fit_scene_motion`` finds H and e from
matches (optical flow) with moving objects left out, ``predict_motion`` carries points with it. Pixel
coordinates are ``camera``'s (pixel centres at integers). Used by the classical filler
(``stages.fill.classical``) to follow hidden background from frame to frame; float64 fit, any device.
"""

from __future__ import annotations

import torch

MOTION_SAMPLE_STRIDE = 4  # the scene's motion is fitted to the flow at every 4th pixel (of the flow's grid) each way
MOTION_TRIMS = 3  # least-squares fits on the best-fitting half of the matches (trimmed least squares) ...
MOTION_ROUNDS = 2  # ... then on the inliers of the previous fit
MOTION_EDGE = 0.05  # samples whose 4 depth taps differ by more than 5 % (depth edges) do not enter the fit


def _motion_rows(u, v, rho, us, vs, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear equations ``A p = b`` (float64, ``(2N, 11)`` and ``(2N,)``) of the plane-plus-parallax model."""
    h, w = size
    x, y = (u - 0.5 * w) / w, (v - 0.5 * h) / w  # centred, one scale for both axes
    xs, ys = (us - 0.5 * w) / w, (vs - 0.5 * h) / w
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    row_x = torch.stack([x, y, one, zero, zero, zero, -xs * x, -xs * y, rho, zero, -xs * rho], 1)
    row_y = torch.stack([zero, zero, zero, x, y, one, -ys * x, -ys * y, zero, rho, -ys * rho], 1)
    return torch.cat([row_x, row_y]), torch.cat([xs, ys])


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
    """
    u, v, us, vs, rho = (a.double() for a in (u, v, us, vs, rho))
    device = u.device
    still = torch.tensor([1.0, 0, 0, 0, 1.0, 0, 0, 0, 0, 0, 0, 1.0], dtype=torch.float64, device=device)  # no motion, scale 1
    n = u.numel()
    if n < 12:  # too few matches to say anything: no motion
        return still
    if valid is None:
        count, kth = n, lambda x, k: x.kthvalue(k).values  # (k: 1 = the smallest)
        half = max(12, n // 2)
    else:  # the others' values replaced (an invalid 1/Z may be inf: weight 0 times inf is not 0), put last in any order
        count = valid.sum()
        u, v, us, vs = (torch.where(valid, a, 0.0) for a in (u, v, us, vs))
        rho = torch.where(valid, rho, 1.0)

        def kth(x: torch.Tensor, k) -> torch.Tensor:
            ordered = torch.where(valid, x, torch.inf).sort().values
            return ordered.gather(0, (torch.as_tensor(k, device=device) - 1).clamp(0, n - 1).reshape(1))[0]

        half = (count // 2).clamp(min=12)

    def median(x: torch.Tensor) -> torch.Tensor:  # torch.median's: the lower of the two middle values
        return x.median() if valid is None else kth(x, (count + 1) // 2)

    mask = torch.ones(n, dtype=torch.float64, device=device) if valid is None else valid.double()
    scale = 1.0 / median(rho).clamp_min(1e-12)
    a, b = _motion_rows(u, v, rho * scale, us, vs, size)
    # A small ridge pulls e (depth-dependent motion) towards 0: where depth is nearly constant, e rho and H's
    # last column explain the same motion and Z_s / Z_t (the denominator) would be anything; with the ridge
    # it stays near 1 (no dolly), and where depth varies the data outweighs it by ~1e6.
    ridge = torch.diag(torch.tensor([1e-12] * 8 + [1e-6] * 3, dtype=torch.float64, device=device))

    # Everything stays on the device (no value read back to the host: on CUDA each read would stall the queue).
    def solve(use: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wt = torch.cat([use, use])[:, None]
        ata = (a * wt).T @ a
        atb = (a * wt).T @ b
        # solve_ex: solve's result, without its check that reads the status back (a singular system gives
        # non-finite parameters, which move no point: predict_motion's points then land nowhere)
        solution = torch.linalg.solve_ex(ata + ata.diagonal().mean() * ridge, atb).result
        params = torch.cat([solution, scale.reshape(1)])
        pu, pv, _ = predict_motion(params, u, v, rho, size)
        return params, ((pu - us) ** 2 + (pv - vs) ** 2).sqrt()

    params, err = solve(mask)
    for _ in range(MOTION_TRIMS):
        params, err = solve((err <= kth(err, half)).double() * mask)
    for _ in range(MOTION_ROUNDS):
        use = (err <= (3.0 * median(err)).clamp_min(inlier_px)).double() * mask
        enough = use.sum() >= 12  # too few inliers: keep the previous fit (the next round would find the same few)
        refit, refit_err = solve(use)
        params, err = torch.where(enough, refit, params), torch.where(enough, refit_err, err)
    if valid is not None:  # too few valid matches: no motion
        params = torch.where(count >= 12, params, still)
    return params
