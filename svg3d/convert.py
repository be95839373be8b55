"""``python -m svg3d convert``: a video (or a folder of frames) to 3D exports, every stage streamed and resumable.

This module only sequences the stages; each stage's decisions live in its own module. Every stage is a
``work.StageStore`` in the work folder (``OUT/work`` by default), computed chunk by chunk of
``chunk_frames`` frames, so memory never grows with the clip:

    depth/        disparity at the depth resolution (``depth.run_depth``); per-frame stats and shot-change scores
    stabilised/   temporally stabilised disparity (``stabilise.run_stabilise``) and its per-frame statistics
    (ranges)      per-frame normalisation ranges, per shot (``shots``): derived from the records, not stored
    <filler>/     a filler's own pre-pass, if it has one (diffusion: the denoised windows)
    filled/       the hole pixels of the filled views and nothing else (``fillers``): the known pixels are
                  the warp of the input, which ``matrix.MatrixSource`` recomputes from frames and depth
    export.json   the videos in ``OUT`` (``export.ExportWriter``), encoded as the frames arrive

The stages are evaluated lazily, as ``make`` does: the exports are current when their record's key
(parameters and upstream digests) matches and their files exist, and then nothing runs; a stage runs
only when a later one needs its data. A stage keeps every chunk a killed run committed and computes
the rest; a changed key starts it over. Everything that can fail before the first stage is checked
first: the flags (the configs), the paths, the locks, the input's probe, the models of the stages that
will run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import __version__, camera, comfort, io, models, shots, work
from .stages import depth
from .stages import export
from .stages import fill as fillers
from .checks import InputError
from .config import ConvertConfig
from .stages.matrix import MatrixSource
from .source import Source, open_source

log = logging.getLogger(__name__)

# A progress bar per stage: progress(desc, total, initial=0) -> (advance(n), close()) (``cli.progress_bar``).
ProgressFactory = Callable[..., tuple[Callable[[int], None], Callable[[], None]]]
LOW_KNOWN_SHARE = 0.5  # warn when the far eye shows less than this share of the input: the effect is too strong
EXPORT_RECORD = "export.json"


@dataclass(frozen=True)
class StageReport:
    """What one stage did: ``ran`` False when it was up to date; ``resumed_from``: first frame this run computed."""

    name: str
    ran: bool
    seconds: float
    frames: int
    resumed_from: int | None = None


@dataclass(frozen=True)
class ConvertResult:
    stages: tuple[StageReport, ...]
    exports: dict[str, Path]  # export name (and "preview") -> file or folder
    work_dir: Path
    filler: str
    plan: camera.ViewPlan

    def stage(self, name: str) -> StageReport:
        return next(s for s in self.stages if s.name == name)


def _no_progress(desc: str, total: int, initial: int = 0):
    return (lambda n: None), (lambda: None)


class _Store(work.StageStore):
    """A stage store that tells the conversion about each committed chunk (tests interrupt runs there)."""

    def __init__(self, on_chunk, *args, **kwargs) -> None:
        self._on_chunk = on_chunk
        super().__init__(*args, **kwargs)

    def commit(self, first: int, arrays: dict, stats: dict | None = None) -> None:
        super().commit(first, arrays, stats)
        if self._on_chunk is not None:
            self._on_chunk(self.name, first, len(next(iter(arrays.values()))))


class Conversion:
    """One convert of one input: its stages, each computed at most once, and only when needed."""

    def __init__(
        self,
        input_path: Path,
        out_dir: Path,
        work_dir: Path,
        config: ConvertConfig,
        source: Source,
        device: torch.device,
        *,
        progress: ProgressFactory | None = None,
        on_chunk: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.input_path, self.out_dir, self.root, self.config = input_path, out_dir, work_dir, config
        self.source, self.info, self.device = source, source.info, device
        self.progress = progress or _no_progress
        self.on_chunk = on_chunk
        self.reports: list[StageReport] = []
        self.fingerprint = work.input_fingerprint(input_path)
        self.depth_size = depth.depth_size(self.info.size, config.depth.resolution)
        self.filler_name = fillers.resolve(config.filler, config, device)
        self.filler = fillers.make(self.filler_name, config, device)
        if config.diffusion.prompt and self.filler_name != "diffusion":
            log.warning("--prompt is used by the diffusion filler only: the %s filler fills without it", self.filler_name)
        self.plan = camera.plan_views(
            comfort.plan_config(config.matrix), self.info.size[1], filler_views=fillers.VIEWS[self.filler_name], all_views=export.needs_views(config.exports),
        )
        self.stores: dict[str, work.StageStore] = {}  # every stage store this conversion opened, by name
        self._ranges: tuple[np.ndarray, np.ndarray, str] | None = None
        self._cuts: list[int] = []
        self._effect: tuple | None = None

    # -- bookkeeping

    def _store(self, name: str, params: dict, inputs: dict) -> work.StageStore:
        key = work.digest({"stage": name, "svg3d": __version__, "params": params, "inputs": inputs})
        store = _Store(self.on_chunk, self.root, name, key=key, params=params, inputs=inputs, num_frames=self.info.num_frames)
        self.stores[name] = store
        return store

    def _run(self, store: work.StageStore, need_data: bool, body: Callable[[work.StageStore, Callable[[int], None]], None]) -> str:
        """Run ``body(store, advance)`` unless the stage is complete (with its files when ``need_data``)."""
        if store.complete and (store.has_data or not need_data):
            if store.name not in {r.name for r in self.reports}:
                log.info("%-10s up to date (%d frames)", store.name, store.num_frames)
                self.reports.append(StageReport(store.name, False, 0.0, store.num_frames))
            return store.digest
        was_complete = store.complete and store.record.get("digest")
        missing = store.start()
        todo = sum(b - a for a, b in missing)
        if store.resumed_from is not None:
            log.info("%-10s resumed at frame %d: %d of %d frames were done", store.name, store.resumed_from, store.num_frames - todo, store.num_frames)
        elif was_complete:
            log.info("%-10s its files were cleaned: computing it again", store.name)
        started = time.perf_counter()
        advance, close = self.progress(store.name, store.num_frames, initial=store.num_frames - todo)
        try:
            body(store, advance)
        except BaseException as e:  # the log says where a run ended; what is committed stays
            done = sum(c["count"] for c in store.chunks)
            log.info("%-10s stopped (%s) with %d of %d frames committed", store.name, type(e).__name__, done, store.num_frames)
            raise
        finally:
            close()
        digest = store.finish()
        if was_complete and digest != was_complete:
            log.warning("%s: recomputed with different results (a nondeterministic model?); later stages are redone", store.name)
        seconds = time.perf_counter() - started
        log.info("%-10s done: %d frames in %.1f s, %.1f MB", store.name, todo, seconds, store.bytes() / 1e6)
        self.reports = [r for r in self.reports if r.name != store.name] + [StageReport(store.name, True, seconds, todo, store.resumed_from)]
        return digest

    def frames(self, size: tuple[int, int] | None = None) -> Callable[[int, int], np.ndarray]:
        """A reader of the clip's frames (``Source.frames``), resized to ``size`` (h, w) if given."""
        if size is None or tuple(size) == self.info.size:
            return self.source.frames
        import cv2

        def read(a: int, b: int) -> np.ndarray:
            return np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in self.source.frames(a, b)])

        return read

    # -- stage 1: depth

    def _depth_store(self) -> work.StageStore:
        cfg = self.config.depth
        clip = {"input": self.fingerprint, "start": self.info.start, "frames": self.info.num_frames, "size": self.info.size}
        source = {"from": work.depth_fingerprint(cfg.depth_from)} if cfg.depth_from is not None else {"model": cfg.model}
        return self._store("depth", {**source, "size": self.depth_size}, clip)

    def _stabilised_store(self, depth_digest: str) -> work.StageStore:
        return self._store("stabilised", {"flow": self.config.flow, "config": asdict(self.config.stabilise)}, {"depth": depth_digest})

    def check_models(self) -> None:
        """Fail now, not after hours of earlier stages, when a model a stage that will run needs is missing, the
        depth maps given do not pair with the frames, or the exports cannot be written as asked."""
        cfg = self.config
        from .source import stem_of

        export.check_export(self.out_dir, stem_of(self.input_path), cfg.exports, num_views=self.plan.num_views, size=self.info.size)
        depth_store = self._depth_store()
        if not depth_store.complete and cfg.depth.depth_from is not None:
            self._folder_depth()
        if not depth_store.complete and cfg.depth.depth_from is None:
            models.check_available(cfg.depth.model, "depth model", flag="depth_model", alternative="depth_from")
        if cfg.stabilise is not None and cfg.flow in ("raft", "raft_small"):
            if not (depth_store.complete and self._stabilised_store(depth_store.digest).complete):
                models.check_raft("raft_small" if cfg.flow == "raft_small" else "raft_large")

    def depth(self, need_data: bool = False) -> tuple[work.StageStore, str]:
        cfg = self.config.depth
        store = self._depth_store()

        def body(store, advance):
            if cfg.depth_from is not None:
                backend = self._folder_depth()
            else:
                model = models.load_depth_model(cfg.model, device=self.device, flag="depth_model", alternative="depth_from")
                backend = depth.ModelDepth(model, batch_size=cfg.batch_size)
            depth.run_depth(
                self.frames(), backend, store, size=self.depth_size, chunk_frames=self.config.chunk_frames,
                analyse=self._shot_scores, progress=advance,
            )  # fmt: skip

        return store, self._run(store, need_data, body)

    def _folder_depth(self) -> depth.FolderDepth:
        """The ``--depth-from`` maps: one per frame of the whole input (checked), file ``start + i`` for frame ``i``."""
        sizes = (self.info.stored_size, self.info.size)
        return depth.FolderDepth(
            self.config.depth.depth_from, start=self.info.start, num_frames=self.info.num_frames, frame_sizes=sizes,
            total_frames=self.info.total_frames,
        )  # fmt: skip

    def _shot_scores(self, first: int, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """Shot-change score of each frame of a chunk (``shots.cut_scores``), against the frame before it."""
        previous = shots.frame_signature(self.source.frames(first - 1, first))[0] if first > 0 else None
        return {"cut": shots.cut_scores(shots.frame_signature(rgb), previous)}

    # -- stage 2: stabilisation

    def disparity(self, need_data: bool = False) -> tuple[work.StageStore, str]:
        """The disparity the frame matrix uses: stabilised, or stage 1's when stabilisation is off."""
        depth_store, depth_digest = self.depth(need_data=False)
        cfg = self.config.stabilise
        if cfg is None:
            return self.depth(need_data)
        store = self._stabilised_store(depth_digest)

        def body(store, advance):
            from .flow import make_flow
            from .stages.stabilise import run_stabilise

            raw, _ = self.depth(need_data=True)
            backend = make_flow(self.config.flow, device=self.device)
            run_stabilise(
                self.frames(self.depth_size), lambda a, b: raw.read(a, b, "disparity"), self.info.num_frames, backend, store,
                cfg, chunk_frames=self.config.chunk_frames, device=self.device, progress=advance,
            )  # fmt: skip

        return store, self._run(store, need_data, body)

    # -- ranges and the matrix

    def ranges(self) -> tuple[np.ndarray, np.ndarray, str]:
        """Per-frame normalisation range ``(lo, hi)`` (``shots.depth_ranges``) and its digest."""
        if self._ranges is None:
            store, _ = self.disparity(need_data=False)
            stats = {k: store.stats(k) for k in ("min", "max", "p01", "p99")}
            mode = self.config.matrix.depth_range
            cuts = shots.detect_cuts(self.depth(need_data=False)[0].stats("cut")) if mode == "shot" else []
            if cuts:
                log.info("shots: %d cuts, at frames %s", len(cuts), ", ".join(map(str, cuts[:12])) + (" ..." if len(cuts) > 12 else ""))
            lo, hi = shots.depth_ranges(stats, mode, cuts=cuts, fps=self.info.fps)
            self._cuts = cuts
            self._ranges = (lo, hi, work.digest([mode, cuts, lo.tobytes().hex(), hi.tobytes().hex()]))
        return self._ranges

    def effect(self) -> tuple[comfort.EffectTrack | None, comfort.FrameScan, np.ndarray, np.ndarray]:
        """The effect of every frame (``comfort.clip_effect``; None: the physical camera, checked against the
        budget), what it read from the disparity, and the (near, far) parallax per frame: computed once."""
        if self._effect is None:
            lo, hi, _ = self.ranges()
            store, _ = self.disparity(need_data=True)
            scan = comfort.scan_disparity(lambda a, b: store.read(a, b, "disparity"), self.info.num_frames, lo, hi, chunk=self.config.chunk_frames)
            track = comfort.clip_effect(self.config.matrix, lo, hi, self._cuts, scan, width=self.info.size[1])
            if track is None:
                near, far = comfort.check_physical(self.config.matrix, self.plan, lo, hi, width=self.info.size[1])
            else:
                near, far = track.parallax(1.0), track.parallax(0.0)
            self._effect = (track, scan, near, far)
        return self._effect

    def matrix_source(self, cache_frames: int) -> MatrixSource:
        store, _ = self.disparity(need_data=True)
        lo, hi, _ = self.ranges()
        track = self.effect()[0]
        return MatrixSource(
            self.frames(), lambda a, b: store.read(a, b, "disparity"), lo, hi, self.plan, self.config.matrix,
            device=self.device, cache_frames=cache_frames, remap=track.remap if track is not None and track.changed else None,
        )  # fmt: skip

    def _check_effect(self, source: MatrixSource) -> None:
        """Warn when the far eye keeps too little of the input (a strength or baseline far too large)."""
        far = self.plan.eyes[1] if self.plan.eyes[0] == self.plan.reference else self.plan.eyes[0]
        mid = self.info.num_frames // 2
        share = float(source.cells(mid, mid + 1, views=(far,)).known.float().mean())
        if share < LOW_KNOWN_SHARE:
            flags = "--strength" if self.config.matrix.strength is not None else "--baseline (or --focal)"
            log.warning(
                "the %s eye shows only %.0f%% of the input at frame %d: the 3D effect is too strong for this clip; lower %s",
                "right" if far == self.plan.eyes[1] else "left", 100 * share, mid, flags,
            )  # fmt: skip

    # -- stage 4: filling

    def filled(self, need_data: bool = False) -> tuple[work.StageStore, str]:
        _, disparity_digest = self.disparity(need_data=False)
        lo, hi, ranges_digest = self.ranges()
        params = {
            "filler": self.filler_name, "filler_params": self.filler.params(), "plan": asdict(self.plan),
            "matrix": asdict(self.config.matrix),
        }  # fmt: skip
        inputs = {"input": self.fingerprint, "disparity": disparity_digest, "ranges": ranges_digest}
        store = self._store("filled", params, inputs)

        def body(store, advance):
            context = self.filler.context
            source = self.matrix_source(cache_frames=self.config.chunk_frames + 2 * context)
            self._check_effect(source)
            self.filler.prepare(
                fillers.FillContext(
                    source=source, plan=self.plan, num_frames=self.info.num_frames, chunk_frames=self.config.chunk_frames,
                    stage=self._store, progress=self.progress, inputs=inputs, run=self._run,
                )
            )  # fmt: skip
            views = self.plan.fill_views
            n_all = self.info.num_frames
            for a, b in store.plan(self.config.chunk_frames):
                lo_t, hi_t = max(0, a - context), min(n_all, b + context)
                cells = source.cells(lo_t, hi_t, views=views)
                result = self.filler.fill(cells, (a, b))  # (V, n, 3, H, W)
                holes = ~cells.known[:, a - lo_t : b - lo_t]  # (V, n, H, W)
                rgb = (result.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 0, 3, 4, 2)  # V n 3 H W -> n V H W 3
                mask = holes.permute(1, 0, 2, 3)  # V n H W -> n V H W
                values = torch.where(mask[..., None], rgb, 0)
                share = mask.flatten(2).float().mean(2)  # (n, V) hole share per frame and view
                store.commit(a, {"holes": mask.cpu().numpy(), "values": values.cpu().numpy()}, {"holes": share.amax(1).cpu().numpy()})
                advance(b - a)

        return store, self._run(store, need_data, body)

    # -- stage 5: exports

    def export(self) -> dict[str, Path]:
        from .source import stem_of

        settings = self.config.exports
        stem = stem_of(self.input_path)
        _, filled_digest = self.filled(need_data=False)
        key = work.digest({
            "stage": "export", "svg3d": __version__, "settings": asdict(settings), "stem": stem, "fps": str(self.info.rate),
            "audio": self.info.has_audio, "start": self.info.start, "frames": self.info.num_frames, "filled": filled_digest,
            "input": self.fingerprint, "plan": asdict(self.plan),
        })  # fmt: skip
        record = work.OutputRecord(self.root / EXPORT_RECORD)
        if record.current(key):
            log.info("%-10s up to date", "export")
            self.reports.append(StageReport("export", False, 0.0, self.info.num_frames))
            return record.outputs()
        started = time.perf_counter()
        store, _ = self.filled(need_data=True)
        disparity_store, _ = self.disparity(need_data=True)
        source = self.matrix_source(cache_frames=self.config.chunk_frames)
        lo, hi, _ = self.ranges()
        track = self.effect()[0]
        plan = self.plan
        writer = export.ExportWriter(
            self.out_dir, stem, settings, fps=self.info.rate, size=self.info.size, num_views=plan.num_views, eyes=plan.eyes,
            reference=plan.reference, colour=self.info.colour, audio=self._audio(), focal=plan.focal,
        )  # fmt: skip
        views = tuple(range(plan.num_views)) if writer.needs_views else tuple(sorted({*plan.eyes, plan.reference}))
        advance, close = self.progress("export", self.info.num_frames)
        try:
            with writer:
                for a, b in _chunks(self.info.num_frames, self.config.chunk_frames):
                    out = self._views(source, store, views, a, b)
                    all_views = None
                    if writer.needs_views:  # views that are not made (the plan fills the eyes only) stay black
                        blank = np.zeros_like(out[plan.reference])
                        all_views = np.stack([out.get(v, blank) for v in range(plan.num_views)])
                    disparity = None
                    if writer.needs_depth:  # the input view's disparity, normalised as the matrix used it
                        disparity = depth.resize_depth(disparity_store.read(a, b, "disparity"), self.info.size)
                    left, right = out[plan.eyes[0]], out[plan.eyes[1]]
                    if track is not None and track.windows[a:b].any():  # window violations handled by floating windows
                        left, right = comfort.float_window(left, right, track.windows[a:b])
                    writer.write(left, right, views=all_views, disparity=disparity, depth_range=(lo[a:b], hi[a:b]) if disparity is not None else None)
                    advance(b - a)
                    work.release_memory()  # no store commits here: trim as they do (RSS crept over a long export)
                written = writer.close()
        finally:
            close()
        written |= self._report(stem)
        record.write(key, written)
        seconds = time.perf_counter() - started
        log.info("%-10s done: %d outputs in %.1f s", "export", len(written), seconds)
        self.reports.append(StageReport("export", True, seconds, self.info.num_frames))
        return written

    def _views(self, source: MatrixSource, store: work.StageStore, views: tuple[int, ...], a: int, b: int) -> dict[int, np.ndarray]:
        """The filled views ``uint8 (n, H, W, 3)`` of frames ``a .. b-1``: the warp, with the stored hole pixels."""
        out = {}
        ref = self.plan.reference
        fill_views = self.plan.fill_views
        warped = [v for v in views if v != ref]
        if ref in views:
            out[ref] = self.source.frames(a, b)  # the input itself, not a float round trip
        if warped:
            cells = source.cells(a, b, views=fill_views)
            holes, values = store.read(a, b, "holes"), store.read(a, b, "values")  # (n, Vf, H, W), (n, Vf, H, W, 3)
            rgb = (cells.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 0, 3, 4, 2).cpu().numpy()  # V n 3 H W -> n V H W 3
            for v in warped:
                i = fill_views.index(v)
                out[v] = np.where(holes[:, i, ..., None], values[:, i], rgb[:, i])
        return out

    def _report(self, stem: str) -> dict[str, Path]:
        """The 3D report beside the exports (``report``): the effect per frame against the screen's budget."""
        from . import report

        track, scan, near, far = self.effect()
        lo, hi, _ = self.ranges()
        numbers = report.build_report(
            near=near, far=far, histogram=scan.histogram, budget=comfort.screen_budget(self.config.matrix.screen),
            shots=shots.shot_bounds(self.info.num_frames, self._cuts), fps=self.info.fps, track=track, width=self.info.size[1],
            lo=None if self.config.matrix.metric_depth else lo, hi=None if self.config.matrix.metric_depth else hi,
        )  # fmt: skip
        return report.write_report(self.out_dir, stem, numbers)

    def _audio(self) -> Path | None:
        """The clip's span of the input's audio, in a form mp4 takes (``export.audio_track``)."""
        if not self.info.has_audio:
            return None
        trimmed = self.info.start > 0 or self.info.num_frames < self.info.total_frames
        return export.audio_track(
            self.input_path, self.root / "audio.m4a", start=self.info.start / self.info.fps,
            duration=self.info.duration if trimmed else None,
        )  # fmt: skip

    def clean(self) -> None:
        """Delete the bulky stage files after the exports (``clean_work``); the records stay."""
        freed = sum(store.clean() for store in self.stores.values())
        log.info("clean-work: %.1f MB of stage files deleted (their records stay)", freed / 1e6)


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, n)) for a in range(0, n, size)]


# --------------------------------------------------------------------------------------------------
# the command


GENERATED = "generated"  # the work folder's clip made from the prompt when there is no input (text to 3D)
GENERATED_FRAMES = 16  # frames generated without --num-frames: the reference's clip length
GENERATED_SIZE = (320, 576)  # (H, W) without --width/--height: zeroscope_v2_576w's native size


def generate(work_dir: Path, config: ConvertConfig, device: torch.device, progress: ProgressFactory | None = None) -> Path:
    """Stage 0: the clip of ``config.diffusion.prompt``, generated by the video model into ``work/generated/``.

    A folder of PNG frames (zeroscope's 8 fps), made once: a rerun with the same model, prompt, seed,
    steps, length and size reuses it. Returns the folder.
    """
    from .denoise import text_to_video
    from .stages.fill.diffusion import denoise_config, load_model

    cfg = config.diffusion
    frames = config.clip.num_frames or GENERATED_FRAMES
    size = config.clip.size or GENERATED_SIZE
    key = work.digest({"stage": GENERATED, "svg3d": __version__, "config": asdict(cfg), "frames": frames, "size": size})
    record = work.OutputRecord(work_dir / f"{GENERATED}.json")
    folder = work_dir / GENERATED
    if record.current(key):
        log.info("%-10s up to date (%d frames from the prompt)", GENERATED, frames)
        return folder
    log.info("%-10s %d frames %dx%d from the prompt %r", GENERATED, frames, size[1], size[0], cfg.prompt)
    model = load_model(cfg.model, device, compile=cfg.compile, unet=cfg.unet)
    advance, close = (progress or _no_progress)(GENERATED, cfg.steps)
    try:
        video = text_to_video(model, cfg.prompt, num_frames=frames, height=size[0], width=size[1], config=denoise_config(cfg, False), progress=advance)
    finally:
        close()
    tmp = work_dir / f"{GENERATED}.tmp"
    rgb = (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # T 3 H W -> T H W 3
    for t, frame in enumerate(rgb):
        io.write_image(tmp / f"{t:05d}.png", frame)
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    record.write(key, {"frames": folder})
    return folder


def convert(
    input_path: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    config: ConvertConfig | None = None,
    *,
    work_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressFactory | None = None,
    on_chunk: Callable[[str, int, int], None] | None = None,
) -> ConvertResult:
    """Convert a video file or a folder of frames into 3D exports in ``out_dir`` (module docstring).

    ``input_path`` None: the clip is generated from ``config.diffusion.prompt`` first (``generate``), and the
    same prompt drives the fill. Checks, in this order, before any stage's output exists: the paths, the
    locks of the work and output folders (a second convert on either stops at once), the input's probe,
    the filler and the models of the stages that will run. Raises ``InputError`` (one line) for bad input.
    ``progress(desc, total, initial=0) -> (advance, close)`` makes a bar per stage (``cli.progress_bar``);
    ``on_chunk(stage, first, count)`` is called after every committed chunk (tests interrupt runs there).
    """
    config = ConvertConfig() if config is None else config
    out_dir = Path(out_dir)
    work_dir = Path(work_dir) if work_dir is not None else work.default_work_dir(out_dir)
    device = torch.device(device)
    if input_path is None and not config.diffusion.prompt:
        raise InputError("input: give a video or a frames folder, or a prompt to generate the video from", params=("input", "prompt"))
    work.check_paths(None if input_path is None else Path(input_path), out_dir, work_dir, config.depth.depth_from)
    work.make_dirs(out_dir, work_dir)
    with work.lock_folders(work_dir, out_dir):
        export.remove_stale_parts(out_dir)
        if input_path is None:
            models.check_available(config.diffusion.model, "video model", flag="video_model", probe_file="unet/config.json")
            input_path = generate(work_dir, config, device, progress)
            if config.filler == "auto":  # the model is here: the prompt drives the fill too
                config = replace(config, filler="diffusion", clip=replace(config.clip, num_frames=None, size=None))
            else:
                config = replace(config, clip=replace(config.clip, num_frames=None, size=None))
        input_path = Path(input_path)
        source = open_source(input_path, start=config.clip.start_frame, count=config.clip.num_frames, size=config.clip.size)
        log.info("convert %s: %s -> %s (work folder %s)", input_path, source.info.describe(), out_dir, work_dir)
        conversion = Conversion(input_path, out_dir, work_dir, config, source, device, progress=progress, on_chunk=on_chunk)
        conversion.check_models()
        exports = conversion.export()
        if config.clean_work:
            conversion.clean()
        return ConvertResult(tuple(conversion.reports), exports, work_dir, conversion.filler_name, conversion.plan)
