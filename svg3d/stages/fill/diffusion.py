"""Frame-matrix denoising (the paper's filler) behind the ``Filler`` protocol, and the glue ``svg.py`` shares.

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
from dataclasses import asdict, replace

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
        from ...denoise import DenoiseConfig

        return {"config": asdict(self.config), "denoise": asdict(DenoiseConfig())}

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
        whole = config.matrix.depth_range == "clip" or effect.warps  # a shot's effect needs its whole disparity
        self.lookahead = None if whole else filler.config.window + shots.range_lookahead(clip.info.fps)

    def params(self) -> dict:
        return {"filler": self.filler.params(), "plan": asdict(self.plan), "matrix": asdict(self.config.matrix), "fps": self.clip.info.fps}

    def check(self) -> None:
        from ... import models

        models.check_available(self.filler.config.model, "video model", flag="video_model", probe_file="unet/config.json")

    def run(self, inputs: dict, store, chunks, progress) -> None:
        from ...denoise import denoise_frame_matrix, output_views, window_fixed, window_seed, window_starts
        from .stage import matrix_source

        cfg, plan, device = self.filler.config, self.plan, self.filler.device
        dconfig = denoise_config(cfg, plan.multiview)
        outputs = output_views(plan.num_views, dconfig)  # their final latents carry into the next window's overlap
        t_count = self.clip.num_frames
        starts = window_starts(t_count, cfg.window, cfg.window_overlap)
        source = matrix_source(self.clip, self.name, inputs, self.disparity, plan, self.config, device, cfg.window, effect=self.effect)
        model = load_model(cfg.model, device, compile=cfg.compile, unet=cfg.unet)
        covered = {f for c in store.chunks for f in range(c["first"], c["first"] + c["count"])}
        done = 0
        for k, start in enumerate(starts):
            end = min(start + cfg.window, t_count)
            if all(f in covered for f in range(done, end)):
                done = end
                continue
            cells = source.cells(start, end, views=tuple(range(plan.num_views)))
            v, n = cells.images.shape[:2]
            images, known = shrink_cells(cells.images.flatten(0, 1), cells.known.flatten(0, 1), cfg.size)
            images, known = images.unflatten(0, (v, n)), known.unflatten(0, (v, n))[:, :, None]
            fixed_cells = fixed_latents = None
            if done > start:
                final = torch.from_numpy(store.read(start, done, "latents")).transpose(0, 1)  # n V c h w -> V n c h w
                fixed_cells, fixed_latents = window_fixed(final, outputs, plan.num_views, end - start)
            result = denoise_frame_matrix(
                model, images, known, cfg.prompt, replace(dconfig, seed=window_seed(cfg.seed, k)), layout=plan.layout,
                fixed_latents=fixed_latents, fixed_cells=fixed_cells, progress=scaled(progress, dconfig.num_inference_steps, end - done),
            )  # fmt: skip
            new = done - start
            latents = torch.stack([result.latents[view, new:] for view in outputs], 1)  # (n, V', c, h, w)
            frames = torch.stack([result.videos[view][new:] for view in self.filler._fill_views], 1)  # (n, V', 3, th, tw)
            rgb = (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2)  # n V 3 h w -> n V h w 3
            store.commit(done, {"latents": latents.cpu().numpy(), "views": rgb.cpu().numpy()})
            done = end
