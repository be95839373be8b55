"""How much memory a ``convert`` will need at its peak, known before it starts (pure: no file, no torch).

A run's memory is the process (Python with torch, OpenCV and PyAV, the models' weights) plus the working set of
its busiest stage; stages run one after another, so the peak is the process and the larger of the first two:

- ``fill``: the frames a stage holds at once, ``chunk_frames`` plus the filler's temporal context on each side
  (never more than the clip), for every view made: the warped cells, masks, depth and the float copies the fill
  works on. Fitted: 73 bytes per pixel per frame per view (``bench/bench_rss.py``, ``bench/results/rss.json``:
  360p to 1080p, 2 and 8 views; the chunk and the exports did not move the peak in any of those runs).
- ``export``: per video export, the encoder's look-ahead and reference frames (x264 ``medium``: about 50 frames
  of 1.5-byte 4:2:0 pixels) in proportion to the export's frame size, and a chunk of every view as 8 bits and as
  float. Estimated, not fitted: in every measured run this stayed below the fill stage.
- ``hand_on`` (a CPU run): the cells the fill hands on to the export (``stages.matrix.HandOn``), held from one stage
  into the next: ``HAND_ON_MB`` at most, the clip's cells when they are fewer.

``tests/test_memory.py`` checks a measured run against the estimate within a stated factor. Memory does not grow
with the clip's length (``bench/bench_stream.py``). ``convert`` can compare the estimate with the machine's free
memory before it starts (``available_mb``) and lower ``chunk_frames`` (``largest_chunk``) or refuse with a line
naming the flags.

On CUDA, ``cap_gpu_memory`` (``convert --max-gpu-memory``) caps what torch's allocator may hold on the device. Each
thread of a CUDA run launches on a stream of its own (``threads.own_stream``), and the allocator keeps the blocks a
stream freed for that stream: on an 80 GB card a 1080p run held 31 GB where its threads shared one stream's 21.5
(``bench/results/h100-2026-12-07-e``). Under a cap, an allocation that would pass it first frees every stream's
cached blocks and tries again (what a card of that size does at its limit); only what the run holds at once counts
against it. Measured on an H100 (``bench/results/h100-2026-12-07-f``): a 1080p run that reserves 32.9 GB uncapped
runs as fast held to 22 GiB (x0.99, 23.0 GiB on the card with the CUDA context); two fill runs at once need more
than 23 GiB.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace

from .checks import InputError
from .config import FillConfig
from .layouts import EXPORTS, Geometry

__all__ = ["Estimate", "available_mb", "cap_gpu_memory", "estimate_peak", "largest_chunk"]

MB = 2**20
log = logging.getLogger(__name__)

PROCESS_MB = 1010.0  # the process with a tiny model, frames aside (fitted; 550 MB after the imports alone)
CELL_BYTES = 73.0  # per pixel, per frame in flight, per view made (fitted: bench/results/rss.json)
ENCODER_BYTES = 75.0  # per pixel of a video export's frame: ~50 frames of 4:2:0 in x264's look-ahead (estimated)
EXPORT_FRAME_BYTES = 16.0  # per pixel per frame of a chunk per view in the export stage: 8 bits and float (estimated)
HAND_ON_MB = 512.0  # cells the fill hands on to the export on a CPU (stages.matrix.HandOn): 148 frames of one view at 640x360
HAND_ON_BYTES = (8.0, 7.0)  # a handed-on cell, per pixel: per view (8-bit colours, mask, float depth), per frame (source, Z)
CONTEXT = {"classical": FillConfig().context, "telea": 0, "diffusion": 0}  # frames each side of a chunk the filler reads


@dataclass(frozen=True)
class Estimate:
    """Peak memory in MB (2**20 bytes): the process, and the working sets of the fill and the export stages (``parts``)."""

    parts: dict[str, float]
    concurrent: bool = False  # the stages run at once (``ConvertConfig.concurrent_stages``): their working sets add up

    @property
    def total_mb(self) -> float:
        """The process and the larger stage when the stages run one after another, both stages when they run at once,
        and the cells the fill hands on to the export (held from one stage into the next)."""
        stages = (self.parts["fill"] + self.parts["export"]) if self.concurrent else max(self.parts["fill"], self.parts["export"])
        return self.parts["process"] + stages + self.parts.get("hand_on", 0.0)


def estimate_peak(
    size: tuple[int, int],
    *,
    chunk_frames: int,
    num_views: int,
    filler: str,
    exports: tuple[str, ...],
    model_mb: float = 0.0,
    context: int | None = None,
    num_frames: int | None = None,
    concurrent: bool = False,
    fill_workers: int = 1,
    hand_on: bool = False,
) -> Estimate:
    """The peak memory of a ``convert`` of frames of ``size`` ``(H, W)``.

    chunk_frames: frames per chunk. num_views: the views the run makes (the plan's views: 2 for the eyes of
    ``left2right``, 3 for ``middle2leftright``, all of the matrix for the diffusion filler or a layout that
    shows every view). filler: a filler name (its temporal context from ``CONTEXT``; ``context`` overrides it,
    e.g. ``previous``'s window). exports: the export names (``layouts.EXPORTS``). model_mb: the weights of
    the models the run holds in host memory (the depth model on the CPU, the diffusion filler's on the CPU).
    num_frames: the clip's length, when known (a clip shorter than a chunk and its context holds fewer frames).
    concurrent: the stages run at once (their working sets add up; fitted on runs one after another, so an estimate).
    fill_workers: chunks the fill computes at once (``threads.ThreadPlan.fill_workers``), each with its context.
    hand_on: the fill hands its cells on to the export (``HAND_ON_MB`` at most, the clip's when shorter).
    """
    h, w = size
    if h < 1 or w < 1 or chunk_frames < 1 or num_views < 2:
        raise ValueError(f"size {size}, chunk_frames {chunk_frames}, num_views {num_views}: expected positive sizes, >= 1 frame, >= 2 views")
    unknown = [n for n in exports if n not in EXPORTS]
    if unknown:
        raise ValueError(f"exports: unknown {', '.join(unknown)}")
    if context is None:
        context = CONTEXT.get(filler, 0)
    pixels = h * w
    frames = chunk_frames + 2 * context
    if num_frames is not None:
        frames = max(1, min(frames, num_frames))
    export_pixels = 0.0
    for name in exports:
        if EXPORTS[name].kind == "video":
            export_pixels += _area(name, h, w, num_views)
    return Estimate({
        "process": PROCESS_MB + model_mb,
        "fill": CELL_BYTES * pixels * frames * num_views * fill_workers / MB,
        "export": (ENCODER_BYTES * export_pixels + EXPORT_FRAME_BYTES * pixels * min(chunk_frames, num_frames or chunk_frames) * num_views) / MB,
        "hand_on": _hand_on_mb(pixels, num_views, num_frames) if hand_on else 0.0,
    }, concurrent)  # fmt: skip


def _hand_on_mb(pixels: int, num_views: int, num_frames: int | None) -> float:
    """What the fill's cells handed on to the export hold at most: ``HAND_ON_MB``, or the whole clip's when it is less."""
    per_view, per_frame = HAND_ON_BYTES
    clip = (per_view * (num_views - 1) + per_frame) * pixels * num_frames / MB if num_frames else HAND_ON_MB
    return min(HAND_ON_MB, clip)


def _area(name: str, h: int, w: int, num_views: int) -> float:
    """Pixels of one frame of video export ``name`` (VR180 at the input's central resolution: about the input's)."""
    if name == "vr180":
        return 2.0 * h * w
    return math.prod(EXPORTS[name].size(Geometry((h, w), num_views, tuple(range(num_views)))))


def largest_chunk(size: tuple[int, int], budget_mb: float, **kwargs) -> int:
    """The largest ``chunk_frames`` (>= 1) whose estimate fits ``budget_mb``, or 0 when not even one frame does.
    ``kwargs``: the other arguments of ``estimate_peak``."""
    one = estimate_peak(size, chunk_frames=1, **kwargs)
    two = estimate_peak(size, chunk_frames=2, **kwargs)
    if one.total_mb > budget_mb:
        return 0
    per_frame = two.total_mb - one.total_mb
    return 1 + int((budget_mb - one.total_mb) // per_frame) if per_frame > 0 else 1 << 30


def available_mb() -> float | None:
    """Memory the machine can give now without swapping (``MemAvailable`` of ``/proc/meminfo``), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    names = ("SC_AVPHYS_PAGES", "SC_PAGE_SIZE")
    if all(n in os.sysconf_names for n in names):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / MB
    return None


def fit_chunk(config, clip, plan, filler: str, *, fill_workers: int = 1, hand_on: bool = False):
    """``config`` (``ConvertConfig``) for ``clip`` and the view ``plan``, or with a smaller ``chunk_frames`` (said in one
    line naming the flags) when ``estimate_peak`` says the run would not fit the memory free now; ``InputError`` when
    not even one frame per chunk would."""
    available = available_mb()
    if available is None:  # not Linux: nothing to compare with
        return config
    kw = {"num_views": len(plan.fill_views) + 1, "filler": filler, "exports": config.exports.exports, "num_frames": clip.num_frames,
          "concurrent": config.concurrent_stages, "fill_workers": fill_workers, "hand_on": hand_on}  # fmt: skip
    need = estimate_peak(clip.info.size, chunk_frames=config.chunk_frames, **kw).total_mb
    if need <= available:
        return config
    fit = largest_chunk(clip.info.size, available, **kw)
    if fit == 0:
        h, w = clip.info.size
        raise InputError(
            f"chunk_frames: {w}x{h} frames need about {estimate_peak(clip.info.size, chunk_frames=1, **kw).total_mb:.0f} MB even one "
            f"at a time and {available:.0f} MB are free; convert at a smaller --width/--height, with fewer --exports or --no-concurrent-stages",
            params=("chunk_frames",),
        )  # fmt: skip
    log.warning(
        "memory: --chunk-frames %d would need about %.0f MB and %.0f MB are free: using --chunk-frames %d (the results do not depend on it)",
        config.chunk_frames, need, available, fit,
    )  # fmt: skip
    return replace(config, chunk_frames=fit)


GIB = 2**30


def cap_gpu_memory(gib: float | None, device) -> float | None:
    """Let torch's allocator hold at most ``gib`` GiB on ``device`` (a CUDA ``torch.device``; elsewhere nothing is
    capped) for this process: ``torch.cuda.set_per_process_memory_fraction``. Returns the fraction of the card set
    (1.0 when the card is smaller than the cap), or None when nothing was capped."""
    import torch

    if gib is None or torch.device(device).type != "cuda":
        if gib is not None:
            log.warning("--max-gpu-memory %.3g: ignored, the run is on %s", gib, device)
        return None
    device = torch.device(device)
    if device.index is None:  # (set_per_process_memory_fraction wants an index: "cuda" is the current device)
        device = torch.device("cuda", torch.cuda.current_device())
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = min(1.0, gib * GIB / total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    log.info("max-gpu-memory: torch may hold %.1f of the %.1f GiB of %s", fraction * total / GIB, total / GIB, device)
    return fraction
