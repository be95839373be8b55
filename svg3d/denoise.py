"""Frame-matrix denoising (DESIGN.md §5): the core of SVG, as one numbered recipe.

Variables and what they are in the paper's diffusion notation::

    z          (V, T, c, h, w)  the noisy frame matrix z_t: V views (columns) x T frames (rows), latent
    S          (V, T, c, h, w)  known latents: scale * VAE.encode(warped frames), holes zeroed
    M          (V, T, 1, h, w)  soft latent mask in [0, 1]; 1 = known
    pixel      (V, T, 1, H, W)  eroded pixel known-mask (True = known), used by the re-injection
    t, t'                       a timestep and the next (smaller) one of the DDPM schedule
    abar_t                      \\bar{alpha}_t, the scheduler's alphas_cumprod[t]
    q(S, t)                     forward diffusion sqrt(abar_t) S + sqrt(1 - abar_t) eps
    x0                          the UNet's prediction of the clean latents (\\hat{z}_0)
    E                           frame_matrix_end: below it only the target eye view(s) are denoised
    R                           resample: passes of "time travel" (re-noise t' -> t, denoise again)
    column                      one view over time, a T-frame video: UNet batch = views
    row                         one time over the views, a V-frame "video": UNet batch = frames

The two reshapes the UNet needs (its input is ``(B, c, F, h, w)``): ``to_columns`` (views become the
batch, frames the UNet's frame axis) and ``to_rows`` (frames become the batch, views the frame axis).

Where we differ from the reference (``svg.py`` of the authors' release) on purpose:

- Re-noising t' -> t multiplies by sqrt(abar_t / abar_t') exactly; the reference's product of
  alphas is off by one index.
- Columns and rows go through the UNet many per call (``max_unet_frames``), not one at a time, and
  every random draw covers the whole matrix in a fixed layout, so results do not depend on the chunk
  size. A column that is known everywhere (the input view) is not run through the UNet in temporal
  passes: with M == 1 its result is overwritten by the next injection anyway. For the same reason it
  is not re-encoded by the re-injection (the reference re-samples its VAE posterior every step). A cell known in
  every pixel of a view the re-injection updates is neither decoded nor encoded again: its composite is its masked
  frame, whose posterior step 2 kept; it is re-sampled from that posterior, as the reference's re-encode would.
- Views a pass does not update keep their latents (the first release zeroed them).
- A latent cell's known share is its own 8 x 8 block (``latent_known``), not windows shifted by
  OpenCV's kernel anchor.
- Randomness comes from explicit ``torch.Generator``s derived from one seed, never the global RNG.
- The frame matrix is kept in fp32 between UNet/VAE calls (which run in the model's dtype).
- Any length (``denoise_windows``; ``denoise_long`` in memory): the reference's sliding window is an empty stub. Windows of W frames
  overlap by O; the overlap of each window after the first holds the previous window's final latents
  as known content (M = 1) for the output views, so the seam frames are the same latents in both.
- Any size: frames whose sides are not multiples of the VAE factor are reflect-padded and cropped back.

Execution, not recipe: ``DenoiseConfig.unet`` picks diffusers' UNet3D forward or ours (``svg3d.unet3d``, same
numbers, channels-last), ``DenoiseConfig.vae_kind`` diffusers' SD VAE forward or ours (``svg3d.vae``, likewise; by default the kind of the UNet's), and ``workers`` (``Workers``; ``svg3d.distributed.Ranks`` across processes) says which
share of each pass's UNet batch items and of each VAE call's frames this process computes; every process draws
every random number of the whole matrix, so a run split across GPUs equals the one-device run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from . import camera, unet3d
from .checks import check_shape
from .config import DenoiseConfig
from .models import channels_last_input
from .vae import vae_for

log = logging.getLogger(__name__)

TIME, VIEWS, VIEWS_REVERSED = "time", "views", "views_reversed"  # the three denoising directions


# --------------------------------------------------------------------------------------------------
# randomness


@dataclass(frozen=True)
class Generators:
    """One stream per purpose, so that e.g. turning re-injection off leaves the starting noise alone."""

    init: torch.Generator  # z_T
    step: torch.Generator  # the DDPM posterior noise (drawn inside scheduler.step)
    noise: torch.Generator  # re-noising t' -> t and q(S, t)
    vae: torch.Generator  # VAE posterior samples


def make_generators(seed: int, device: torch.device) -> Generators:
    """Independent generators on ``device`` derived from ``seed`` (numpy ``SeedSequence.spawn``)."""
    seeds = [int(s.generate_state(1, np.uint64)[0]) for s in np.random.SeedSequence(seed).spawn(4)]
    return Generators(*(torch.Generator(device).manual_seed(s) for s in seeds))


def _randn_matrix(shape: Sequence[int], gen: torch.Generator) -> torch.Tensor:
    """Standard normal noise ``(V, T, c, h, w)``, drawn in the column layout ``(V, c, T, h, w)``.

    Drawing in the UNet's column layout makes a single column reproduce diffusers' own text-to-video
    sampling draw for draw (tested); drawing the whole matrix at once keeps results chunk-independent.
    """
    v, t, c, h, w = shape
    return from_columns(torch.randn((v, c, t, h, w), generator=gen, device=gen.device))


# --------------------------------------------------------------------------------------------------
# who computes what


class Workers:
    """How a run's UNet and VAE work is shared out: here, one process computes all of it.

    ``svg3d.distributed.Ranks`` replaces it to split a clip across processes (GPUs). The loop asks ``share(n)``
    for the items of a list of n (UNet batch items, VAE frames) this process computes, writes them into a
    zero-filled tensor of all n, and ``combine`` returns the tensor with every process's items in it.
    """

    rank, world = 0, 1

    def share(self, n: int) -> range:
        """The items ``0 .. n-1`` this process computes: all of them."""
        return range(n)

    def combine(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(n, ...)`` holds this process's share (zeros elsewhere); returns all n items (here: ``x``)."""
        return x


LOCAL = Workers()


# --------------------------------------------------------------------------------------------------
# the two reshapes


def to_columns(z: torch.Tensor) -> torch.Tensor:
    """Columns: ``(V, T, c, h, w)`` -> UNet input ``(V, c, T, h, w)`` (views become the batch)."""
    return z.permute(0, 2, 1, 3, 4)


def from_columns(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``to_columns``: ``(V, c, T, h, w)`` -> ``(V, T, c, h, w)``."""
    return x.permute(0, 2, 1, 3, 4)


def to_rows(z: torch.Tensor) -> torch.Tensor:
    """Rows: ``(V, T, c, h, w)`` -> UNet input ``(T, c, V, h, w)`` (frames become the batch)."""
    return z.permute(1, 2, 0, 3, 4)


def from_rows(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``to_rows``: ``(T, c, V, h, w)`` -> ``(V, T, c, h, w)``."""
    return x.permute(2, 0, 1, 3, 4)


# --------------------------------------------------------------------------------------------------
# masks (pure)


def erode(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Erode a known-mask ``(N, 1, H, W)`` bool with a ``size`` x ``size`` square (odd ``size``).

    Outside the image counts as known, as OpenCV's ``erode`` default border in the reference, so the
    input view's all-ones mask stays all ones. Eroding trims warped content next to holes, where depth
    edges are least reliable (the reference's comment: foreground leaking into the background).
    """
    check_shape(mask, "N 1 H W", "mask")
    if size == 1:
        return mask
    unknown = F.max_pool2d((~mask).float(), size, stride=1, padding=size // 2)  # pads with -inf
    return unknown == 0


def latent_known(mask: torch.Tensor, factor: int, threshold: float) -> torch.Tensor:
    """Binary latent known-mask ``(N, 1, H/f, W/f)`` from a pixel known-mask ``(N, 1, H, W)`` bool.

    A latent cell is known when at least ``threshold`` of its f x f pixels are known and its centre
    pixels (the 2 x 2 a bilinear downsample reads, for even f) are known. The reference evaluates the
    box mean at those centre pixels on windows shifted by half a pixel (OpenCV's anchor); we take the
    cell's own block, which is what the rule means.
    """
    n = check_shape(mask, "N 1 H W", "mask")
    h, w = n["H"] // factor, n["W"] // factor
    if (h * factor, w * factor) != (n["H"], n["W"]):
        raise ValueError(f"mask {n['H']}x{n['W']} is not divisible by the VAE factor {factor}")
    share = F.avg_pool2d(mask.float(), factor)
    lo, hi = (factor - 1) // 2, factor // 2 + 1
    blocks = mask.reshape(n["N"], 1, h, factor, w, factor)  # N 1 h f w f: one f x f block per cell
    centre = blocks[:, :, :, lo:hi, :, lo:hi].all(dim=5).all(dim=3)
    return (share >= threshold) & centre


def soft_mask(binary: torch.Tensor, k: int, kind: str = "gaussian") -> torch.Tensor:
    """Soft mask ``blur(binary) * binary`` ``(N, 1, h, w)`` float in [0, 1] from a bool mask.

    ``kind="gaussian"``: OpenCV's k x k Gaussian with sigma derived from k (the reference calls
    ``cv2.GaussianBlur(m, (k, k), 0)``; for k = 5 the weights are the dyadic [1 4 6 4 1] / 16, so an
    all-known mask stays exactly 1). ``"box"``: a k x k mean. Borders reflect like OpenCV's default.
    Multiplying by the binary mask keeps unknown cells at exactly 0: the blur only fades known cells
    near holes, so the generated content blends into the injected one.
    """
    check_shape(binary, "N 1 h w", "binary")
    if k == 1:
        return binary.float()
    import cv2

    if kind == "gaussian":
        k1 = torch.from_numpy(cv2.getGaussianKernel(k, 0)[:, 0]).float()
    else:
        k1 = torch.full((k,), 1.0 / k)
    kernel = (k1[:, None] * k1[None, :]).to(binary.device)[None, None]
    padded = F.pad(binary.float(), [k // 2] * 4, mode="reflect")  # torch "reflect" = OpenCV REFLECT_101
    return F.conv2d(padded, kernel) * binary


def known_masks(masks: torch.Tensor, factor: int, config: DenoiseConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel and latent masks of a frame matrix (DESIGN.md §5 "Masks").

    masks: bool ``(V, T, 1, H, W)``, True = known. Returns the eroded pixel mask (same shape, bool)
    and the soft latent mask M float ``(V, T, 1, H/f, W/f)`` in [0, 1].
    """
    s = check_shape(masks, "V T 1 H W", "masks")
    flat = masks.flatten(0, 1)  # V*T 1 H W
    pixel = erode(flat, config.erode_size)
    latent = soft_mask(latent_known(pixel, factor, config.threshold), config.soft_mask_k, config.soft_mask_type)
    return pixel.unflatten(0, (s["V"], s["T"])), latent.unflatten(0, (s["V"], s["T"]))


# --------------------------------------------------------------------------------------------------
# the schedule (pure)


@dataclass(frozen=True)
class Pass:
    """One denoising pass t -> t' along ``direction`` that updates ``views`` (all but ``hold``)."""

    direction: str  # TIME (columns), VIEWS (rows in view order) or VIEWS_REVERSED
    views: tuple[int, ...]
    hold: int | None = None  # a view kept as it was before the pass (multi-view stage 2)


def target_views(num_views: int, layout: camera.Layout | str, last_view_idx: int | None) -> tuple[int, ...]:
    """The view(s) denoised to the end in stereo mode: the other eye, or both eyes for middle2leftright."""
    last = num_views - 1 if last_view_idx is None else last_view_idx
    if not 0 <= last < num_views:
        raise ValueError(f"--last_view_idx {last}: the matrix has views 0..{num_views - 1}")
    targets = (0, last) if camera.Layout(layout) is camera.Layout.MIDDLE2LEFTRIGHT else (last,)
    if num_views > 1 and camera.reference_view(num_views, layout) in targets:
        raise ValueError(f"--last_view_idx {last} is the input view for {camera.Layout(layout).value}")
    return targets


def output_views(num_views: int, config: DenoiseConfig) -> tuple[int, ...]:
    """Views decoded at the end: all in multi-view mode, else view 0 and the last view (as the reference)."""
    if config.multiview:
        return tuple(range(num_views))
    last = num_views - 1 if config.last_view_idx is None else config.last_view_idx
    return tuple(sorted({0, last}))


def step_views(t: int, num_views: int, targets: tuple[int, ...], config: DenoiseConfig) -> tuple[int, ...]:
    """Views of the step's first temporal pass: all while t > E, then only the target(s)."""
    return tuple(range(num_views)) if t > config.frame_matrix_end else targets


def resample_plan(t: int, num_views: int, targets: tuple[int, ...], config: DenoiseConfig) -> list[Pass]:
    """The resampling passes after the step from t (DESIGN.md §5, step 3; multi-view stage 2).

    Stereo: R = ``resample`` passes while t > E cycling temporal, rows, temporal, reversed rows; then
    ``last_view_resample`` temporal passes on the target(s). Multi-view (E <= 0), once t <=
    ``fix_last_view_begin``: ``last_view_resample`` temporal passes on the last view, then
    ``stage2_resample`` passes, temporal iff (i + 1) % freq == 0, else rows (forward for even i), with
    the last view held fixed. ``resample == 0`` disables all of it (as the reference).
    """
    if config.resample == 0:
        return []
    every = tuple(range(num_views))
    anchor = targets[-1]
    if config.multiview and t <= config.fix_last_view_begin:
        plan = [Pass(TIME, (anchor,))] * config.last_view_resample
        for i in range(config.stage2_resample):
            if (i + 1) % config.stage2_time_freq == 0:
                plan.append(Pass(TIME, every, hold=anchor))
            else:
                plan.append(Pass(VIEWS if i % 2 == 0 else VIEWS_REVERSED, every, hold=anchor))
        return plan
    if t > config.frame_matrix_end:
        cycle = (TIME, VIEWS, TIME, VIEWS_REVERSED)
        return [Pass(cycle[i % 4], every) for i in range(config.resample)]
    # The reference switches R at t_next < E but the direction at t_next > E; at t == E exactly it
    # would run R temporal passes. We switch both at t > E, which is what DESIGN.md §5 specifies.
    return [Pass(TIME, targets)] * config.last_view_resample


# --------------------------------------------------------------------------------------------------
# model calls


@dataclass
class DenoiseStats:
    """UNet work done, for tests of the schedule and for benchmarks."""

    unet_calls: int = 0
    unet_frames: int = 0  # latent frames through the UNet, the CFG pair counted twice
    calls_per_step: list[int] = field(default_factory=list)
    frames_per_step: list[int] = field(default_factory=list)

    def add(self, other: DenoiseStats) -> None:
        """Count ``other``'s work too (the windows of a long clip)."""
        self.unet_calls += other.unet_calls
        self.unet_frames += other.unet_frames
        self.calls_per_step += other.calls_per_step
        self.frames_per_step += other.frames_per_step


def encode_prompt(model, prompt: str, negative_prompt: str) -> torch.Tensor:
    """CLIP text embeddings ``(2, L, D)``: [negative, prompt] (the negative prompt is CFG's unconditional)."""
    tok = model.tokenizer(
        [negative_prompt, prompt],
        padding="max_length",
        max_length=model.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    return model.text_encoder(tok.input_ids.to(model.device))[0].float()


def vae_posterior(
    model, frames: torch.Tensor, *, max_frames: int = 16, workers: Workers = LOCAL, forward: str = DenoiseConfig().vae_kind
) -> tuple[torch.Tensor, torch.Tensor]:
    """frames ``(N, 3, H, W)`` in [0, 1] -> the VAE posterior's mean and standard deviation ``(N, c, h, w)`` fp32,
    unscaled. ``max_frames`` per VAE call; ``workers``: this process encodes its share of the frames; ``forward``
    (``DenoiseConfig.vae_kind``): diffusers' or ours (``svg3d.vae``, the same numbers, channels-last)."""
    f, ours = model.vae_scale_factor, vae_for(model.vae, forward)
    shape = (frames.shape[0], 2, model.latent_channels, frames.shape[2] // f, frames.shape[3] // f)
    out = torch.zeros(shape, device=frames.device)  # N, (mean, std), c, h, w
    mine = workers.share(frames.shape[0])
    for i in range(mine.start, mine.stop, max_frames):
        j = min(i + max_frames, mine.stop)
        x = (frames[i:j] * 2 - 1).to(model.dtype)
        if ours is not None:
            mean, std = ours.encode(x)
        else:
            dist = model.vae.encode(channels_last_input(model.vae, x)).latent_dist
            mean, std = dist.mean, dist.std
        out[i:j, 0], out[i:j, 1] = mean, std
    out = workers.combine(out)
    return out[:, 0], out[:, 1]


def sample_posterior(model, mean: torch.Tensor, std: torch.Tensor, eps: torch.Tensor | None) -> torch.Tensor:
    """Scaled latents ``scale * (mean + std * eps)`` (any shape; ``eps`` None: the posterior mean)."""
    z = mean if eps is None else mean + std * eps
    return z * model.vae.config.scaling_factor


def decode_latents(
    model, z: torch.Tensor, *, max_frames: int = 16, workers: Workers = LOCAL, forward: str = DenoiseConfig().vae_kind
) -> torch.Tensor:
    """Latent columns ``(N, T, c, h, w)`` -> frames ``(N, T, 3, H, W)`` float32 in [0, 1].

    The SD VAE decodes frame by frame (``max_frames`` per call), with diffusers' forward or ours (``forward``, as
    ``vae_posterior``). The SVD-XT temporal decoder mixes the frames of a clip, so it always gets whole columns
    (as many per call as ``max_frames`` allows), through diffusers' forward. ``workers``: this process decodes its
    share of the frames (of the columns, for the temporal decoder).
    """
    n = check_shape(z, "N T c h w", "z")
    z = z / model.vae.config.scaling_factor
    f = model.vae_scale_factor
    out = torch.zeros((n["N"], n["T"], 3, n["h"] * f, n["w"] * f), device=z.device)
    if model.temporal_vae:
        mine = workers.share(n["N"])
        per_call = max(1, max_frames // n["T"])
        for i in range(mine.start, mine.stop, per_call):
            j = min(i + per_call, mine.stop)
            out[i:j] = (
                model.vae.decode(
                    channels_last_input(model.vae, z[i:j].flatten(0, 1).to(model.dtype)), num_frames=n["T"]
                )
                .sample.float()
                .unflatten(0, (j - i, n["T"]))
            )
    else:
        ours = vae_for(model.vae, forward)
        flat, frames = z.flatten(0, 1), out.view(n["N"] * n["T"], *out.shape[2:])  # frames: a view of out
        mine = workers.share(flat.shape[0])
        for i in range(mine.start, mine.stop, max_frames):
            j = min(i + max_frames, mine.stop)
            x = flat[i:j].to(model.dtype)
            frames[i:j] = ours.decode(x) if ours is not None else model.vae.decode(channels_last_input(model.vae, x)).sample
    out = workers.combine(out)
    return (out / 2 + 0.5).clamp(0, 1)


def pad_to_multiple(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Reflect-pad ``(V, T, C, H, W)`` at the bottom and right up to multiples of ``factor`` (any dtype).

    Reflection (not zeros) gives the VAE and UNet natural content and keeps the mask's known share of the
    border cells; sides shorter than the padding fall back to repeating the edge.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % factor, -w % factor
    if not (ph or pw):
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    flat = x.flatten(0, 1).float()  # V*T C H W: F.pad reflects the last two dims of a 4-d tensor
    return F.pad(flat, (0, pw, 0, ph), mode=mode).to(x.dtype).unflatten(0, x.shape[:2])


@contextmanager
def _resident(module: torch.nn.Module, device: torch.device, offload: bool) -> Iterator[None]:
    """Keep ``module`` on ``device`` inside the block; with ``offload`` it waits on the CPU outside it.

    It is moved in every time (a no-op when it is there), so a model offloaded by one run still works
    in a later run without ``offload``.
    """
    module.to(device)
    try:
        yield
    finally:
        if offload:
            module.to("cpu")


# --------------------------------------------------------------------------------------------------
# the loop


@dataclass
class DenoiseResult:
    """latents: final z ``(V, T, c, h, w)``; known_latents: final S (same shape); latent_mask: M
    ``(V, T, 1, h, w)``; videos: decoded output views, ``view -> (T, 3, H, W)`` float32 in [0, 1]."""

    latents: torch.Tensor
    known_latents: torch.Tensor
    latent_mask: torch.Tensor
    videos: dict[int, torch.Tensor]
    stats: DenoiseStats


class _Denoiser:
    """The state one run shares between passes: model, embeddings, masks, known latents, generators."""

    def __init__(
        self,
        model,
        config: DenoiseConfig,
        emb: torch.Tensor,
        gens: Generators,
        known_cells: torch.Tensor,
        workers: Workers = LOCAL,
    ):
        self.model, self.config, self.emb, self.gens, self.workers = model, config, emb, gens, workers
        self._unet = None  # resolved at the first UNet call (unet3d.unet_for)
        self.known_cells = known_cells.cpu()  # (V, T) bool: M == 1 and every pixel known
        self.num_views, self.num_frames = known_cells.shape
        self.stats = DenoiseStats()
        self.abar = model.scheduler.alphas_cumprod.double()  # float64 for the ratios below
        # DeepCache (config.deep_cache > 1): the step index, the pass index within the step, and per (pass index,
        # call) the UNet batch items and inner-level feature of the last step that ran the whole UNet.
        self.step, self.pass_index = 0, 0
        self.deep: dict[tuple[int, int], tuple[list[int], torch.Tensor]] = {}

    def begin_step(self, i: int) -> None:
        """Step ``i`` of the schedule begins (its passes are counted from 0 for DeepCache)."""
        self.step, self.pass_index = i, 0
        if i % self.config.deep_cache == 0:
            self.deep.clear()  # a whole-UNet step: keep only its own features (at most one pass's worth each)

    def q_sample(self, s: torch.Tensor, t: int, mask: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Inject known content: z <- z (1 - M) + q(S, t) M (fresh noise for q)."""
        a = float(self.abar[t])
        noisy = a**0.5 * s + (1 - a) ** 0.5 * _randn_matrix(s.shape, self.gens.noise)
        return z * (1 - mask) + noisy * mask

    def renoise(self, z: torch.Tensor, t_from: int, t_to: int) -> torch.Tensor:
        """Forward diffusion from t_from to the noisier t_to: sqrt(a) z + sqrt(1 - a) eps, a = abar_to / abar_from."""
        a = float(self.abar[t_to] / self.abar[t_from])
        return a**0.5 * z + (1 - a) ** 0.5 * _randn_matrix(z.shape, self.gens.noise)

    @property
    def unet(self):
        """diffusers' UNet module, or our forward over its weights (``DenoiseConfig.unet``)."""
        if self._unet is None:
            self._unet = unet3d.unet_for(self.model.unet, self.config.unet)
        return self._unet

    def cfg_eps(self, x: torch.Tensor, t) -> torch.Tensor:
        """Classifier-free-guided noise prediction for n columns or rows ``(n, c, F, h, w)``, fp32 in and out.

        The UNet batch items are (item, branch) pairs, branch 0 = the negative prompt (CFG's unconditional), 1 =
        the prompt; a call takes whole pairs, up to ``max_unet_frames`` frames (a column or row is never split),
        batched as [negatives..., prompts...]. With several workers each computes its share of the pairs.
        """
        n, frames = x.shape[0], x.shape[2]
        units = self.workers.share(2 * n)  # unit u: item u // 2, branch u % 2
        per_call = 2 * max(1, self.config.max_unet_frames // (2 * frames))
        out = torch.zeros((2, *x.shape), device=x.device)  # branch, item, c, F, h, w
        for start in range(units.start, units.stop, per_call):
            call = sorted(range(start, min(start + per_call, units.stop)), key=lambda u: (u % 2, u // 2))
            items, branches = [u // 2 for u in call], [u % 2 for u in call]
            hidden = self.emb[branches].to(self.model.dtype)  # [negative] * k + [prompt] * k
            if self.config.deep_cache > 1:
                pred = self._deep_cached(x[items].to(self.model.dtype), t, hidden, call, start)
            else:
                pred = self.unet(x[items].to(self.model.dtype), t, encoder_hidden_states=hidden).sample
            out[branches, items] = pred.float()
            self.stats.unet_calls += 1
        self.stats.unet_frames += 2 * n * frames  # the whole pass's work, whoever computed it
        self.pass_index += 1
        uncond, cond = self.workers.combine(out)
        return uncond + self.config.guidance_scale * (cond - uncond)

    def _deep_cached(self, x: torch.Tensor, t, hidden: torch.Tensor, units: list[int], start: int) -> torch.Tensor:
        """One UNet call under DeepCache (``DenoiseConfig.deep_cache`` = N > 1; not the paper's schedule): on every
        Nth step the whole UNet, keeping its inner-level feature per (pass index in the step, call); on the other
        steps the outer level only around the feature that the same call of the same pass last kept, if it
        covered the same batch items (else the whole UNet again)."""
        key = (self.pass_index, start)
        kept = self.deep.get(key)
        reuse = self.step % self.config.deep_cache != 0 and kept is not None and kept[0] == units
        out, feature = self.unet.forward_deep(x, t, hidden, kept[1] if reuse else None)
        if not reuse:
            self.deep[key] = (units, feature)
        return out

    def run_pass(self, z_in: torch.Tensor, t, p: Pass, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoise ``z_in`` at t to t' along ``p``; views (or cells) not updated take ``keep``.

        Returns (z at t', x0 prediction), both ``(V, T, c, h, w)``; x0 is only meaningful where updated.
        """
        v_count, t_count = self.num_views, self.num_frames
        eps = torch.zeros_like(z_in)
        updated = torch.zeros((v_count, t_count), dtype=torch.bool)
        if p.direction == TIME:
            views = [v for v in p.views if v != p.hold and not self.known_cells[v].all()]
            if views:
                eps[views] = from_columns(self.cfg_eps(to_columns(z_in[views]), t))
            updated[views] = True
        else:
            flip = p.direction == VIEWS_REVERSED  # the reference also reads rows right to left
            rows = [r for r in range(t_count) if not self.known_cells[:, r].all()]
            if rows:
                x = to_rows(z_in[:, rows])  # n c V h w
                e = self.cfg_eps(x.flip(2) if flip else x, t)
                eps[:, rows] = from_rows(e.flip(2) if flip else e)
            updated[:, rows] = True
            if p.hold is not None:
                updated[p.hold] = False
        # One DDPM step over the whole matrix (cheap, elementwise) so its noise does not depend on chunks.
        prev, x0 = self.model.scheduler.step(
            to_columns(eps), t, to_columns(z_in), generator=self.gens.step, return_dict=False
        )
        cells = updated.to(z_in.device)[:, :, None, None, None]
        return torch.where(cells, from_columns(prev), keep), from_columns(x0)


@torch.no_grad()
def denoise_frame_matrix(
    model,
    images: torch.Tensor,
    masks: torch.Tensor,
    prompt: str,
    config: DenoiseConfig | None = None,
    *,
    layout: camera.Layout | str = camera.Layout.LEFT2RIGHT,
    progress: Callable[[int], None] | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    fixed_latents: torch.Tensor | None = None,
    fixed_cells: torch.Tensor | None = None,
    workers: Workers = LOCAL,
) -> DenoiseResult:
    """Fill the holes of a frame matrix by denoising it along time and views (DESIGN.md §5).

    model: ``svg3d.models.Zeroscope``. images: float ``(V, T, 3, H, W)`` in [0, 1] (holes any value).
    masks: bool ``(V, T, 1, H, W)``, True = known. Any H and W: sides that are not multiples of the VAE
    factor f (8) are reflect-padded to ``ceil(H / f) * f`` (the latents have that size) and the decoded
    videos cropped back to H x W.
    layout: where the input view sits (``camera.Layout``), which decides the target view(s).
    progress: called with 1 after each of the ``num_inference_steps`` steps. callback: called after
    each step with (step index, t, z ``(V, T, c, h, w)``), for previews.
    fixed_latents ``(V, T, c, h, w)`` with fixed_cells bool ``(V, T)``: cells whose clean latents are
    given (``denoise_long``'s overlap frames): M = 1 and S = these latents, never re-encoded.
    workers: which share of the UNet and VAE work this process computes (``Workers``; every process of a
    ``svg3d.distributed`` run calls this with the same arguments and gets the same result).
    """
    config = DenoiseConfig() if config is None else config
    s = check_shape(images, "V T 3 H W", "images")
    m = check_shape(masks, "V T 1 H W", "masks")
    if (s["V"], s["T"], s["H"], s["W"]) != (m["V"], m["T"], m["H"], m["W"]):
        raise ValueError(f"images {tuple(images.shape)} and masks {tuple(masks.shape)} disagree")
    v_count, t_count = s["V"], s["T"]
    device, factor, sched = model.device, model.vae_scale_factor, model.scheduler
    targets = target_views(v_count, layout, config.last_view_idx)
    gens = make_generators(config.seed, device)
    images, masks = pad_to_multiple(images, factor), pad_to_multiple(masks, factor)
    lat_shape = (v_count, t_count, model.latent_channels, images.shape[-2] // factor, images.shape[-1] // factor)
    fixed = torch.zeros((v_count, t_count), dtype=torch.bool, device=device)
    if fixed_cells is not None:
        check_shape(fixed_cells, f"{v_count} {t_count}", "fixed_cells")
        check_shape(fixed_latents, " ".join(map(str, lat_shape)), "fixed_latents")
        fixed = fixed_cells.to(device)
    fixed5 = fixed[:, :, None, None, None]

    # 1. Masks: erode the pixel mask and zero the image there; soft latent mask M (1 on fixed cells).
    pixel, mask = known_masks(masks.to(device), factor, config)
    images = images.to(device).float() * pixel
    pixel, mask = pixel | fixed5, torch.where(fixed5, 1.0, mask)

    # 2. Known latents S = scale * VAE.encode(masked frames), for the cells that have known content.
    def encode_cells(frames: torch.Tensor, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The VAE posterior (mean, std) ``(V, T, c, h, w)`` of ``frames`` on ``cells`` ``(V, T)``, zeros elsewhere."""
        mean, std = torch.zeros(lat_shape, device=device), torch.zeros(lat_shape, device=device)
        if cells.any():
            with _resident(model.vae, device, config.offload):
                mean[cells], std[cells] = vae_posterior(
                    model, frames[cells], max_frames=config.max_vae_frames, workers=workers, forward=config.vae_kind
                )
        return mean, std

    def sample(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """S from a posterior: a sample with fresh noise over the whole matrix (``vae_sample``), or its mean."""
        return sample_posterior(model, mean, std, _randn_matrix(lat_shape, gens.vae) if config.vae_sample else None)

    any_known = (mask.flatten(2).amax(dim=2) > 0) & ~fixed  # (V, T): cells to encode
    posterior = encode_cells(images, any_known)
    known = sample(*posterior)
    if fixed_cells is not None:
        known = torch.where(fixed5, fixed_latents.to(device).float(), known)

    # A cell whose every pixel and latent is known is overwritten by each injection: never denoise it.
    whole = pixel.flatten(2).all(dim=2)  # (V, T): every pixel known
    known_cells = whole & (mask.flatten(2) == 1).all(dim=2)
    with _resident(model.text_encoder, device, config.offload):
        emb = encode_prompt(model, prompt, config.negative_prompt)
    den = _Denoiser(model, config, emb, gens, known_cells, workers)

    # 3. Start from pure noise z_T.
    sched.set_timesteps(config.num_inference_steps)
    timesteps = sched.timesteps
    z = _randn_matrix(lat_shape, gens.init)

    for i, t in enumerate(timesteps):
        t_next = int(timesteps[i + 1]) if i + 1 < len(timesteps) else None
        calls0, frames0 = den.stats.unet_calls, den.stats.unet_frames
        den.begin_step(i)

        # 4. Temporal pass over the active views: z_t -> z_t', keep x0.
        active = step_views(int(t), v_count, targets, config)
        z, x0 = den.run_pass(z, t, Pass(TIME, active), keep=z)

        # 5. Disocclusion boundary re-injection: decode x0, paste the known pixels, re-encode as S.
        if config.update_source_latent and int(t) > config.update_source_latent_end:
            views = [v for v in active if not den.known_cells[v].all()]
            if views:
                cells = any_known.clone()
                cells[[v for v in range(v_count) if v not in views]] = False
                # Only cells with unknown pixels change: a cell known in every pixel composites to its masked frame,
                # whose posterior step 2 kept (the re-encode the reference runs would compute it again).
                redo = cells & ~whole
                decoded = torch.zeros_like(images)
                with _resident(model.vae, device, config.offload):
                    if model.temporal_vae:  # it mixes a column's frames: whole columns
                        cols = [v for v in views if redo[v].any()]
                        if cols:
                            decoded[cols] = decode_latents(model, x0[cols], max_frames=config.max_vae_frames, workers=workers)
                    elif redo.any():
                        decoded[redo] = decode_latents(
                            model, x0[redo][None], max_frames=config.max_vae_frames, workers=workers, forward=config.vae_kind
                        )[0]
                composite = torch.where(pixel, images, decoded)
                fresh, redo5 = encode_cells(composite, redo), redo[:, :, None, None, None]
                mean, std = (torch.where(redo5, a, b) for a, b in zip(fresh, posterior, strict=True))
                known = torch.where(cells[:, :, None, None, None], sample(mean, std), known)

        # 6. Resampling ("time travel"): re-noise t' -> t, inject known at t, denoise t -> t' again.
        if t_next is not None:
            for p in resample_plan(int(t), v_count, targets, config):
                z_t = den.q_sample(known, int(t), mask, den.renoise(z, t_next, int(t)))
                z, _ = den.run_pass(z_t, t, p, keep=z)

        # 7. Inject known at t' (clean S after the last step).
        z = z * (1 - mask) + known * mask if t_next is None else den.q_sample(known, t_next, mask, z)

        den.stats.calls_per_step.append(den.stats.unet_calls - calls0)
        den.stats.frames_per_step.append(den.stats.unet_frames - frames0)
        if callback is not None:
            callback(i, int(t), z)
        if progress is not None:
            progress(1)

    # 8. Decode the output views.
    views = output_views(v_count, config)
    with _resident(model.vae, device, config.offload):
        frames = decode_latents(
            model, z[list(views)], max_frames=config.max_vae_frames, workers=workers, forward=config.vae_kind
        )
    frames = frames[..., : s["H"], : s["W"]]  # crop the padding
    log.debug(
        "denoised %d views x %d frames: %d UNet calls, %d frame evaluations",
        v_count,
        t_count,
        den.stats.unet_calls,
        den.stats.unet_frames,
    )
    return DenoiseResult(z, known, mask, dict(zip(views, frames, strict=True)), den.stats)


DEFAULT_OVERLAP = 4  # issue 6: frames each window continues from the previous one


def default_overlap(window: int) -> int:
    """``DEFAULT_OVERLAP``, or ``window - 1`` for windows too short for it (then every window adds a frame)."""
    return max(0, min(DEFAULT_OVERLAP, window - 1))


def window_starts(num_frames: int, window: int, overlap: int) -> list[int]:
    """First frames of the sliding windows over ``num_frames``: every ``window - overlap`` frames, the last
    one aligned to the clip's end (so it may overlap its predecessor by more than ``overlap``)."""
    if window < 1 or not 0 <= overlap < window:
        raise ValueError(f"overlap {overlap} must be >= 0 and smaller than the window ({window} frames)")
    if num_frames <= window:
        return [0]
    return [*range(0, num_frames - window, window - overlap), num_frames - window]


# The exact schedule (50 steps, 8 views x 16 frames at 576x320) on an H100 with our UNet and VAE
# (bench/results/h100-2026-12-07): 183.0 s per window eagerly, 148.5 s compiled by regions; the compile took
# 150.5 s with an empty cache (32.7 s warm).
COMPILE_SAVES_S = 183.0 - 148.5  # per window of that schedule
COMPILE_COLD_S = 150.5


def compile_pays(device: torch.device, unet: str, windows: int, *, steps: int = 50, views: int = 8) -> bool:
    """``DiffusionConfig.compile`` None: compile when the run's ``windows`` save more than a cold compile costs (the
    saving scaled by steps and views from the measured schedule), on CUDA with our UNet (diffusers' compiles whole
    blocks per shape, not measured to pay). Decided from the run's settings alone, never from the cache's state, so
    that a resumed run decides as the first one did (compiled and eager numbers differ within fp16 noise)."""
    if device.type != "cuda" or unet != "ours":
        return False
    return windows * COMPILE_SAVES_S * (steps / 50) * (views / 8) > COMPILE_COLD_S


def window_seed(seed: int, index: int) -> int:
    """Window ``index``'s seed: ``seed`` itself for the first (one window = ``denoise_frame_matrix``),
    then independent seeds derived from (seed, index), so windows do not start from the same noise."""
    if index == 0:
        return seed
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint32)[0])


def window_fixed(final: torch.Tensor, views: Sequence[int], num_views: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What a window of ``length`` frames takes as fixed when its first ``n`` frames are final already.

    final: the final latents ``(len(views), n, c, h, w)`` of those frames for the output ``views``.
    Returns ``fixed_cells`` bool ``(V, length)`` and ``fixed_latents`` ``(V, length, c, h, w)`` for
    ``denoise_frame_matrix``: the output views' first n cells hold their final latents (M = 1).
    """
    n = check_shape(final, f"{len(views)} N c h w", "final")["N"]
    fixed_cells = torch.zeros((num_views, length), dtype=torch.bool)
    fixed_cells[list(views), :n] = True
    fixed_latents = torch.zeros((num_views, length, *final.shape[2:]))
    fixed_latents[list(views), :n] = final.float().cpu()
    return fixed_cells, fixed_latents


def denoise_windows(
    model,
    cells: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]],
    final: Callable[[int, int], torch.Tensor],
    prompt: str,
    config: DenoiseConfig | None = None,
    *,
    num_frames: int,
    num_views: int,
    window: int = 16,
    overlap: int | None = None,
    resume: int = 0,
    layout: camera.Layout | str = camera.Layout.LEFT2RIGHT,
    progress: Callable[[int], None] | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    workers: Workers = LOCAL,
) -> Iterator[tuple[int, int, DenoiseResult]]:
    """``denoise_frame_matrix`` over a clip of ``num_frames`` frames in sliding windows of ``window`` frames: the
    one window loop (``denoise_long`` in memory, the ``denoised`` stage and ``svg.py`` into a store).

    cells(a, b): images ``(V, n, 3, H, W)`` and masks ``(V, n, 1, H, W)`` of frames ``a .. b-1`` (as
    ``denoise_frame_matrix``). Windows start at ``window_starts(num_frames, window, overlap)`` (overlap None:
    ``default_overlap(window)``). In every window after the first, the frames the previous windows produced are
    fixed for the output views: ``final(a, b)`` gives their final latents ``(len(output_views), n, c, h, w)``
    (the caller keeps them), so the model continues them and the seam frames are identical in both windows.
    Window k uses ``window_seed(config.seed, k)``. ``resume``: frames ``0 .. resume-1`` are final already (a
    resumed run): the windows that end there are skipped. Yields ``(start, done, result)`` per window computed:
    its first frame, the first frame of it that is new (``result``'s frames from ``done - start`` on), and
    ``denoise_frame_matrix``'s result. ``progress``, ``callback``, ``workers``: as ``denoise_frame_matrix``.
    """
    config = DenoiseConfig() if config is None else config
    overlap = default_overlap(window) if overlap is None else overlap
    views = output_views(num_views, config)
    done = 0  # frames [0, done) are final
    for k, start in enumerate(window_starts(num_frames, window, overlap)):
        end = min(start + window, num_frames)
        if end <= resume:
            done = end
            continue
        fixed_latents = fixed_cells = None
        if done > start:  # the overlap: frames [start, done) are final already
            fixed_cells, fixed_latents = window_fixed(final(start, done), views, num_views, end - start)
        images, masks = cells(start, end)
        result = denoise_frame_matrix(
            model, images, masks, prompt, replace(config, seed=window_seed(config.seed, k)), layout=layout, progress=progress,
            callback=callback, fixed_latents=fixed_latents, fixed_cells=fixed_cells, workers=workers,
        )  # fmt: skip
        yield start, done, result
        done = end


@torch.no_grad()
def denoise_long(
    model,
    images: torch.Tensor,
    masks: torch.Tensor,
    prompt: str,
    config: DenoiseConfig | None = None,
    *,
    window: int = 16,
    overlap: int | None = None,
    layout: camera.Layout | str = camera.Layout.LEFT2RIGHT,
    progress: Callable[[int], None] | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    workers: Workers = LOCAL,
) -> DenoiseResult:
    """``denoise_frame_matrix`` over a clip of any length held in memory, in sliding windows (``denoise_windows``).

    images ``(V, T, 3, H, W)``, masks ``(V, T, 1, H, W)``: as ``denoise_frame_matrix``, any T. Depth normalisation
    is clip-wide because the frame matrix was built for the whole clip. Returns the whole clip: latents, known
    latents and mask ``(V, T, ...)`` and the videos ``(T, 3, H, W)``, all on the CPU; ``progress`` ticks
    ``num_inference_steps`` times per window and ``callback`` gets each window's own step indices and z.
    """
    config = DenoiseConfig() if config is None else config
    s = check_shape(images, "V T 3 H W", "images")
    v_count, t_count = s["V"], s["T"]
    views = list(output_views(v_count, config))
    parts: list[DenoiseResult] = []
    stats = DenoiseStats()

    def final(a: int, b: int) -> torch.Tensor:  # the last b - a frames kept (b: the frames done)
        tail = [parts[-1].latents]  # the aligned last window can reach back past its predecessor
        while sum(x.shape[1] for x in tail) < b - a:
            tail.insert(0, parts[-1 - len(tail)].latents)
        return torch.cat(tail, dim=1)[views, a - b :]

    for start, done, result in denoise_windows(
        model, lambda a, b: (images[:, a:b], masks[:, a:b]), final, prompt, config, num_frames=t_count, num_views=v_count,
        window=window, overlap=overlap, layout=layout, progress=progress, callback=callback, workers=workers,
    ):  # fmt: skip
        new = done - start  # the first frame of this window that is not final yet
        parts.append(
            DenoiseResult(
                result.latents[:, new:].cpu(),
                result.known_latents[:, new:].cpu(),
                result.latent_mask[:, new:].cpu(),
                {v: x[new:].cpu() for v, x in result.videos.items()},
                result.stats,
            )
        )
        stats.add(result.stats)
    return DenoiseResult(
        torch.cat([p.latents for p in parts], dim=1),
        torch.cat([p.known_latents for p in parts], dim=1),
        torch.cat([p.latent_mask for p in parts], dim=1),
        {v: torch.cat([p.videos[v] for p in parts]) for v in views},
        stats,
    )


def text_to_video(
    model,
    prompt: str,
    *,
    num_frames: int,
    height: int,
    width: int,
    config: DenoiseConfig | None = None,
    progress: Callable[[int], None] | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Stage 0: a monocular clip ``(T, 3, H, W)`` float32 in [0, 1] from a prompt, with the same model.

    It is the frame-matrix loop on a single view with nothing known and no resampling or re-injection,
    which is plain text-to-video DDPM sampling (tested against diffusers' scheduler step by step).
    """
    images = torch.zeros((1, num_frames, 3, height, width))
    masks = torch.zeros((1, num_frames, 1, height, width), dtype=torch.bool)
    plain = replace(config or DenoiseConfig(), resample=0, update_source_latent=False, last_view_idx=None)
    result = denoise_frame_matrix(model, images, masks, prompt, plain, progress=progress, callback=callback)
    return result.videos[0]
