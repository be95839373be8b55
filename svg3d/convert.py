"""``python -m svg3d convert``: a video (or a folder of frames) to 3D exports, every stage streamed and resumable.

This module only sequences the stages (``svg3d.stages``): check, open the source, build the stage list, run it.
Each stage keeps its data in the work folder (``OUT/work`` by default) as a ``work.StageStore``, computed chunk by
chunk of ``chunk_frames`` frames, so memory never grows with the clip; ``work.Runner`` evaluates them lazily (a
stage runs only when a later one needs its data, resumes at its first missing chunk, and is skipped when complete)
and runs the stages that must run concurrently, chunk i of one while the one before computes chunk i+1.
Everything that can fail before the first stage is checked first: the flags (the configs), the paths, the locks,
the input's probe, the models and inputs of the stages that will run, the exports.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from . import camera, comfort, memory, models, spread, threads, work
from .checks import InputError
from .config import ConvertConfig
from .source import stem_of
from .stages import fill
from .stages.clip import Clip
from .stages.depth import DepthStage
from .stages.export import ExportStage, remove_stale_parts
from .stages.fill.stage import FILLED, FillStage, say_other_fills, store_folder
from .stages.generate import generate
from .stages.matrix import Effect, HandOn
from .stages.stabilise import StabiliseStage
from .work import StageReport

log = logging.getLogger(__name__)

# A progress bar per stage: progress(desc, total, initial=0) -> (advance(n), close()) (``cli.progress_bar``).
ProgressFactory = Callable[..., tuple[Callable[[int], None], Callable[[], None]]]
# Stages at once by default on a GPU, or from this many cores: on 2 cores they ran 0.87x the speed of one after another
# with 1.45x the memory (bench/results/stream_cpu.json), one after another 1.03x the commit before.
CONCURRENT_CPUS = 4
LOW_KNOWN_SHARE = 0.5  # warn when the far eye shows less than this share of the input: the effect is too strong

__all__ = ["ConvertResult", "StageReport", "convert"]


@dataclass(frozen=True)
class ConvertResult:
    stages: tuple[StageReport, ...]
    exports: dict[str, Path]  # export name (and "preview") -> file or folder
    work_dir: Path
    filler: str
    plan: camera.ViewPlan

    def stage(self, name: str) -> StageReport:
        return next(s for s in self.stages if s.name == name)


class _Store(work.StageStore):
    """A stage store that tells the conversion about each committed chunk (tests interrupt runs there)."""

    def __init__(self, on_chunk, *args, **kwargs) -> None:
        self._on_chunk = on_chunk
        super().__init__(*args, **kwargs)

    def record_chunk(self, entry: dict) -> None:
        super().record_chunk(entry)
        if self._on_chunk is not None:
            self._on_chunk(self.name, entry["first"], entry["count"])


def pipeline(clip: Clip, config: ConvertConfig, device: torch.device, *, out_dir: Path, work_dir: Path,
             hand_on: bool = True) -> tuple[list, str, camera.ViewPlan]:  # fmt: skip
    """The stages that convert ``clip`` with ``config`` in pipeline order, the filler's name and the view plan.

    ``hand_on`` (on a CPU): the fill hands the cells it warped on to the export (``matrix.HandOn``), which would warp
    them again; off where the export runs in another process (``spread``'s workers). On a GPU the second warp costs
    a few milliseconds a frame and the cells would hold GPU memory: not handed on."""
    from .stages.export import needs_views

    filler_name = fill.resolve(config.filler, config, device)
    config = _all_exports(config, filler_name)
    filler = fill.make(filler_name, config, device)
    if config.diffusion.prompt and filler_name != "diffusion":
        log.warning("--prompt is used by the diffusion filler only: the %s filler fills without it", filler_name)
    plan = camera.plan_views(comfort.plan_config(config.matrix), clip.info.size[1], filler_views=fill.VIEWS[filler_name],
                             all_views=needs_views(config.exports))  # fmt: skip
    depth = DepthStage(clip, config.depth, device)
    stages: list = [depth]
    disparity = "depth"
    if config.stabilise is not None:
        stages.append(StabiliseStage(clip, config.stabilise, config.flow, depth.size, device))
        disparity = "stabilised"
    effect = Effect(config, plan, disparity=disparity, width=clip.info.size[1], fps=clip.info.fps, chunk_frames=config.chunk_frames)
    pre = filler.stages(clip, plan, config, disparity=disparity, effect=effect)
    stages += pre
    check_effect = lambda source: _check_effect(source, plan, config, clip.num_frames, clip.info.size)  # noqa: E731
    cells = HandOn() if hand_on and device.type == "cpu" else None
    stages.append(FillStage(clip, filler, filler_name, plan, config, disparity=disparity, pre=tuple(s.name for s in pre), device=device,
                            chunk_frames=config.chunk_frames, effect=effect, check_effect=check_effect, hand_on=cells))  # fmt: skip
    stages.append(ExportStage(clip, config, plan, out_dir=out_dir, stem=stem_of(clip.path), disparity=disparity, device=device,
                              work_dir=work_dir, effect=effect, take_from=cells))  # fmt: skip
    return stages, filler_name, plan


def _all_exports(config: ConvertConfig, filler: str) -> ConvertConfig:
    """``--exports all`` means every export of the views being made: without ``num_views`` (and with a filler that
    makes the eyes only) the layouts of every view are left out, in one line saying how to have them and the cost."""
    from .layouts import EXPORTS

    names = config.exports.exports
    if set(names) != set(EXPORTS) or config.matrix.num_views is not None or fill.VIEWS[filler] is not None:
        return config
    every = [n for n in names if "views" in EXPORTS[n].needs]
    log.info(
        "exports all: those of the views being made (the eyes); %s show every view of the matrix: give --num-views 8 for "
        "them (about 4x the fill's time and memory)", ", ".join(every),
    )  # fmt: skip
    return replace(config, exports=replace(config.exports, exports=tuple(n for n in names if n not in every)))


def _check_effect(source, plan: camera.ViewPlan, config: ConvertConfig, num_frames: int, size: tuple[int, int]) -> None:
    """Warn when the far eye keeps too little of the input at the middle frame (a strength or baseline far too large).
    From the disparity alone (``MatrixSource.known_share``): reading the frame there would take the fill's reader to
    the middle of the clip, away from the frames it reads first, which the shared decoder then waits for (a run of
    stages at once hung there, the 3D effect being the physical camera's)."""
    far = plan.eyes[1] if plan.eyes[0] == plan.reference else plan.eyes[0]
    mid = num_frames // 2
    share = source.known_share(mid, far, size)
    if share < LOW_KNOWN_SHARE:
        flags = "--strength" if config.matrix.strength is not None else "--baseline (or --focal)"
        log.warning(
            "the %s eye shows only %.0f%% of the input at frame %d: the 3D effect is too strong for this clip; lower %s",
            "right" if far == plan.eyes[1] else "left", 100 * share, mid, flags,
        )  # fmt: skip


def _share_decoder(clip: Clip, runner: work.Runner, todo: list, chunk_frames: int, concurrent: bool) -> None:
    """Every decoded frame is kept until the slowest of the stages ``todo`` has read it: the window covers the chunks
    and the look-ahead of the stages that run at once (``Clip``), so that none waits on itself. The stages that wait
    for the whole clip of their inputs (``lookahead`` None) or for whole shots of them (``whole_shots``), and those that
    read theirs, may fall behind the others by more than any window: they share a decoder of their own (``Clip.defer``),
    over a window of their chunks and of the input frames they read around a chunk (``lookahead``, else ``context``).
    In each group, a stage that resumes more than the window after the group's earliest decodes alone: sharing would
    hold it until the others caught up."""
    if not concurrent:  # (one after another, each stage decodes in its turn)
        return
    late: set[str] = set()
    for stage in todo:
        if stage.lookahead is None or getattr(stage, "whole_shots", False) or any(n in late for n in stage.needs):
            late.add(stage.name)

    def firsts(group: list, window: int) -> dict[str, int]:
        start = {}
        for stage in group:
            missing = runner.stores[stage.name].missing() if stage.name != "export" else [(0, clip.num_frames)]
            start[stage.name] = missing[0][0] if missing else 0
        return {name: f for name, f in start.items() if f - min(start.values()) <= window}

    early = [s for s in todo if s.name not in late]
    clip.window = 3 * chunk_frames + sum(s.lookahead for s in early)
    for name, first in firsts(early, clip.window).items():
        clip.register(name, first)
    later = [s for s in todo if s.name in late]
    around = [s.lookahead if s.lookahead is not None else getattr(s, "context", None) for s in later]
    if later and None not in around:  # (a deferred stage that does not say what it reads around a chunk decodes alone)
        window = 3 * chunk_frames + 2 * sum(around)
        clip.defer(firsts(later, window), window)


def convert(
    input_path: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    config: ConvertConfig | None = None,
    *,
    work_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressFactory | None = None,
    on_chunk: Callable[[str, int, int], None] | None = None,
    on_start: Callable[[], None] | None = None,
    devices: tuple[str, ...] | None = None,
) -> ConvertResult:
    """Convert a video file or a folder of frames into 3D exports in ``out_dir`` (module docstring).

    ``input_path`` None: the clip is generated from ``config.diffusion.prompt`` first (``stages.generate``), and the
    same prompt drives the fill. Checks, in this order, before any stage's output exists: the paths, the
    locks of the work and output folders (a second convert on either stops at once), the input's probe,
    the filler and the models of the stages that will run. Raises ``InputError`` (one line) for bad input.
    ``progress(desc, total, initial=0) -> (advance, close)`` makes a bar per stage (``cli.progress_bar``);
    ``on_chunk(stage, first, count)`` is called after every committed chunk (tests interrupt runs there);
    ``on_start()`` once every check has passed, as the stages start (a run refused before leaves nothing behind).
    ``devices``: the devices the stages with independent chunks are spread over, one process each (``svg3d.spread``;
    default: ``config.gpus`` of ``device``'s kind, each ``config.processes_per_gpu`` times); several CPU processes work
    too, on a machine of many cores.
    """
    config = ConvertConfig() if config is None else config
    device = torch.device(device)
    # the machine's cores, not this process's CPU set of the moment: the counts decide how some steps round (OpenCV's
    # DIS splits its refinement by threads), and a run resumed under another set (taskset, a Ray worker) must agree
    cpus = config.threads or os.cpu_count() or 1
    if config.concurrent_stages is None:  # at once where it pays
        config = replace(config, concurrent_stages=device.type == "cuda" or cpus >= CONCURRENT_CPUS)
    out_dir = Path(out_dir)
    work_dir = Path(work_dir) if work_dir is not None else work.default_work_dir(out_dir)
    if input_path is None and not config.diffusion.prompt:
        raise InputError("input: give a video or a frames folder, or a prompt to generate the video from", params=("input", "prompt"))
    work.check_paths(None if input_path is None else Path(input_path), out_dir, work_dir, config.depth.depth_from)
    devices = tuple(devices) if devices is not None else spread.gpu_devices(config.gpus, device, config.processes_per_gpu)
    with work.fresh_folders(out_dir, work_dir) as started, work.lock_folders(work_dir, out_dir):
        remove_stale_parts(out_dir)
        if input_path is None:
            models.check_available(config.diffusion.model, "video model", flag="video_model", probe_file="unet/config.json")
            input_path = generate(work_dir, config, device, progress)
            unclipped = replace(config.clip, num_frames=None, size=None)  # the generated clip is the clip
            config = replace(config, clip=unclipped, filler="diffusion" if config.filler == "auto" else config.filler)  # the prompt drives the fill
        input_path = Path(input_path)
        clip = Clip.open(input_path, config.clip)
        log.info("convert %s: %s -> %s (work folder %s)", input_path, clip.info.describe(), out_dir, work_dir)
        memory.cap_gpu_memory(config.max_gpu_memory, device)  # before any stage's model is on the device
        stages, filler_name, plan = pipeline(clip, config, device, out_dir=out_dir, work_dir=work_dir)
        workers = threads.plan_threads(cpus, len(stages) if config.concurrent_stages else 1, device.type, fill_workers=config.fill_workers).fill_workers
        fitted = memory.fit_chunk(config, clip, plan, filler_name, fill_workers=workers, hand_on=device.type == "cpu")
        if fitted is not config:
            config = fitted
            stages, filler_name, plan = pipeline(clip, config, device, out_dir=out_dir, work_dir=work_dir)
        n = clip.num_frames

        def make_store(name: str, key: str, params: dict):
            if name == "export":
                return work.OutputStore(work_dir, name, key=key, num_frames=n)
            return _Store(on_chunk, work_dir, name, key=key, params=params, inputs={}, num_frames=n, folder=store_folder(name, params),
                          writes=thread_plan.writes)  # fmt: skip

        concurrent = config.concurrent_stages
        # every stage of the pipeline counted, not those left to run: a resumed run gets the same thread counts
        thread_plan = threads.plan_threads(cpus, len(stages) if concurrent else 1, device.type, fill_workers=config.fill_workers)

        runner = work.Runner(stages, make_store, chunk_frames=config.chunk_frames, progress=progress, concurrent=concurrent, finished=clip.done,
                             workers={FILLED: thread_plan.fill_workers},
                             on_thread=lambda name, k: threads.enter_stage(thread_plan, k, device))  # fmt: skip
        todo = runner.todo("export")
        if FILLED in todo:
            say_other_fills(work_dir, runner.stores[FILLED], plan)
        threads.apply(thread_plan)
        clip.decoder_threads(thread_plan.decoder)
        for stage in stages:  # fail now, not after hours of earlier stages
            if stage.name in todo:
                stage.check()
        started()  # from here on, what a run leaves is work to resume
        if on_start is not None:
            on_start()
        spreading = len(devices) > 1 and any(getattr(runner.stages[name], "spread", False) for name in todo)
        try:
            with spread.Workers(spread.Job(input_path, config, out_dir, work_dir, thread_plan, pipeline), devices) if spreading else nullcontext() as workers:
                if workers is not None:
                    # the stages before the export one after another, each over every device where it can be; the one
                    # right before the export, when spread, beside it (the export reads its chunks as they come)
                    beside = todo[-2] if concurrent and len(todo) > 1 and getattr(runner.stages[todo[-2]], "spread", False) else None
                    for name in todo[:-1]:
                        if name == beside:
                            runner.stages[name] = spread.Beside(runner.stages[name], workers)
                        elif getattr(runner.stages[name], "spread", False):
                            workers.run_stage(name, runner, config.chunk_frames, runner.progress)
                        else:
                            runner.run(name)
                    todo = runner.todo("export")
                # (the decoder's window for the stages that read the clip here: not one computed by the workers)
                here = [s for s in stages if s.name in todo and not isinstance(runner.stages[s.name], spread.Beside)]
                _share_decoder(clip, runner, here, config.chunk_frames, concurrent)
                reports = runner.run("export")
        finally:
            clip.close()
        if config.clean_work:
            freed = sum(store.clean() for store in runner.stores.values())
            log.info("clean-work: %.1f MB of stage files deleted (their records stay)", freed / 1e6)
        exports = runner.stores["export"].record_file.outputs()
        ordered = tuple(reports[s.name] for s in stages if s.name in reports)
        return ConvertResult(ordered, exports, work_dir, filler_name, plan)
