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

from . import camera
from .camera import Layout
from .checks import InputError
from .export import ExportSettings

DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"  # Apache-2.0; the paper used v1 ViT-L
ZEROSCOPE = "cerspense/zeroscope_v2_576w"  # the paper's video model
FLOW_CHOICES = ("auto", "raft", "raft_small", "dis")
RAFT_ITERATIONS = 32  # the reference calls RAFT with iters=32 (torchvision's default is 12)
FILLER_CHOICES = ("auto", "classical", "diffusion", "telea")  # svg3d.fillers.REGISTRY, kept light here
DEPTH_RANGE_CHOICES = ("shot", "clip")
DDPM_TIMESTEPS = 1000  # zeroscope's DDPM scheduler is trained on 1000 timesteps: no more inference steps exist


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

    def __post_init__(self) -> None:
        _check([
            (self.start_frame >= 0, "start_frame", f"{self.start_frame}: must be >= 0"),
            (self.num_frames is None or self.num_frames >= 1, "num_frames", f"{self.num_frames}: must be >= 1"),
            (self.size is None or min(self.size) >= 16, "size", f"{self.size}: both sides must be >= 16 px"),
        ])  # fmt: skip


@dataclass(frozen=True)
class DepthConfig:
    """Stage 1: where disparity comes from, and the resolution it is kept at."""

    model: str = DEFAULT_DEPTH_MODEL  # any AutoModelForDepthEstimation: hub id or local folder
    depth_from: Path | None = None  # a folder of one depth map per frame instead of the model
    batch_size: int = 4  # frames per forward pass; memory only, results do not depend on it
    # Depth is kept with its short side at most this (px): Depth Anything predicts at 518 px, so a
    # larger map holds no more detail, and a 1080p frame's map takes 4x less disk and stabilisation time.
    resolution: int = 518

    def __post_init__(self) -> None:
        _check([
            (self.batch_size >= 1, "depth_batch_size", f"{self.batch_size}: must be >= 1"),
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

    def __post_init__(self) -> None:
        layout = Layout(self.layout)
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
            (not (self.strength is not None and self.metric_depth), "strength",
             "sets the effect from relative depth; with metric_depth give the physical camera (max_baseline, focal) instead"),
        ])  # fmt: skip


@dataclass(frozen=True)
class DiffusionConfig:
    """Hole filling by frame-matrix denoising (``svg3d.fillers.diffusion``): what ``convert`` sets on top of
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
    compile: bool = False  # torch.compile the UNet's and VAE's blocks (pays off over many windows)

    def __post_init__(self) -> None:
        _check([
            (1 <= self.steps <= DDPM_TIMESTEPS, "steps", f"{self.steps}: must be in 1 .. {DDPM_TIMESTEPS} (the scheduler's timesteps)"),
            (self.seed >= 0, "seed", f"{self.seed}: must be >= 0"),
            (self.window >= 1, "window", f"{self.window}: must be >= 1"),
            (self.overlap is None or 0 <= self.overlap < self.window, ("overlap", "window"), f"{self.overlap}: must be >= 0 and smaller than window {self.window}"),
            (min(self.size) >= 16 and self.size[0] % 8 == 0 and self.size[1] % 8 == 0, "diffusion_size",
             f"{self.size[1]}x{self.size[0]}: both sides must be multiples of 8 and >= 16"),
            (self.max_unet_frames >= 1, "max_unet_frames", f"{self.max_unet_frames}: must be >= 1"),
            (self.vae_frames >= 1, "vae_frames", f"{self.vae_frames}: must be >= 1"),
        ])  # fmt: skip

    @property
    def window_overlap(self) -> int:
        """The overlap the windows use: ``overlap``, or its default for ``window`` (4, at most window - 1)."""
        return max(0, min(4, self.window - 1)) if self.overlap is None else self.overlap


def _convert_matrix() -> MatrixConfig:
    """``convert``'s matrix: the effect by strength and screen plane, ranges per shot, views by the plan."""
    return MatrixConfig(
        num_views=None, strength=camera.DEFAULT_STRENGTH, convergence=camera.DEFAULT_CONVERGENCE, depth_range="shot", lossless=True
    )


def _fill_config():
    from .fill import FillConfig

    return FillConfig()


@dataclass(frozen=True)
class ConvertConfig:
    """Everything that decides what ``convert`` produces (its flags), made of the stage configs."""

    clip: ClipConfig = field(default_factory=ClipConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    stabilise: StabiliseConfig | None = field(default_factory=StabiliseConfig)  # None: no stabilisation
    flow: str = "auto"  # stage 2's flow: RAFT if its weights are here, else OpenCV DIS
    matrix: MatrixConfig = field(default_factory=_convert_matrix)
    filler: str = "auto"  # diffusion when zeroscope is here and CUDA is, else classical (svg3d.fillers.resolve)
    classical: object = field(default_factory=_fill_config)  # svg3d.fill.FillConfig
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    exports: ExportSettings = field(default_factory=ExportSettings)  # which exports and how (svg3d.export)
    # Frames per chunk of every stage: memory is bounded by it, never by the clip's length; results do not
    # depend on it. 16 frames of 1080p keep a classical run under ~3 GB of memory.
    chunk_frames: int = 16
    clean_work: bool = False  # after the exports, delete the stages' bulky files (their records stay)

    def __post_init__(self) -> None:
        _check([
            (self.flow in FLOW_CHOICES, "flow", f"{self.flow}: expected one of {', '.join(FLOW_CHOICES)}"),
            (self.filler in FILLER_CHOICES, "fill", f"{self.filler}: expected one of {', '.join(FILLER_CHOICES)}"),
            (self.chunk_frames >= 1, "chunk_frames", f"{self.chunk_frames}: must be >= 1"),
        ])  # fmt: skip
