"""Frame-matrix denoising (the paper's filler) behind the ``Filler`` protocol; its window loop (``denoise_into``) and
``svg.py``'s results folder (``ResultsFolder``), so that ``svg.py`` runs the loop ``convert`` runs.

The frame matrix is warped at the source resolution (``matrix.MatrixSource``); diffusion runs at the
model's (``DiffusionConfig.size``, 576x320 for zeroscope): every cell is shrunk to fit that size with
its aspect kept (``shrink_cells``: area-weighted over known pixels only, a cell known where most of its
pixels are) and reflect-padded to it. The windows (``denoise.window_starts``) are denoised in order,
each continuing the previous one's final latents (``denoise.window_fixed``), and committed one by one
to the ``denoised`` stage (the new frames' latents and decoded views), so a killed run resumes at the
first unfinished window. ``fill`` then brings the result back to the source resolution for the hole
pixels only (``composite``): every known pixel stays the exact warped source pixel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F

from ...checks import check_shape
from ...config import DiffusionConfig
from .. import scaled
from ..matrix import Cells

log = logging.getLogger(__name__)

FEATHER = 8  # px at the source resolution: hole pixels this close to a known pixel take its colour offset, fading


def denoise_config(config: DiffusionConfig, multiview: bool):
    """The ``denoise.DenoiseConfig`` for a convert: the reference's schedule, multi-view mode when every view is an output."""
    from ...denoise import DenoiseConfig

    return DenoiseConfig(
        num_inference_steps=config.steps, seed=config.seed, frame_matrix_end=0 if multiview else DenoiseConfig.frame_matrix_end,
        offload=config.offload, max_unet_frames=config.max_unet_frames, max_vae_frames=config.vae_frames, unet=config.unet,
        deep_cache=config.deep_cache,
    )  # fmt: skip


def load_model(name: str, device: torch.device, *, compile: bool = False, unet: str = "diffusers", flag: str = "video_model", **kwargs):
    """zeroscope (``models.load_zeroscope``), compiled for the ``unet`` forward when asked (``models.compile_zeroscope``)."""
    from ... import models

    if device.type == "cpu":
        # Early steps decode extreme x0 predictions; SiLU then underflows into subnormal floats, which x86
        # CPUs process ~100x slower (GPUs do not care). Flushing them changes no visible pixel.
        torch.set_flush_denormal(True)

    def load():
        model = models.load_zeroscope(name, device=device, flag=flag, **kwargs)
        if compile:
            models.compile_zeroscope(model, unet=unet)
        return model

    return models.kept("video", (name, str(device), compile, unet, sorted(kwargs.items())), load)


def fit_size(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """The largest (h, w) with ``size``'s aspect that fits in ``target`` (rounded, at least 1 px)."""
    h, w = size
    scale = min(target[0] / h, target[1] / w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def shrink_cells(images: torch.Tensor, known: torch.Tensor, target: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cells at the diffusion size: images ``(N, 3, H, W)``, known ``(N, H, W)`` -> ``(N, 3, th, tw)``, ``(N, th, tw)``.

    Shrunk to ``fit_size`` by area over the known pixels only (holes do not darken the edges), a pixel
    known when at least half its area is, then reflect-padded at the bottom and right to ``target``.
    """
    s = check_shape(images, "N 3 H W", "images")
    h, w = fit_size((s["H"], s["W"]), target)
    k = known[:, None].float()
    weight = F.interpolate(k, size=(h, w), mode="area")
    colour = F.interpolate(images * k, size=(h, w), mode="area") / weight.clamp_min(1e-6)
    small_known = weight[:, 0] >= 0.5
    colour = colour * small_known[:, None]
    ph, pw = target[0] - h, target[1] - w
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        colour = F.pad(colour, (0, pw, 0, ph), mode=mode)
        small_known = F.pad(small_known[:, None].float(), (0, pw, 0, ph), mode=mode)[:, 0] > 0.5
    return colour, small_known


def grow(views: torch.Tensor, size: tuple[int, int], target: tuple[int, int]) -> torch.Tensor:
    """Inverse of ``shrink_cells`` for decoded views ``(N, 3, th, tw)``: crop the padding, resize to ``size`` (bicubic)."""
    h, w = fit_size(size, target)
    return F.interpolate(views[..., :h, :w], size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def composite(warped: torch.Tensor, known: torch.Tensor, generated: torch.Tensor, *, feather: int = FEATHER) -> torch.Tensor:
    """Known pixels from ``warped``, holes from ``generated``, with the seam feathered.

    warped, generated: ``(N, 3, H, W)``; known ``(N, H, W)``. A hole pixel at distance d (px, chessboard)
    from the nearest known pixel takes ``generated + (1 - d / feather) * offset``, where offset is that
    known pixel's ``warped - generated``: the upsampled diffusion output meets the sharp source pixels
    without a visible edge, and from ``feather`` px into a hole on it is the diffusion output itself.
    """
    check_shape(warped, "N 3 H W", "warped")
    offset = torch.where(known[:, None], warped - generated, 0)  # (N, 3, H, W)
    reach = known[:, None].float()  # (N, 1, H, W): where an offset is defined
    out = generated.clone()
    for d in range(1, feather):  # one ring of the hole per step: the mean offset of the reached neighbours
        total = F.avg_pool2d(offset * reach, 3, 1, 1, count_include_pad=False)
        count = F.avg_pool2d(reach, 3, 1, 1, count_include_pad=False)
        ring = (count > 0) & (reach == 0)
        offset = torch.where(ring, total / count.clamp_min(1e-12), offset)
        out = torch.where(ring, generated + (1 - d / feather) * offset, out)
        reach = torch.where(ring, 1.0, reach)
    return torch.where(known[:, None], warped, out).clamp(0, 1)


class DiffusionFiller:
    """Holes filled by denoising the frame matrix with zeroscope (DESIGN.md §5), window after window."""

    name = "diffusion"
    context = 0

    def __init__(self, config: DiffusionConfig, *, device: torch.device) -> None:
        self.config, self.device = config, device
        self.store = None
        self._fill_views: tuple[int, ...] = ()

    def params(self) -> dict:
        # the loop's settings as it runs them, the VAE forward resolved (vae_forward None follows the UNet's kind,
        # whose default changed once: a store written with the other VAE must not be resumed); the plan (whence
        # multi-view) is in the stage's own key
        run = denoise_config(self.config, multiview=False)
        return {"config": asdict(self.config), "denoise": {**asdict(run), "vae_kind": run.vae_kind}}

    def stages(self, clip, plan, config, *, disparity: str, effect) -> tuple:
        from ...denoise import output_views

        outputs = output_views(plan.num_views, denoise_config(self.config, plan.multiview))
        self._fill_views = tuple(v for v in outputs if v in plan.fill_views)  # the views the pre-pass keeps, in its order
        return (DenoisedStage(self, clip, plan, config, disparity=disparity, effect=effect),)

    def bind(self, inputs: dict) -> None:
        self.store = inputs[DenoisedStage.name]

    def fill(self, cells: Cells, core: tuple[int, int], progress: Callable[[int], None] | None = None) -> torch.Tensor:
        a, b = core
        # a copy: the store hands out read-only views of its cached chunk
        generated = torch.from_numpy(self.store.read(a, b, "views").copy()).to(cells.images.device)  # (n, V', th, tw, 3)
        out = []
        size = tuple(cells.images.shape[-2:])
        for i, view in enumerate(cells.views):
            j = self._fill_views.index(view)
            up = grow(generated[:, j].permute(0, 3, 1, 2).float() / 255, size, self.config.size)  # n h w 3 -> n 3 h w
            out.append(composite(cells.images[i, a - cells.first : b - cells.first], cells.known[i, a - cells.first : b - cells.first], up))
        if progress is not None:  # (the denoised pre-pass did the work: this is an upsampling, quick)
            progress(b - a)
        return torch.stack(out)



class DenoisedStage:
    """The diffusion filler's pre-pass (``svg3d.stages``): the frame matrix denoised window by window at the model's
    size (``denoise.denoise_frame_matrix``); each window continues the previous one's final latents in its overlap."""

    name = "denoised"

    def __init__(self, filler: DiffusionFiller, clip, plan, config, *, disparity: str, effect) -> None:
        from ... import shots

        self.filler, self.clip, self.plan, self.config, self.disparity, self.effect = filler, clip, plan, config, disparity, effect
        self.needs = ("depth", disparity) if disparity != "depth" else ("depth",)
        # a shot's effect needs its whole disparity: worked out shot by shot (``Effect.per_shot``), or from the whole clip
        self.whole_shots = effect.per_shot
        whole = config.matrix.depth_range == "clip" or (effect.warps and not effect.per_shot)
        self.lookahead = None if whole else filler.config.window + (0 if self.whole_shots else shots.range_lookahead(clip.info.fps))

    def params(self) -> dict:
        return {"filler": self.filler.params(), "plan": asdict(self.plan), "matrix": asdict(self.config.matrix), "fps": self.clip.info.fps}

    def check(self) -> None:
        from ... import models

        models.check_available(self.filler.config.model, "video model", flag="video_model", probe_file="unet/config.json")

    def run(self, inputs: dict, store, chunks, progress) -> None:
        from ..matrix import matrix_source

        cfg, plan, device = self.filler.config, self.plan, self.filler.device
        source = matrix_source(self.clip, self.name, inputs, self.disparity, plan, self.config, device, cfg.window, effect=self.effect)
        compile = cfg.compile
        if compile is None:
            from ...denoise import compile_pays, window_starts

            windows = len(window_starts(self.clip.num_frames, cfg.window, cfg.window_overlap))
            compile = compile_pays(device, cfg.unet, windows, steps=cfg.steps, views=plan.num_views)
            log.info("compile: %s for %d window(s) (--compile / --no-compile decide)", "on" if compile else "off", windows)
        model = load_model(cfg.model, device, compile=compile, unet=cfg.unet)
        dconfig = denoise_config(cfg, plan.multiview)

        def cells(a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:  # every view, shrunk to the model's size
            c = source.cells(a, b, views=tuple(range(plan.num_views)))
            v, n = c.images.shape[:2]
            images, known = shrink_cells(c.images.flatten(0, 1), c.known.flatten(0, 1), cfg.size)
            return images.unflatten(0, (v, n)), known.unflatten(0, (v, n))[:, :, None]

        denoise_into(model, cells, store, cfg.prompt, dconfig, num_frames=self.clip.num_frames, num_views=plan.num_views,
                     window=cfg.window, overlap=cfg.window_overlap, keep=self.filler._fill_views, layout=plan.layout,
                     progress=progress)  # fmt: skip


def denoise_into(model, cells, store, prompt: str, config, *, num_frames: int, num_views: int, window: int, overlap: int | None,
                 keep: tuple[int, ...], layout, workers=None, steps=None, progress=None):  # fmt: skip
    """The frame matrix ``cells(a, b) -> (images, masks)`` denoised window by window (``denoise.denoise_windows``), each
    window's new frames committed to ``store`` (the ``denoised`` stage's format, read back for the next window's
    overlap): ``latents`` float32 ``(n, V', c, h, w)`` of the output views and ``views`` uint8 ``(n, len(keep), h, w,
    3)`` of the views ``keep``. A store that holds frames already (``store.chunks``, a resumed run) resumes after
    them. ``steps`` ticks once per denoising step; ``progress(n)`` counts each window's new frames as its steps are
    done (a bar that moves within a window, ``stages.scaled``: exactly its frames once its steps are). Returns the
    UNet work (``denoise.DenoiseStats``). The one loop of ``convert --fill diffusion`` and ``svg.py``."""
    from ...denoise import LOCAL, DenoiseStats, default_overlap, denoise_windows, output_views

    outputs = output_views(num_views, config)  # their final latents carry into the next window's overlap
    covered = {f for c in store.chunks for f in range(c["first"], c["first"] + c["count"])}
    resume = next(f for f in range(num_frames + 1) if f not in covered)
    stats = DenoiseStats()
    windows = iter(_new_frames(num_frames, window, default_overlap(window) if overlap is None else overlap, resume))
    now = {"steps_left": 0, "frames": None}  # the window being denoised: its steps to come, its frames' progress

    def step(n: int) -> None:
        if steps is not None:
            steps(n)
        for _ in range(n if progress is not None else 0):
            if now["steps_left"] == 0:  # the next window's first step
                now["steps_left"] = config.num_inference_steps
                now["frames"] = scaled(progress, config.num_inference_steps, next(windows, 0))
            now["frames"](1)
            now["steps_left"] -= 1

    def final(a: int, b: int) -> torch.Tensor:
        return torch.from_numpy(store.read(a, b, "latents")).transpose(0, 1)  # n V c h w -> V n c h w

    for start, done, result in denoise_windows(
        model, cells, final, prompt, config, num_frames=num_frames, num_views=num_views, window=window, overlap=overlap,
        resume=resume, layout=layout, progress=step, workers=LOCAL if workers is None else workers,
    ):  # fmt: skip
        new = done - start
        latents = torch.stack([result.latents[view, new:] for view in outputs], 1)  # (n, V', c, h, w)
        frames = torch.stack([result.videos[view][new:] for view in keep], 1)  # (n, V', 3, th, tw)
        rgb = (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2)  # n V 3 h w -> n V h w 3
        store.commit(done, {"latents": latents.cpu().numpy(), "views": rgb.cpu().numpy()})
        stats.add(result.stats)
        if now["steps_left"]:  # (a schedule that ran fewer steps than it has): the window's frames are done
            now["frames"](now["steps_left"])
            now["steps_left"] = 0
    return stats


def _new_frames(num_frames: int, window: int, overlap: int, resume: int) -> list[int]:
    """The new frames of each window ``denoise_windows`` computes (those that end after ``resume``), in order."""
    from ...denoise import window_starts

    news, done = [], 0
    for start in window_starts(num_frames, window, overlap):
        end = min(start + window, num_frames)
        if end > resume:
            news.append(end - done)
        done = end
    return news


class ResultsFolder:
    """``svg.py``'s output folder as the store ``denoise_into`` commits to: ``view{v:03d}_{t:05d}.jpg`` for each of
    ``views`` (the reference's names, so its downstream scripts still work) as each window is done, the latents kept
    for the overlaps; ``finish`` writes the side-by-side video of the eyes (``results3d.mp4``, ``results3d.gif``:
    left | right) and ``manifest.json`` last: until then the folder is no complete result. ``write=False`` keeps the
    latents only (the other processes of a split run)."""

    def __init__(self, folder, views: tuple[int, ...], *, write: bool = True) -> None:
        from pathlib import Path

        self.folder, self.views, self.write = Path(folder), tuple(views), write
        self.chunks: list[dict] = []
        self._latents: list[np.ndarray] = []
        self._frames: list[np.ndarray] = []  # (n, V, H, W, 3) per window
        if write:
            (self.folder / "manifest.json").unlink(missing_ok=True)

    def read(self, a: int, b: int, name: str) -> np.ndarray:
        """The ``latents`` of frames ``a .. b-1`` (the only array ``denoise_into`` reads back)."""
        return np.concatenate(self._latents)[a:b]

    def commit(self, first: int, arrays: dict[str, np.ndarray], stats: dict | None = None) -> None:
        from ... import io

        self.chunks.append({"first": first, "count": len(arrays["latents"])})
        self._latents.append(arrays["latents"])
        if not self.write:
            return
        self._frames.append(arrays["views"])
        for i, frames in enumerate(arrays["views"]):
            for v, frame in zip(self.views, frames, strict=True):
                io.write_image(self.folder / f"view{v:03d}_{first + i:05d}.jpg", frame)

    def finish(self, eyes: tuple[int, int], fps: float, manifest: dict) -> None:
        import json

        from ... import io

        frames = np.concatenate(self._frames)  # (T, V, H, W, 3)
        sbs = np.concatenate([frames[:, self.views.index(eye)] for eye in eyes], axis=2)  # T H 2W 3: left | right
        io.write_video(self.folder / "results3d.mp4", sbs, fps)
        io.write_gif(self.folder / "results3d.gif", sbs, fps)
        io.write_text(self.folder / "manifest.json", json.dumps(manifest, indent=1))
