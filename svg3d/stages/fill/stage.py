"""The fill stage in the pipeline, and its stored format (written by ``pack``, read back by ``views``).

The stage keeps only the hole pixels of the views it fills: per chunk ``holes`` bool ``(n, V, H, W)`` and
``values`` uint8 ``(n, V, H, W, 3)`` (0 outside the holes; deflate makes those nearly free). The known pixels are the
warp of the input, which ``matrix.MatrixSource`` recomputes exactly, so a view is the warp with the stored holes
written in (``views``); on a CPU the stage hands the cells it warped on to the export (``matrix.HandOn``), which then
warps only those it was not handed. Its folder (and its pre-pass's) is named by the view count (``store_name``): a run with another
count leaves this one's fill for a run that comes back to it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ... import shots
from ...graphs import to_device
from ..matrix import Cells, Cuts, Effect, HandOn, MatrixSource, matrix_source

FILLED = "filled"

log = logging.getLogger(__name__)


def pack(cells: Cells, result: torch.Tensor, a: int, b: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The chunk arrays and per-frame stats of frames ``a .. b-1`` filled as ``result`` ``(V, n, 3, H, W)`` in [0, 1]
    from ``cells`` (which may start before ``a``, for the filler's context)."""
    holes = ~cells.known[:, a - cells.first : b - cells.first]  # (V, n, H, W)
    rgb = (result.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 0, 3, 4, 2)  # V n 3 H W -> n V H W 3
    mask = holes.permute(1, 0, 2, 3)  # V n H W -> n V H W
    values = torch.where(mask[..., None], rgb, 0)
    share = mask.flatten(2).float().mean(2)  # (n, V) hole share per frame and view
    return {"holes": mask.cpu().numpy(), "values": values.cpu().numpy()}, {"holes": share.amax(1).cpu().numpy()}


def views(
    source: MatrixSource, store, fill_views: tuple[int, ...], wanted: tuple[int, ...], a: int, b: int, *, on_device: bool = False
) -> dict[int, np.ndarray | torch.Tensor]:
    """The filled views ``wanted`` (not the reference) of frames ``a .. b-1``, each ``uint8 (n, H, W, 3)``: the warp
    with the stored hole pixels. ``fill_views``: the views the stage stored, in its order. ``on_device``: tensors on the
    warp's device (the hole pixels copied there), for exports made there, instead of numpy arrays."""
    if not wanted:
        return {}
    cells = source.cells(a, b, views=fill_views)
    holes, values = store.read(a, b, "holes"), store.read(a, b, "values")  # (n, Vf, H, W), (n, Vf, H, W, 3)
    rgb = (cells.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 0, 3, 4, 2)  # V n 3 H W -> n V H W 3
    if on_device:
        dev = rgb.device
        return {v: torch.where(to_device(holes[:, i, ..., None], dev), to_device(values[:, i], dev), rgb[:, i])
                for v, i in ((v, fill_views.index(v)) for v in wanted)}  # fmt: skip
    rgb = rgb.cpu().numpy()
    out = {}
    for v in wanted:
        i = fill_views.index(v)
        out[v] = np.where(holes[:, i, ..., None], values[:, i], rgb[:, i])
    return out


def store_name(stage: str, num_views: int | str | None) -> str:
    """A stage's folder and record in the work folder: ``filled-2views`` for the stages made for a view plan (the fill
    and its pre-pass: ``num_views`` given; ``"*"``: the glob of them all), so that a run with another view count keeps
    this count's data and a run back at this count reuses them (or resumes them); the stage's name for the others."""
    return stage if num_views is None else f"{stage}-{num_views}views"


def store_folder(stage: str, params: dict) -> str:
    """``store_name`` of a stage from its parameters (the record's key): per view count when they hold a view plan."""
    return store_name(stage, params["plan"]["num_views"] if "plan" in params else None)


def say_other_fills(work_dir: Path, store, plan) -> None:
    """One line for each other view count whose fill the work folder holds, when the fill (``store``) runs for ``plan``'s
    count: what this count costs against that one, and that the other is kept."""
    for path in sorted(work_dir.glob(f"{store_name(FILLED, '*')}.json")):
        if path == store.record_path:
            continue
        try:
            there = json.loads(path.read_text())["params"]["plan"]
        except (OSError, ValueError, KeyError, TypeError):  # not a record of ours: nothing to say about it
            continue
        views, fill, now = there["num_views"], len(there["fill_views"]), len(plan.fill_views)
        log.info(
            "views: %d now, and the work folder holds the fill of %d views: this run fills %s where that one filled %s (about "
            "%.3gx its time and memory); the %d-view fill is kept, and a run with %d views again reuses it",
            plan.num_views, views, _views(now), _views(fill), now / max(fill, 1), views, views,
        )  # fmt: skip


def _views(n: int) -> str:
    return f"{n} view" if n == 1 else f"{n} views"


class FillStage:
    """The fill stage (``svg3d.stages``): a filler (``fill.REGISTRY``) over the frame matrix, chunk by chunk.

    Reads the disparity the matrix uses (``disparity``: the stabilised stage, or depth's), the depth stage's shot
    scores for the ranges, and the filler's own pre-pass stages (diffusion: ``denoised``).
    """

    name = FILLED
    spread = True

    def __init__(self, clip, filler, filler_name: str, plan, config, *, disparity: str, pre: tuple[str, ...], device: torch.device,
                 chunk_frames: int, effect: Effect, check_effect: Callable[[MatrixSource], None] | None = None,
                 hand_on: HandOn | None = None) -> None:  # fmt: skip
        self.clip, self.filler, self.filler_name, self.plan, self.config = clip, filler, filler_name, plan, config
        self.hand_on = hand_on  # the cells it warps, offered to the export (matrix.HandOn)
        self.disparity, self.device, self.chunk_frames, self.check_effect = disparity, device, chunk_frames, check_effect
        self.effect = effect
        self.needs = tuple(dict.fromkeys(("depth", disparity, *pre)))
        # a shot's effect needs its whole disparity: worked out shot by shot (``Effect.per_shot``), or from the whole clip
        self.whole_shots = effect.per_shot
        whole = config.matrix.depth_range == "clip" or (effect.warps and not effect.per_shot)
        self.lookahead = None if whole else filler.context + (0 if self.whole_shots else shots.range_lookahead(clip.info.fps))
        self.context = filler.context  # input frames it reads on each side of a chunk (``Clip.defer``'s window)
        self._checked, self._lock = False, threading.Lock()

    def _check_once(self) -> bool:
        """True the first time only (the fill's runs at once share the stage: one warning)."""
        with self._lock:
            first, self._checked = not self._checked, True
            return first

    def params(self) -> dict:
        return {
            "filler": self.filler_name, "filler_params": self.filler.params(), "plan": asdict(self.plan),
            "matrix": asdict(self.config.matrix), "fps": self.clip.info.fps,
            "shots": "apart",  # the context stops at a cut and the effect's remap is per frame: not a fill made before
        }  # fmt: skip

    def check(self) -> None:
        pass

    def run(self, inputs: dict, store, chunks: list[tuple[int, int]], progress: Callable[[int], None]) -> None:
        context = self.filler.context
        source = matrix_source(self.clip, self.name, inputs, self.disparity, self.plan, self.config, self.device, self.chunk_frames + 2 * context,
                               effect=self.effect, hand_on=self.hand_on)  # fmt: skip
        self.filler.bind(inputs)
        n_all = self.clip.num_frames
        cuts = Cuts(inputs["depth"])
        for a, b in chunks:
            # the effect's check looks at the middle frame's disparity: at once when the fill waited for the whole
            # clip's, else once the fill gets there (waiting for it first would hold the fill's reader at its first
            # frame while the stages before it wait for that reader to move on: a run of stages at once hung there)
            if self.check_effect is not None and (self.lookahead is None or b > n_all // 2) and self._check_once():
                self.check_effect(source)
            # the filler's context stops at a cut: the other shot's frames are no view of this one's scene (filled
            # across a cut, rendered clips lost 0.7-2.5 dB near it); the cuts before b + context are final from there
            cuts.read(min(n_all, b + context + shots.CUT_NEIGHBOURHOOD))
            parts = []
            for s, e, lo_t, hi_t in shots.chunk_pieces(cuts.final, a, b, context, n_all):
                cells = source.cells(lo_t, hi_t, views=self.plan.fill_views)
                result = self.filler.fill(cells, (s, e), progress)  # (V, n, 3, H, W); progress as it fills the frames
                parts.append(pack(cells, result, s, e))
            arrays, stats = parts[0] if len(parts) == 1 else ({k: np.concatenate([p[i][k] for p in parts]) for k in parts[0][i]} for i in (0, 1))
            store.commit(a, arrays, stats)
