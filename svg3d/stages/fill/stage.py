"""The fill stage in the pipeline, and its stored format (written by ``pack``, read back by ``views``).

The stage keeps only the hole pixels of the views it fills: per chunk ``holes`` bool ``(n, V, H, W)`` and
``values`` uint8 ``(n, V, H, W, 3)`` (0 outside the holes; deflate makes those nearly free). The known pixels are the
warp of the input, which ``matrix.MatrixSource`` recomputes exactly, so a view is the warp with the stored holes
written in (``views``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import torch

from ..matrix import Cells, Effect, MatrixSource, Ranges

FILLED = "filled"


def pack(cells: Cells, result: torch.Tensor, a: int, b: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The chunk arrays and per-frame stats of frames ``a .. b-1`` filled as ``result`` ``(V, n, 3, H, W)`` in [0, 1]
    from ``cells`` (which may start before ``a``, for the filler's context)."""
    holes = ~cells.known[:, a - cells.first : b - cells.first]  # (V, n, H, W)
    rgb = (result.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 0, 3, 4, 2)  # V n 3 H W -> n V H W 3
    mask = holes.permute(1, 0, 2, 3)  # V n H W -> n V H W
    values = torch.where(mask[..., None], rgb, 0)
    share = mask.flatten(2).float().mean(2)  # (n, V) hole share per frame and view
    return {"holes": mask.cpu().numpy(), "values": values.cpu().numpy()}, {"holes": share.amax(1).cpu().numpy()}


def views(source: MatrixSource, store, fill_views: tuple[int, ...], wanted: tuple[int, ...], a: int, b: int) -> dict[int, np.ndarray]:
    """The filled views ``wanted`` (not the reference) of frames ``a .. b-1``, each ``uint8 (n, H, W, 3)``: the warp
    with the stored hole pixels. ``fill_views``: the views the stage stored, in its order."""
    if not wanted:
        return {}
    cells = source.cells(a, b, views=fill_views)
    holes, values = store.read(a, b, "holes"), store.read(a, b, "values")  # (n, Vf, H, W), (n, Vf, H, W, 3)
    rgb = (cells.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 0, 3, 4, 2).cpu().numpy()  # V n 3 H W -> n V H W 3
    out = {}
    for v in wanted:
        i = fill_views.index(v)
        out[v] = np.where(holes[:, i, ..., None], values[:, i], rgb[:, i])
    return out


class FillStage:
    """The fill stage (``svg3d.stages``): a filler (``fill.REGISTRY``) over the frame matrix, chunk by chunk.

    Reads the disparity the matrix uses (``disparity``: the stabilised stage, or depth's), the depth stage's shot
    scores for the ranges, and the filler's own pre-pass stages (diffusion: ``denoised``).
    """

    name = FILLED

    def __init__(self, clip, filler, filler_name: str, plan, config, *, disparity: str, pre: tuple[str, ...], device: torch.device,
                 chunk_frames: int, effect: Effect, check_effect: Callable[[MatrixSource], None] | None = None) -> None:  # fmt: skip
        self.clip, self.filler, self.filler_name, self.plan, self.config = clip, filler, filler_name, plan, config
        self.disparity, self.device, self.chunk_frames, self.check_effect = disparity, device, chunk_frames, check_effect
        self.effect = effect
        self.needs = tuple(dict.fromkeys(("depth", disparity, *pre)))
        whole = config.matrix.depth_range == "clip" or effect.warps  # a shot's effect needs its whole disparity
        self.lookahead = None if whole else filler.context + _range_lookahead(clip)

    def params(self) -> dict:
        return {
            "filler": self.filler_name, "filler_params": self.filler.params(), "plan": asdict(self.plan),
            "matrix": asdict(self.config.matrix), "fps": self.clip.info.fps,
        }  # fmt: skip

    def check(self) -> None:
        pass

    def run(self, inputs: dict, store, chunks: list[tuple[int, int]], progress: Callable[[int], None]) -> None:
        context = self.filler.context
        source = matrix_source(self.clip, self.name, inputs, self.disparity, self.plan, self.config, self.device, self.chunk_frames + 2 * context,
                               effect=self.effect)  # fmt: skip
        if self.check_effect is not None:
            self.check_effect(source)
        self.filler.bind(inputs)
        n_all = self.clip.num_frames
        for a, b in chunks:
            lo_t, hi_t = max(0, a - context), min(n_all, b + context)
            cells = source.cells(lo_t, hi_t, views=self.plan.fill_views)
            result = self.filler.fill(cells, (a, b))  # (V, n, 3, H, W)
            arrays, stats = pack(cells, result, a, b)
            store.commit(a, arrays, stats)
            progress(b - a)


def _range_lookahead(clip) -> int:
    from ... import shots

    return shots.range_lookahead(clip.info.fps)


def matrix_source(clip, reader: str, inputs: dict, disparity: str, plan, config, device, cache_frames: int, *,
                  effect: Effect | None = None) -> MatrixSource:  # fmt: skip
    """The frame matrix over the stores ``inputs`` (``disparity`` and ``depth`` for its shot scores) for ``reader``,
    each frame warped with its own effect (``Effect``) when the effect is set by strength."""
    store = inputs[disparity]
    lo = hi = ranges = remap = None
    if effect is not None and effect.warps:  # the effect's ranges (steady within a shot, whole clip) and its remap
        track, *_, lo, hi = effect.get(inputs)
        remap = track.remap if track.changed else None
    else:  # the ranges as the statistics arrive
        ranges = Ranges(inputs["depth"], store, config.matrix.depth_range, clip.info.fps)
    return MatrixSource(
        clip.reader(reader), lambda a, b: store.read(a, b, "disparity"), lo, hi, plan, config.matrix, device=device,
        cache_frames=cache_frames, ranges=ranges, remap=remap,
    )  # fmt: skip
