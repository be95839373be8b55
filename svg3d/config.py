"""Every stage's settings, in one light module: the one source of every default and every choice.

Each stage has a frozen dataclass with a comment on every default saying where it comes from; the
command lines read their defaults and choices from here (``default``), so a default is written once.
This module imports no torch, so that ``--help`` stays instant. Invalid values raise ``InputError``
naming the parameter (``InputError.params``), which each CLI rewrites into its own flag name.

``ConvertConfig`` is ``convert``'s: made of the stage configs, with ``convert``'s own defaults where they
differ from the seed scripts' (the paper's) — the 3D effect by strength and screen plane, depth ranges
per shot, lossless intermediates.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from . import camera, comfort
from .camera import Layout
from .checks import InputError
from .encode import EncoderSettings
from .layouts import ANAGLYPHS, DEFAULT_EXPORTS, EXPORTS

DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"  # Apache-2.0; the paper used v1 ViT-L
ZEROSCOPE = "cerspense/zeroscope_v2_576w"  # the paper's video model
FLOW_CHOICES = ("auto", "raft", "raft_small", "dis", "torch")  # dis: OpenCV's, on the CPU; torch: ours, on any device
RAFT_ITERATIONS = 32  # the reference calls RAFT with iters=32 (torchvision's default is 12)
FILLER_CHOICES = ("auto", "classical", "diffusion", "telea", "previous")  # "auto" + svg3d.stages.fill.REGISTRY, kept light here
DEPTH_RANGE_CHOICES = ("shot", "clip")
NAMINGS = ("svg3d", "iw3")  # export file names: ours, or iw3's (for players set up for iw3's files)
DEPTH_KINDS = ("inverse", "disparity", "depth")  # what --depth-from maps hold (DepthConfig.depth_kind)
DDPM_TIMESTEPS = 1000  # zeroscope's DDPM scheduler is trained on 1000 timesteps: no more inference steps exist
UNET_KINDS = ("diffusers", "ours")  # the UNet3D forward the denoiser calls (svg3d.unet3d: ours)
DEFAULT_UNET = "ours"  # the one place the default forward is chosen: ours ran the schedule in 183 s per clip eagerly on an H200, diffusers' in 209 (issue 22)


def default(cls: type, name: str):
    """The default of field ``name`` of the dataclass ``cls`` (CLIs build their help and defaults from it)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise KeyError(f"{cls.__name__} has no field {name}")


def _check(rules: list[tuple[bool, str | tuple[str, ...], str]]) -> None:
    """Raise ``InputError`` for the first failed rule ``(ok, parameter(s), message)``; the message follows the
    (first) parameter's name and may name the others."""
    for ok, param, message in rules:
        if not ok:
            params = (param,) if isinstance(param, str) else param
            raise InputError(f"{params[0]} {message}", params=params)


def _finite(x: float | None) -> bool:
    return x is None or math.isfinite(x)


@dataclass(frozen=True)
class ClipConfig:
    """Which frames of the input are converted, and at what size."""

    start_frame: int = 0  # first input frame used
    num_frames: int | None = None  # frames from there; None = to the end
    size: tuple[int, int] | None = None  # (height, width) to resize to (area); None = as the input
    fps: float | None = None  # a folder of frames' rate; None: its fps.txt, else io.DEFAULT_FPS (8, zeroscope's)

    def __post_init__(self) -> None:
        _check([
            (self.fps is None or (math.isfinite(self.fps) and 0 < self.fps <= 1000), "fps", f"{self.fps}: must be in (0, 1000] frames per second"),
            (self.start_frame >= 0, "start_frame", f"{self.start_frame}: must be >= 0"),
            (self.num_frames is None or self.num_frames >= 1, "num_frames", f"{self.num_frames}: must be >= 1"),
            (self.size is None or min(self.size) >= 16, "size", f"{self.size}: both sides must be >= 16 px"),
        ])  # fmt: skip


@dataclass(frozen=True)
class DepthConfig:
    """Stage 1: where disparity comes from, and the resolution it is kept at."""

    model: str = DEFAULT_DEPTH_MODEL  # a depth checkpoint in transformers' format (Depth Anything: ours): hub id or local folder
    depth_from: Path | None = None  # a folder of one depth map per frame instead of the model
    # What depth_from's maps hold: "inverse" relative inverse depth (larger = nearer, what depth networks give),
    # "disparity" stereo disparity in pixels (proportional to inverse depth: read as it is), "depth" distance
    # (larger = farther: inverted on reading).
    depth_kind: str = "inverse"
    batch_size: int = 4  # frames per forward pass; memory only, results do not depend on it
    # Depth is kept with its short side at most this (px): Depth Anything predicts at 518 px, so a
    # larger map holds no more detail, and a 1080p frame's map takes 4x less disk and stabilisation time.
    resolution: int = 518

    def __post_init__(self) -> None:
        _check([
            (self.batch_size >= 1, "depth_batch_size", f"{self.batch_size}: must be >= 1"),
            (self.depth_kind in DEPTH_KINDS, "depth_kind", f"{self.depth_kind}: expected one of {', '.join(DEPTH_KINDS)}"),
            (self.resolution >= 16, "depth_resolution", f"{self.resolution}: must be >= 16 px"),
        ])  # fmt: skip


@dataclass(frozen=True)
class StabiliseConfig:
    """Stage 2 settings; defaults are the reference's (``svg_enhance_depth.py``) and DESIGN.md §3."""

    window_size: int = 3  # --window_size: offsets -1, 0, +1; odd
    decay: float = 0.5  # neighbour weight decay^|k| (the reference's kernel, its "eps = 1")
    rgb_threshold: float = 20.0  # --rgb_threshold: max-channel colour difference, 0-255 scale
    depth_ratio: float = 0.5  # consistency_check: |d_k - d_i| <= 0.5 * (max - min) of d_k
    radius: int = 30  # guided filter radius: spatial_smoothness(radius_whole=30)
    eps: float = 1e-4  # guided filter epsilon: spatial_smoothness(epsilon=0.0001)
    pairs_per_batch: int = 8  # flow pairs per backend call: bounds memory, results do not depend on it
    # the backward flows (i -> i - k) as the inverse of the forward ones (i - k -> i) (flow.invert_flow), not computed:
    # half the flows; flicker and error to the true depth within 0.2 % of computed ones on bench_stabilise's scenes
    invert_flows: bool = True

    def __post_init__(self) -> None:
        _check([
            (self.window_size >= 1 and self.window_size % 2 == 1, "window_size", f"{self.window_size}: must be odd and >= 1"),
            (0 < self.decay <= 1, "decay", f"{self.decay}: must be in (0, 1]"),
            (self.rgb_threshold >= 0, "rgb_threshold", f"{self.rgb_threshold}: must be >= 0"),
            (self.depth_ratio >= 0, "depth_ratio", f"{self.depth_ratio}: must be >= 0"),
            (self.radius >= 0, "radius", f"{self.radius}: must be >= 0"),
            (self.eps > 0, "eps", f"{self.eps}: must be > 0 (eps = 0 divides by zero on flat regions)"),
            (self.pairs_per_batch >= 1, "pairs_per_batch", f"{self.pairs_per_batch}: must be >= 1"),
        ])  # fmt: skip

    @property
    def half_window(self) -> int:
        return self.window_size // 2


@dataclass(frozen=True)
class TorchFlowConfig:
    """Our own flow (``flow.TorchFlow``); defaults are OpenCV DIS's MEDIUM preset where it has the setting."""

    patch_size: int = 9  # px, odd: DIS MEDIUM's 8, made odd so that a pixel's patch is centred on it
    # pyramid level the flow is computed at, then upsampled: 0 = full size. DIS MEDIUM stops at 1 (half size), where
    # ours is ~5x faster and less accurate on the rendered scenes (bench_flow, 320x180: mean EPE 0.196 px, not 0.175)
    finest_level: int = 0
    # Gauss-Newton steps of the inverse search per level, each after a spatial propagation: DIS MEDIUM does 25; with
    # a propagation before every step (DIS: one per patch) 10 are as accurate on the rendered scenes (25: 0.193 px)
    descent_iterations: int = 10
    # added to the diagonal of the patch Hessian (a mean over the patch, grey levels^2 per px): damped Gauss-Newton
    # steps, as a gradient of ~30 grey levels/px; patches with little texture or only an edge (aperture) keep the
    # coarser level's flow. Mean EPE on the rendered scenes at 320x180 (bench_flow): 100 -> 0.20 px, 1000 -> 0.175
    # (1 -> 0.55, 1e4 as 1000, before the propagation and at half size)
    hessian_eps: float = 1000.0
    refine_iterations: int = 5  # fixed-point steps of the variational refinement per level: DIS MEDIUM's
    sor_iterations: int = 5  # red-black SOR sweeps per fixed-point step: OpenCV's VariationalRefinement's
    omega: float = 1.6  # SOR over-relaxation: OpenCV's
    # smoothness weight (grey levels in [0, 255]): DIS MEDIUM's is 20; 40 is 0.01 px better on the rendered scenes,
    # whose surfaces are smooth (real footage has more motion edges: no more than that)
    alpha: float = 40.0
    delta: float = 5.0  # brightness constancy weight: DIS MEDIUM's (its gradient constancy term is left out: flow._refine)
    cuda_graphs: bool = True  # on CUDA, replay each call's kernels from a graph recorded per shape (graphs.CudaGraphs)

    def __post_init__(self) -> None:
        _check([
            (self.patch_size >= 3 and self.patch_size % 2 == 1, "patch_size", f"{self.patch_size}: must be odd and >= 3"),
            (self.finest_level >= 0, "finest_level", f"{self.finest_level}: must be >= 0"),
            (self.descent_iterations >= 0, "descent_iterations", f"{self.descent_iterations}: must be >= 0"),
            (self.hessian_eps > 0, "hessian_eps", f"{self.hessian_eps}: must be > 0"),
            (self.refine_iterations >= 0, "refine_iterations", f"{self.refine_iterations}: must be >= 0"),
            (self.sor_iterations >= 1, "sor_iterations", f"{self.sor_iterations}: must be >= 1"),
            (0 < self.omega < 2, "omega", f"{self.omega}: must be in (0, 2)"),
            (self.alpha >= 0, "alpha", f"{self.alpha}: must be >= 0"),
            (self.delta >= 0, "delta", f"{self.delta}: must be >= 0"),
        ])  # fmt: skip


@dataclass(frozen=True)
class MatrixConfig:
    """How to build a frame matrix: the views, the camera, how disparity becomes depth (stage 3).

    Defaults are the paper's (``create_frame_matrix.py``): a physical camera of ``max_baseline`` metres
    and ``focal`` pixels over depth normalised into [0.91, 10] m for the whole clip. With ``strength``
    set (``convert``'s default), the baseline and the screen plane come from the effect instead
    (``camera.effect_camera``); ``max_baseline`` is then derived per clip.
    """

    num_views: int | None = 8  # cameras from the input to the other eye (SVG README: 8); None: the plan's choice
    max_baseline: float = camera.DEFAULT_BASELINE  # metres between the two eyes (paper: 7 cm)
    layout: Layout = Layout.LEFT2RIGHT  # input = left eye, as the seed commands use
    focal: float | None = None  # pixels; None = 800 at 576 px wide, scaled with the width
    nearest_depth: float = -1.0  # metres; <= 0: the nearest point lands at ~0.91 m (reference)
    farest_depth: float = camera.DEFAULT_FAREST_DEPTH  # metres; the farthest point
    metric_depth: bool = False  # depth files hold inverse metric depth (1/m), not relative disparity
    num_planes: int = 4  # depth layers of the crack clean-up (reference)
    lossless: bool = False  # PNG instead of the reference's JPEG (JPEG bleeds colour into holes)
    strength: float | None = None  # % of the width between nearest and farthest (camera.effect_camera); None: physical
    convergence: float | None = None  # screen plane in the depth range, 0 far .. 1 near; None: at infinity (paper)
    depth_range: str = "clip"  # normalise disparity over the whole clip (reference) or per shot (svg3d.shots)
    # the comfort of the effect (svg3d.comfort, docs/comfort.md); they act when the effect is set by strength
    screen: str = comfort.DEFAULT_SCREEN  # the viewing situation whose disparity budget limits the effect: a
    # comfort.SCREENS name or "WIDTH,DISTANCE" (metres); "default" is the +-1.25 % convert always had
    auto_strength: bool = False  # the strength per shot from the budget and the shot's depth (``strength`` is then not used)
    window_violations: str = "screen"  # an object cut by the frame edge in front of the screen: move the screen
    # plane in front of it ("screen"), a floating window ("float"), or leave it ("off"); comfort.WINDOW_CHOICES

    def __post_init__(self) -> None:
        layout = Layout(self.layout)
        try:
            comfort.parse_screen(self.screen)
        except ValueError as e:
            raise InputError(f"screen {e}", params=("screen",)) from None
        _check([
            (self.num_views is None or self.num_views >= 2, "num_views", f"{self.num_views}: need at least 2 (the eyes)"),
            (self.num_views is None or self.num_views >= 3 or layout is not Layout.MIDDLE2LEFTRIGHT, "num_views",
             f"{self.num_views}: the middle2leftright layout needs at least 3 (the eyes and the input between them)"),
            (math.isfinite(self.max_baseline) and self.max_baseline > 0, "max_baseline", f"{self.max_baseline}: must be a finite number > 0 (metres)"),
            (self.focal is None or (math.isfinite(self.focal) and self.focal > 0), "focal", f"{self.focal}: must be a finite number > 0 (pixels)"),
            (_finite(self.nearest_depth), "nearest_depth", f"{self.nearest_depth}: must be finite"),
            (_finite(self.farest_depth), "farest_depth", f"{self.farest_depth}: must be finite"),
            (not (self.nearest_depth > 0 and self.farest_depth > 0) or self.nearest_depth < self.farest_depth, ("nearest_depth", "farest_depth"),
             f"{self.nearest_depth} must be smaller than farest_depth {self.farest_depth} (metres)"),
            (self.num_planes >= 2, "num_planes", f"{self.num_planes}: need at least 2"),
            (self.strength is None or (math.isfinite(self.strength) and 0 < self.strength <= 20), "strength",
             f"{self.strength}: must be in (0, 20] (% of the width)"),
            (self.convergence is None or (math.isfinite(self.convergence) and 0 <= self.convergence <= 1), "convergence",
             f"{self.convergence}: must be in [0, 1] (0: screen at the farthest point, 1: at the nearest)"),
            (self.depth_range in DEPTH_RANGE_CHOICES, "depth_range", f"{self.depth_range}: expected {' or '.join(DEPTH_RANGE_CHOICES)}"),
            (self.strength is None and not self.auto_strength or self.max_baseline == camera.DEFAULT_BASELINE, ("max_baseline", "strength"),
             f"{self.max_baseline}: the effect by strength derives the baseline; give the strength or the physical camera's baseline, not both"),
            (not (self.strength is not None and self.metric_depth), "strength",
             "sets the effect from relative depth; with metric_depth give the physical camera (max_baseline, focal) instead"),
            (not (self.auto_strength and self.metric_depth), "auto_strength",
             "sets the effect from relative depth; with metric_depth give the physical camera (max_baseline, focal) instead"),
            (self.window_violations in comfort.WINDOW_CHOICES, "window_violations", f"{self.window_violations}: expected one of {', '.join(comfort.WINDOW_CHOICES)}"),
        ])  # fmt: skip


@dataclass(frozen=True)
class DenoiseConfig:
    """Stage 4's settings. Defaults are the reference's flags unless a comment says otherwise.

    "ref" below is the authors' ``svg.py``; where its two published versions differ we follow
    DESIGN.md §5 and say which version the value comes from.
    """

    num_inference_steps: int = 50  # ref --num_inference_steps
    guidance_scale: float = 7.5  # ref denoising_process(guidance_scale=7.5); DESIGN §5
    negative_prompt: str = "low-quality, blurry, flickering, ghost"  # ref --negative_prompt
    threshold: float = 0.7  # ref --threshold (first release); a latent cell is known if its 8x8 mean >= it
    erode_size: int = 3  # ref --erode_size of the latest release (the first had 1); DESIGN §5 "erode 3x3"
    soft_mask_k: int = 5  # ref --soft_mask_k
    soft_mask_type: str = "gaussian"  # ref --soft_mask_type ("gaussian" or "box")
    resample: int = 6  # ref --resample (first release); R while t > E. 0 disables all resampling
    frame_matrix_end: int = 500  # ref --frame_matrix_end (latest release); DESIGN §5. <= 0: multi-view mode
    last_view_resample: int = 2  # ref --last_view_resample; R once t <= E, and stage-2 passes on the last view
    fix_last_view_begin: int = 600  # ref --fix_last_view_begin; multi-view stage 2 starts at t <= this
    stage2_resample: int = 4  # ref --stage2_resample
    stage2_time_freq: int = (
        3  # ref --stage2_time_direction_denoise_freq: stage-2 pass i is temporal iff (i+1) % this == 0
    )
    update_source_latent: bool = True  # ref --update_source_latent: disocclusion boundary re-injection
    update_source_latent_end: int = 0  # ref --update_source_latent_end: re-inject while t > this
    last_view_idx: int | None = None  # ref --last_view_idx (7 = V - 1 for 8 views); None = V - 1
    vae_sample: bool = True  # ref images2latents(use_mean=False): S is a posterior sample, not the mean
    seed: int = 42  # ref generator=torch.manual_seed(42)
    max_unet_frames: int = 256  # ours: latent frames per UNet call, CFG's pair counted (one 8x16 pass)
    max_vae_frames: int = 16  # ours (ref --low_ram_vae): frames per VAE call
    offload: bool = False  # ours: the text encoder and the VAE wait on the CPU while they are idle
    unet: str = DEFAULT_UNET  # ours (issue 13): "diffusers" (its UNet3D forward) or "ours" (svg3d.unet3d: the same
    # numbers within fp16 noise, channels-last; the default since issue 22 measured it faster)
    vae_forward: str | None = None  # ours (issue 22): the SD VAE's forward, diffusers' or ours (svg3d.vae: the same
    # numbers within fp16 noise, channels-last); None: the same kind as unet. The SVD-XT decoder always runs diffusers'
    deep_cache: int = 1  # ours (issue 22), an option beyond the exact schedule, off (1): with N > 1 only every Nth
    # step runs the whole UNet; the steps between reuse each UNet call's inner-level features from that step and
    # recompute the outermost level (DeepCache, Ma et al. 2024). Needs unet="ours"; quality unmeasured (no weights)

    def __post_init__(self) -> None:
        _check([
            (self.num_inference_steps >= 1, "num_inference_steps", f"{self.num_inference_steps}: must be >= 1"),
            (math.isfinite(self.guidance_scale), "guidance_scale", f"{self.guidance_scale}: must be finite"),
            (0.0 <= self.threshold <= 1.0, "threshold", f"{self.threshold}: must be in [0, 1]"),
            (self.erode_size >= 1 and self.erode_size % 2 == 1, "erode_size", f"{self.erode_size}: must be odd and >= 1 (1 = no erosion)"),
            (self.soft_mask_k >= 1 and self.soft_mask_k % 2 == 1, "soft_mask_k", f"{self.soft_mask_k}: must be odd and >= 1 (1 = hard mask)"),
            (self.soft_mask_type in ("gaussian", "box"), "soft_mask_type", f"{self.soft_mask_type}: must be gaussian or box"),
            (self.resample >= 0, "resample", f"{self.resample}: must be >= 0"),
            (self.last_view_resample >= 0, "last_view_resample", f"{self.last_view_resample}: must be >= 0"),
            (self.stage2_resample >= 0, "stage2_resample", f"{self.stage2_resample}: must be >= 0"),
            (self.stage2_time_freq >= 1, "stage2_time_freq", f"{self.stage2_time_freq}: must be >= 1"),
            (self.seed >= 0, "seed", f"{self.seed}: must be >= 0"),
            (self.max_unet_frames >= 1, "max_unet_frames", f"{self.max_unet_frames}: must be >= 1"),
            (self.max_vae_frames >= 1, "max_vae_frames", f"{self.max_vae_frames}: must be >= 1"),
            (self.unet in UNET_KINDS, "unet", f"{self.unet}: expected one of {', '.join(UNET_KINDS)}"),
            (self.vae_forward in (None, *UNET_KINDS), "vae_forward", f"{self.vae_forward}: expected one of {', '.join(UNET_KINDS)}"),
            (self.deep_cache >= 1, "deep_cache", f"{self.deep_cache}: must be >= 1 (1 = off)"),
            (self.deep_cache == 1 or self.unet == "ours", "deep_cache", f"{self.deep_cache}: needs unet ours"),
        ])  # fmt: skip

    @property
    def multiview(self) -> bool:
        """Multi-view mode (seed README): every view is denoised to the end and saved."""
        return self.frame_matrix_end <= 0

    @property
    def vae_kind(self) -> str:
        """The SD VAE's forward the loop runs: ``vae_forward``, by default the same kind as ``unet``."""
        return self.vae_forward or self.unet


@dataclass(frozen=True)
class DiffusionConfig:
    """Hole filling by frame-matrix denoising (``svg3d.stages.fill.diffusion``): what ``convert`` sets on top of
    ``denoise.DenoiseConfig`` (whose own defaults are the reference's)."""

    model: str = ZEROSCOPE  # hub id or local folder in the diffusers layout
    prompt: str = ""  # text describing the video; empty: unconditional, guided away from the negative prompt
    steps: int = 50  # DDPM steps (reference)
    seed: int = 42  # reference
    window: int = 16  # frames denoised together (the reference's clip length)
    overlap: int | None = None  # frames each window continues from the previous one; None: 4 (at most window - 1)
    size: tuple[int, int] = (320, 576)  # (H, W) the matrix is denoised at: zeroscope's native size; aspect kept by padding
    offload: bool = False  # the idle text encoder and VAE wait on the CPU
    max_unet_frames: int = 256  # latent frames per UNet call, CFG pair counted; lower saves GPU memory
    vae_frames: int = 16  # frames per VAE call; lower saves GPU memory
    # torch.compile: diffusers' blocks, or our repeated blocks + CUDA graphs (cached per machine); None: on CUDA with
    # our UNet when the run's windows repay a cold compile (denoise.compile_pays), else not
    compile: bool | None = None
    unet: str = DEFAULT_UNET  # the UNet3D forward: diffusers' or ours (svg3d.unet3d, the same numbers, channels-last)
    deep_cache: int = 1  # DenoiseConfig.deep_cache: an option beyond the paper's schedule, off (1); needs unet "ours"

    def __post_init__(self) -> None:
        _check([
            (1 <= self.steps <= DDPM_TIMESTEPS, "steps", f"{self.steps}: must be in 1 .. {DDPM_TIMESTEPS} (the scheduler's timesteps)"),
            (self.unet in UNET_KINDS, "unet", f"{self.unet}: expected one of {', '.join(UNET_KINDS)}"),
            (self.seed >= 0, "seed", f"{self.seed}: must be >= 0"),
            (self.window >= 1, "window", f"{self.window}: must be >= 1"),
            (self.overlap is None or 0 <= self.overlap < self.window, ("overlap", "window"), f"{self.overlap}: must be >= 0 and smaller than window {self.window}"),
            (min(self.size) >= 16 and self.size[0] % 8 == 0 and self.size[1] % 8 == 0, "diffusion_size",
             f"{self.size[1]}x{self.size[0]}: both sides must be multiples of 8 and >= 16"),
            (self.max_unet_frames >= 1, "max_unet_frames", f"{self.max_unet_frames}: must be >= 1"),
            (self.vae_frames >= 1, "vae_frames", f"{self.vae_frames}: must be >= 1"),
            (self.deep_cache >= 1, "deep_cache", f"{self.deep_cache}: must be >= 1 (1 = off)"),
            (self.deep_cache == 1 or self.unet == "ours", ("deep_cache", "unet"), f"{self.deep_cache}: needs --unet ours"),
        ])  # fmt: skip

    @property
    def window_overlap(self) -> int:
        """The overlap the windows use: ``overlap``, or its default for ``window`` (4, at most window - 1)."""
        return max(0, min(4, self.window - 1)) if self.overlap is None else self.overlap


BORDER_CHOICES = ("mirror", "stretch", "float", "inpaint")


@dataclass(frozen=True)
class FillConfig:
    """Settings of ``fill_views``; defaults measured on real stereo captures (bench/bench_fill_real.py) and
    rendered moving-camera scenes (bench/bench_fill.py)."""

    window: int = 6  # frames before AND after searched along the scene's motion (step 2); 9 gained 0.2-0.5 dB for 13 % more time
    flow_width: int = 288  # px: the source's flow is computed at this width (the full width if narrower): half of 576, ~4 ms a DIS pair
    flow_margin: float = 0.02  # x frame width: the background's motion is read this far from the occluder's edge (past DIS's blur across it)
    depth_tolerance: float = 0.08  # relative: a sample is the hole's background if its depth is within this of the expected depth
    colour_tolerance: float = 24 / 255  # the flow's reference point must keep its colour (mean over channels) from frame to frame
    decay: float = 0.6  # weight of a frame k away: decay^(k-1), nearer frames (less flow error) count more
    border: str = "stretch"  # the out-of-view band: BORDER_CHOICES (classical's docstring); stretch won on real captures (bench_fill_real)
    smooth: int = 3  # step 5: filled pixels average the first passes of this many frames each side, along the scene's motion
    smooth_decay: float = 0.9  # step 5: weight of a frame k away: smooth_decay^k (flatter than step 2's: guesses average over more frames)
    guess_weight: float = 0.3  # step 5: weight of a spatial guess (steps 3-4) against a pixel seen in another frame

    def __post_init__(self) -> None:
        checks = [
            ("window", self.window, isinstance(self.window, int) and self.window >= 0, "an integer >= 0 (0: nothing from other frames)"),
            ("flow_width", self.flow_width, self.flow_width >= 16, ">= 16 px"),
            ("flow_margin", self.flow_margin, 0 <= self.flow_margin < 0.5, "in [0, 0.5) of the width"),
            ("depth_tolerance", self.depth_tolerance, 0 < self.depth_tolerance < 1, "in (0, 1)"),
            ("colour_tolerance", self.colour_tolerance, self.colour_tolerance > 0, "> 0"),
            ("decay", self.decay, 0 < self.decay <= 1, "in (0, 1]"),
            ("border", self.border, self.border in BORDER_CHOICES, f"one of {', '.join(BORDER_CHOICES)}"),
            ("smooth", self.smooth, isinstance(self.smooth, int) and self.smooth >= 0, "an integer >= 0 (0: no step 5)"),
            ("smooth_decay", self.smooth_decay, 0 < self.smooth_decay <= 1, "in (0, 1]"),
            ("guess_weight", self.guess_weight, 0 < self.guess_weight <= 1, "in (0, 1]"),
        ]
        for name, value, ok, expected in checks:
            if not ok:
                raise InputError(f"{name} {value!r}: expected {expected}", params=(name,))

    @property
    def context(self) -> int:
        """Frames of context needed on EACH side of the frames to fill: step 2's window, plus step 5's frames around."""
        return self.window + self.smooth


def _convert_matrix() -> MatrixConfig:
    """``convert``'s matrix: the effect by strength and screen plane, ranges per shot, views by the plan."""
    return MatrixConfig(
        num_views=None, strength=camera.DEFAULT_STRENGTH, convergence=camera.DEFAULT_CONVERGENCE, depth_range="shot", lossless=True
    )


@dataclass(frozen=True)
class ExportSettings:
    """Which exports to write and how (``--exports --naming --anaglyph --vr180-fov --vr180-size`` and the encoder flags)."""

    exports: tuple[str, ...] = DEFAULT_EXPORTS  # layouts.DEFAULT_EXPORTS says why these
    encoder: EncoderSettings = field(default_factory=EncoderSettings)  # every video export's codec, quality, container
    naming: str = "svg3d"  # "svg3d": our suffixes; "iw3": iw3's, for tools and players set up for iw3's files
    anaglyph: str = "dubois"  # the anaglyph kind (ANAGLYPHS): Dubois red-cyan ghosts least
    vr180_fov: float | None = None  # degrees, horizontal field of view of the input; None: from the focal given to the writer
    vr180_size: int | None = None  # pixels of each eye's width; None: the input's resolution at its centre, <= 2048
    preview: bool = True  # <stem>_preview.png: the first stereo pair side by side

    def __post_init__(self):
        unknown = [n for n in self.exports if n not in EXPORTS]
        if unknown or not self.exports:
            raise InputError(f"--exports: unknown export {', '.join(unknown) or '(none given)'}; choose from {', '.join(EXPORTS)}")
        if len(set(self.exports)) != len(self.exports):
            raise InputError(f"--exports: {', '.join(self.exports)} names an export twice")
        if self.naming not in NAMINGS:
            raise InputError(f"--naming {self.naming}: choose {' or '.join(NAMINGS)}")
        if self.anaglyph not in ANAGLYPHS:
            raise InputError(f"--anaglyph {self.anaglyph}: choose from {', '.join(ANAGLYPHS)}")
        if self.vr180_fov is not None and not 1.0 <= self.vr180_fov < 180.0:
            raise InputError(f"--vr180-fov {self.vr180_fov}: degrees of the input's horizontal view, in 1 .. 179")
        if self.vr180_size is not None and not (16 <= self.vr180_size <= 8192 and self.vr180_size % 2 == 0):
            raise InputError(f"--vr180-size {self.vr180_size}: an even number of pixels across each eye, 16 .. 8192")


@dataclass(frozen=True)
class ConvertConfig:
    """Everything that decides what ``convert`` produces (its flags), made of the stage configs."""

    clip: ClipConfig = field(default_factory=ClipConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    stabilise: StabiliseConfig | None = field(default_factory=StabiliseConfig)  # None: no stabilisation
    flow: str = "auto"  # stage 2's flow: RAFT if its weights are here, else flow.weight_free_flow (ours on CUDA, else DIS)
    matrix: MatrixConfig = field(default_factory=_convert_matrix)
    filler: str = "auto"  # diffusion when zeroscope is here and CUDA is, else classical (svg3d.stages.fill.resolve)
    classical: FillConfig = field(default_factory=FillConfig)  # the classical filler's settings (svg3d.stages.fill.classical)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    exports: ExportSettings = field(default_factory=ExportSettings)  # which exports and how (svg3d.stages.export)
    # Frames per chunk of every stage: memory is bounded by it, never by the clip's length; results do not
    # depend on it. 16 frames of 1080p keep a classical run under ~3 GB of memory.
    chunk_frames: int = 16
    clean_work: bool = False  # after the exports, delete the stages' bulky files (their records stay)
    # Stages run at once: chunk i of a stage is computed while the stage before it computes chunk i+1 (work.Runner);
    # False runs them one after another; None: at once on a GPU or from convert.CONCURRENT_CPUS cores. The outputs are
    # the same bytes either way (tested).
    concurrent_stages: bool | None = None
    # Cores the run plans its threads for (svg3d.threads); None: the machine's (os.cpu_count). Not the load or the CPU
    # set of the moment: the counts decide how some steps round, so a resumed run must get the same ones.
    threads: int | None = None
    # CUDA devices the stages with independent chunks (depth, stabilisation, fill) are spread over, one process each
    # (svg3d.spread); None: every visible one. The outputs are those of one device.
    gpus: int | None = None
    # Processes per GPU for those stages: one process's Python (the classical filler's many small steps, the stores'
    # deflate and hashes) leaves a GPU mostly idle; several share it, each on its own range of chunks.
    processes_per_gpu: int = 1
    # Runs of the fill's chunks computed at once, each in a thread of its own (on CUDA on a stream of its own); the
    # same chunks and bytes as one. None: the thread plan's (threads.plan_threads: 2 on a CPU of 2 cores or more,
    # threads.GPU_FILL_WORKERS on CUDA).
    fill_workers: int | None = None
    # GiB of GPU memory torch's allocator may hold in each process of a CUDA run (memory.cap_gpu_memory: cached blocks
    # are freed at the cap, as at a smaller card's limit); None: the card's.
    max_gpu_memory: float | None = None

    def __post_init__(self) -> None:
        _check([
            (self.max_gpu_memory is None or self.max_gpu_memory > 0, "max_gpu_memory", f"{self.max_gpu_memory}: must be > 0 (GiB)"),
            (self.fill_workers is None or self.fill_workers >= 1, "fill_workers", f"{self.fill_workers}: must be >= 1"),
            (self.flow in FLOW_CHOICES, "flow", f"{self.flow}: expected one of {', '.join(FLOW_CHOICES)}"),
            (self.gpus is None or self.gpus >= 1, "gpus", f"{self.gpus}: must be >= 1"),
            (self.processes_per_gpu >= 1, "processes_per_gpu", f"{self.processes_per_gpu}: must be >= 1"),
            (self.filler in FILLER_CHOICES, "fill", f"{self.filler}: expected one of {', '.join(FILLER_CHOICES)}"),
            (self.chunk_frames >= 1, "chunk_frames", f"{self.chunk_frames}: must be >= 1"),
            (self.threads is None or self.threads >= 1, "threads", f"{self.threads}: must be >= 1 (cores)"),
        ])  # fmt: skip


@dataclass(frozen=True)
class BatchSettings:
    """How a batch runs (its flags besides convert's)."""

    recursive: bool = False  # also the inputs in the sub-folders of INPUT_DIR
    skip_error: bool = False  # go on after an input fails (it is reported; the exit status still says so)
    # A video with at least twice this many frames is split at scene cuts into segments of at least this many,
    # converted in parallel. 1800 = a minute at 30 fps: long enough that a segment's start-up (the frames before
    # it decoded to reach it, the first chunks of every stage) stays small beside its conversion. 0: never split.
    segment_frames: int = 1800
    ray: str | None = None  # None: in-process; "auto": this machine's Ray cluster (or a new local one); or an address
    unit_cpus: float = 1.0  # Ray resources of one worker: CPUs (torch in it uses this many threads)
    unit_gpus: float | None = None  # ... and GPUs; None: 1 on a cluster with GPUs, else 0
    retries: int = 3  # a dead worker is restarted, and its unit retried, this many times (Ray max_restarts, max_task_retries)
    work_root: Path | None = None  # the inputs' work folders in work_root/<rel>/ instead of OUT/<rel>/work/

    def __post_init__(self) -> None:
        _check([
            (self.segment_frames >= 0, "segment_frames", f"{self.segment_frames}: must be >= 0 (0: never split)"),
            (math.isfinite(self.unit_cpus) and self.unit_cpus > 0, "unit_cpus", f"{self.unit_cpus}: must be a finite number > 0"),
            (self.unit_gpus is None or (math.isfinite(self.unit_gpus) and self.unit_gpus >= 0), "unit_gpus", f"{self.unit_gpus}: must be a finite number >= 0"),
            (self.retries >= 0, "retries", f"{self.retries}: must be >= 0"),
        ])  # fmt: skip


@dataclass(frozen=True)
class UISettings:
    """The web UI's server (``python -m svg3d ui``)."""

    jobs_dir: Path = Path("results/ui-jobs")  # uploads, outputs and work folders of the jobs
    host: str = "127.0.0.1"  # this machine only; 0.0.0.0 serves every interface
    port: int = 7860  # Gradio's usual port
    max_upload_mb: float = 2048  # about 10 minutes of 1080p H.264 at a camera's bitrate

    def __post_init__(self) -> None:
        _check([
            (0 <= self.port <= 65535, "port", f"{self.port}: must be in 0..65535"),
            (isinstance(self.max_upload_mb, (int, float)) and math.isfinite(self.max_upload_mb) and self.max_upload_mb * 2**20 >= 1,
             "max_upload_mb", f"{self.max_upload_mb}: must be a finite number of megabytes > 0"),
        ])  # fmt: skip
