"""Stage 1: monocular disparity per frame (DESIGN.md §2).

The network (Depth Anything as ``depth_anything.DepthAnything``, or any other ``AutoModelForDepthEstimation``
checkpoint through transformers, loaded by ``models.load_depth_model``) predicts relative inverse depth — *disparity* in ``camera``'s terms,
larger = nearer, no unit. We save it raw (not normalised): stage 3 normalises over the whole clip.

Pre-/post-processing as the Depth Anything reference (``svg_run.py``): resize keeping the aspect so
the short side is >= 518 and both sides are multiples of 14 (bicubic), ImageNet normalisation; the
prediction is upsampled bilinearly to the frame size and clamped at 0.

Where disparity comes from is a ``DepthBackend``: the network (``ModelDepth``) or the user's own maps
(``FolderDepth``, ``--depth-from``). ``run_depth`` is the stage, chunk by chunk, for ``convert`` (into
a ``work.StageStore``) and for the seed script (``DepthFolder``: ``<out>/<stem>_depth.npy`` float32 per
frame and a colour-mapped ``<out>/preview/<stem>_depth.png``; the previews live in a sub-folder, unlike
the reference's, so that the depth folder holds depth maps only and ``io.list_depths`` stays strict).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .. import io
from ..checks import InputError, check_shape
from ..graphs import to_device
from ..models import DepthModel
from ..parts import Part, remove_stale_parts
from ..work import FrameChunks

log = logging.getLogger(__name__)

PREVIEW_DIR = "preview"
DEFAULT_BATCH_SIZE = 4  # frames per forward pass; memory only, results do not depend on it (config.DepthConfig)


def network_size(height: int, width: int, *, input_size: int = 518, multiple: int = 14) -> tuple[int, int]:
    """Network input ``(h, w)`` for a frame: aspect kept, short side >= ``input_size``, multiples of ``multiple``.

    Depth Anything's "lower_bound" resize: scale by ``input_size / short side``, round each side to
    the nearest multiple, rounding up instead when that would fall below ``input_size``.
    320x576 -> 518x938.
    """
    scale = input_size / min(height, width)

    def side(x: float) -> int:
        y = round(x / multiple) * multiple
        return y if y >= input_size else math.ceil(x / multiple) * multiple

    return side(height * scale), side(width * scale)


def preprocess(
    frames: torch.Tensor,
    size: tuple[int, int],
    *,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> torch.Tensor:
    """Resize and normalise frames for the network.

    frames: float ``(N, 3, H, W)`` RGB in [0, 1]. Returns float ``(N, 3, h, w)`` with ``size = (h, w)``.
    Bicubic as the reference's ``cv2.INTER_CUBIC`` (identical when enlarging); unlike it we
    antialias when shrinking (large videos), where plain bicubic would alias.
    """
    check_shape(frames, "N 3 H W", "frames")
    shrink = size[0] < frames.shape[-2] or size[1] < frames.shape[-1]
    x = F.interpolate(frames, size=size, mode="bicubic", align_corners=False, antialias=shrink)
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


@torch.inference_mode()
def predict_disparity(model: DepthModel, frames: torch.Tensor, *, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Relative disparity of each frame.

    frames: float ``(N, 3, H, W)`` RGB in [0, 1] (any device; moved to the model's).
    Returns float32 ``(N, h, w)`` >= 0 on the model's device, at ``size = (h, w)`` (default: the frames').
    """
    sizes = check_shape(frames, "N 3 H W", "frames")
    h, w = size if size is not None else (sizes["H"], sizes["W"])
    net_size = network_size(sizes["H"], sizes["W"], input_size=model.input_size, multiple=model.multiple)
    x = preprocess(frames.to(model.device, torch.float32), net_size, mean=model.mean, std=model.std)
    pred = model.net(x.to(model.dtype))  # (N, h', w'), about the input size
    pred = F.interpolate(pred.float()[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    return pred.clamp_min(0.0)


def depth_size(frame_size: tuple[int, int], resolution: int) -> tuple[int, int]:
    """(h, w) depth is kept at for frames of ``frame_size``: the frame's, or scaled so the short side is
    ``resolution`` when the frame is larger (``DepthConfig.resolution``), aspect kept."""
    h, w = frame_size
    if min(h, w) <= resolution:
        return h, w
    scale = resolution / min(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(n, h, w)`` float32 maps to ``size`` (bilinear, as the network's output is resized)."""
    if depth.shape[1:] == tuple(size):
        return depth
    t = F.interpolate(torch.from_numpy(np.ascontiguousarray(depth))[:, None], size=size, mode="bilinear", align_corners=False)
    return t[:, 0].numpy()


# --------------------------------------------------------------------------------------------------
# backends: where disparity comes from


class DepthBackend(Protocol):
    """Disparity for frames of the clip: ``backend(frames uint8 (n, H, W, 3), first) -> float32 (n, h, w)`` at ``size``.

    ``first`` is the index (in the converted range) of the first frame, for backends that read per-frame
    files. ``name`` goes into the stage's record. ``progress(n)`` (when given) as frames are done, n summing to them.
    """

    name: str

    def __call__(self, frames: np.ndarray, first: int, size: tuple[int, int], progress: Callable[[int], None] | None = None) -> np.ndarray: ...


class ModelDepth:
    """A depth network (``models.load_depth_model``), ``batch_size`` frames per forward pass.

    Everything between the decoded frames and the maps runs on the model's device, in its dtype
    (``models.default_dtype``: fp16 on CUDA, fp32 on a CPU): the chunk's frames go over as ``uint8`` (a quarter of
    float32's bytes) in one copy, the resize to multiples of 14 and the normalisation (``preprocess``, in float32)
    and the resize of the prediction back run there, and the chunk's maps come back in one copy, so that a GPU is
    not stopped by a transfer between batches.
    """

    def __init__(self, model: DepthModel, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.batch_size, self.name = model, batch_size, model.name

    def __call__(self, frames: np.ndarray, first: int, size: tuple[int, int], progress: Callable[[int], None] | None = None) -> np.ndarray:
        _check_frames(frames)
        device = self.model.device
        rgb = to_device(frames, device)  # (T, H, W, 3) uint8
        out = []
        for i in range(0, len(frames), self.batch_size):
            batch = rgb[i : i + self.batch_size].permute(0, 3, 1, 2)  # (B, H, W, 3) -> (B, 3, H, W) uint8
            batch = batch.float() / 255.0  # [0, 1]
            out.append(predict_disparity(self.model, batch, size=size))  # (B, h, w) float32 on the device
            if progress is not None:  # (on CUDA: the batch is queued; the bar waits for the chunk's maps at its end)
                progress(len(batch))
        return torch.cat(out).cpu().numpy()


class FolderDepth:
    """Depth maps from a folder (``--depth-from``, and the seed scripts' depth folders): file ``start + i`` in
    natural order for frame ``i``.

    ``num_frames``: the frames of the converted range, which the folder must cover; ``total_frames``: the
    frames of the whole input, which must be exactly as many as the maps when given (``convert``: maps
    pair with frames by order, so another count means another clip's folder); ``frame_sizes``: the input's
    stored (H, W), which every map must have, or the frames' (H, W) when the frames are resized.
    ``files``: the maps in frame order, when the caller listed them (a depth suffix, a seed layout). ``kind``: what
    the maps hold (``config.DEPTH_KINDS``): inverse depth or disparity are read as they are, depth is inverted.
    Maps are resized to the requested size bilinearly. Read lazily, one chunk at a time; partly negative
    maps are said once in the log (they become infinitely far where negative).

    It is also the depth stage's store for the seed scripts' folders: ``read(a, b, "disparity")`` gives the maps at
    ``size`` (None: as stored), ``stats`` their per-frame statistics (``frame_stats``) and ``num_frames`` the range's.
    """

    def __init__(
        self,
        folder: Path,
        *,
        start: int = 0,
        num_frames: int,
        frame_sizes: tuple[tuple[int, int], ...],
        total_frames: int | None = None,
        files: list[Path] | None = None,
        kind: str = "inverse",
        size: tuple[int, int] | None = None,
    ) -> None:
        self.folder, self.start, self.name, self.kind = Path(folder), start, f"folder:{folder}", kind
        self.num_frames, self.size = num_frames, size
        self._stats: dict[str, np.ndarray] | None = None
        self.files = list(files) if files is not None else io.list_depths(self.folder)
        self.frame_sizes = frame_sizes
        self._warned = False
        if total_frames is not None and len(self.files) != total_frames:
            raise InputError(f"depth_from {folder}: {len(self.files)} depth maps for {total_frames} frames", params=("depth_from",))
        if len(self.files) < start + num_frames:
            raise InputError(f"depth_from {folder}: {len(self.files)} depth maps for {start + num_frames} frames", params=("depth_from",))

    def __call__(self, frames: np.ndarray, first: int, size: tuple[int, int], progress: Callable[[int], None] | None = None) -> np.ndarray:
        return self.read(first, first + len(frames), size, progress=progress)

    def read(self, a: int, b: int, size: tuple[int, int] | str | None = None, *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """The maps of frames ``a .. b-1`` of the range, float32 ``(b - a, h, w)`` at ``size`` (None: as stored; the
        name ``"disparity"``, as a stage store is read: at the folder's ``size``); ``progress(1)`` after each."""
        size = self.size if isinstance(size, str) else size
        maps = []
        for f in self.files[self.start + a : self.start + b]:
            d = io.read_depth(f)
            if not self._warned and (d < 0).any():  # once per folder, not once per frame
                log.warning("%s: negative depth values (from %s on) are taken as 0: infinitely far", self.folder, f.name)
                self._warned = True
            if d.shape not in self.frame_sizes:
                h, w = self.frame_sizes[0]
                raise InputError(f"{f}: depth size {d.shape[1]}x{d.shape[0]} differs from the frame size {w}x{h}")
            if self.kind == "depth":  # distance -> inverse depth; no distance (0 or less) is infinitely far
                d = np.where(d > 0, 1.0 / np.maximum(d, 1e-12), 0.0).astype(np.float32)
            maps.append(d if size is None else resize_depth(d[None], size)[0])
            if progress is not None:
                progress(1)
        return np.stack(maps)


    def stats(self, name: str, end: int | None = None) -> np.ndarray:
        """Per-frame statistic ``name`` (``frame_stats``) of frames ``0 .. end-1`` of the maps ``read(a, b, "disparity")``
        gives, computed on first use, ``STATS_CHUNK`` maps at a time."""
        if self._stats is None:
            parts = [frame_stats(self.read(a, min(a + STATS_CHUNK, self.num_frames), "disparity")) for a in range(0, self.num_frames, STATS_CHUNK)]
            self._stats = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return self._stats[name][: self.num_frames if end is None else end]


STATS_CHUNK = 16  # maps read at a time for ``FolderDepth.stats``: memory only


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames: expected uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")


def frame_stats(disparity: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame statistics of ``(n, h, w)`` disparity that stages after this one need over the whole clip:
    min and max (the reference's normalisation) and the 1st/99th percentiles (robust per-shot ranges)."""
    flat = disparity.reshape(len(disparity), -1)
    lo, hi = np.percentile(flat, [1.0, 99.0], axis=1)
    return {"min": flat.min(1), "max": flat.max(1), "p01": lo, "p99": hi}


# --------------------------------------------------------------------------------------------------
# previews


def preview_image(disparity: np.ndarray, *, grayscale: bool = False) -> np.ndarray:
    """``uint8`` RGB ``(H, W, 3)`` picture of a ``(H, W)`` disparity, min-max normalised per frame."""
    lo, hi = float(disparity.min()), float(disparity.max())
    norm = (disparity - lo) / (hi - lo) if hi > lo else np.zeros_like(disparity)
    grey = np.round(norm * 255.0).astype(np.uint8)
    if grayscale:
        return np.repeat(grey[..., None], 3, axis=-1)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def write_previews(out_dir: Path, names: list[str], disparity: np.ndarray, *, grayscale: bool = False) -> None:
    """Write ``out_dir/preview/<name>.png`` for each ``(H, W)`` map of ``disparity (B, H, W)``."""
    for name, d in zip(names, disparity, strict=True):
        io.write_image(out_dir / PREVIEW_DIR / f"{name}.png", preview_image(d, grayscale=grayscale))


# --------------------------------------------------------------------------------------------------
# the stage


def run_depth(
    frames: Callable[[int, int], np.ndarray],
    backend: DepthBackend,
    out: FrameChunks,
    chunks: list[tuple[int, int]],
    *,
    size: tuple[int, int],
    analyse: Callable[[int, np.ndarray], dict[str, np.ndarray]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Stage 1 over ``chunks`` [(a, b), ...]: ``frames(a, b)`` -> disparity ``(n, h, w)`` at ``size`` -> ``out.commit``;
    ``progress(n)`` as the backend does frames.

    Each chunk commits ``{"disparity": ...}`` with ``frame_stats`` and ``analyse(a, frames)``'s per-frame
    statistics (``convert`` measures shot changes there, on frames it has decoded anyway). Memory holds
    one chunk.
    """
    for a, b in chunks:
        rgb = frames(a, b)
        disparity = backend(rgb, a, size, progress).astype(np.float32, copy=False)
        bad = ~np.isfinite(disparity)
        if bad.any():
            raise InputError(f"depth of frame {a + int(np.argwhere(bad)[0][0])}: {int(bad.sum())} NaN/inf values ({backend.name})")
        stats = frame_stats(disparity)
        if analyse is not None:
            stats.update(analyse(a, rgb))
        out.commit(a, {"disparity": disparity}, stats)


class DepthFolder:
    """``FrameChunks`` writing the reference's layout: ``<out>/<stem>_depth.npy`` per frame and previews.

    For the seed scripts (``svg_run.py``, ``svg_enhance_depth.py``): no resume, every frame is computed. Used as
    a context manager: the maps go to a hidden part folder inside ``out`` (``parts``) and are moved into place
    once every frame is done, so a run that fails or is killed part-way leaves ``out``'s maps as they were,
    never a set that mixes two runs (a killed run's part is removed by the next run).
    """

    def __init__(self, out_dir: Path, names: tuple[str, ...], *, preview: bool = True, grayscale: bool = False, suffix: str = "_depth") -> None:
        out_dir = Path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(f"{out_dir}: exists and is not a folder")
        self.out_dir, self.names, self.preview, self.grayscale, self.suffix = out_dir, names, preview, grayscale, suffix
        self.written: list[Path] = []  # the maps in place, once the run is complete
        self._part: Part | None = None

    def __enter__(self) -> DepthFolder:
        remove_stale_parts(self.out_dir)
        try:
            self._part = Part(self.out_dir / "depth-maps", folder=True)
        except OSError as e:
            raise self._named(e) from None
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._part.discard()
            return
        staged = sorted(f for f in self._part.path.rglob("*") if f.is_file())
        for f in staged:
            final = self.out_dir / f.relative_to(self._part.path)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, final)
            if final.suffix == ".npy":
                self.written.append(final)
        self._part.discard()

    def _staged(self, path: Path) -> Path:
        if self._part is None:
            raise RuntimeError("DepthFolder is written inside a with block")
        return self._part.path / path.relative_to(self.out_dir)

    def plan(self, chunk_frames: int) -> list[tuple[int, int]]:
        n = len(self.names)
        return [(a, min(a + chunk_frames, n)) for a in range(0, n, chunk_frames)]

    def commit(self, first: int, arrays: dict[str, np.ndarray], stats: dict[str, np.ndarray] | None = None) -> None:
        disparity = arrays["disparity"]
        names = [f"{stem}{self.suffix}" for stem in self.names[first : first + len(disparity)]]
        try:
            for name, d in zip(names, disparity, strict=True):
                io.write_depth(self._staged(self.out_dir / f"{name}.npy"), d)
            if self.preview:
                write_previews(self._staged(self.out_dir), names, disparity, grayscale=self.grayscale)
        except OSError as e:
            raise self._named(e) from None

    def _named(self, e: OSError) -> OSError:
        """``e`` naming the file in the folder the user gave, not in the hidden part."""
        where = Path(e.filename) if e.filename else self.out_dir
        if self._part is not None and where.is_relative_to(self._part.path):
            where = self.out_dir / where.relative_to(self._part.path)
        return OSError(e.errno, e.strerror, str(where))




# --------------------------------------------------------------------------------------------------
# the stage


# the parameters a missing model's message names (``models.model_not_found``): convert's; the seed script names its own
CONVERT_FLAGS = {"flag": "depth_model", "alternative": "depth_from"}


def _model_backend(config, clip, device, flags=CONVERT_FLAGS) -> DepthBackend:
    from .. import models

    model = models.load_depth_model(config.model, device=device, **flags)
    return ModelDepth(model, batch_size=config.batch_size)


def _folder_backend(config, clip, device, flags=CONVERT_FLAGS) -> DepthBackend:
    """The ``--depth-from`` maps: one per frame of the whole input (checked), file ``start + i`` for frame ``i``."""
    info = clip.info
    return FolderDepth(
        config.depth_from, start=info.start, num_frames=info.num_frames, frame_sizes=(info.stored_size, info.size),
        total_frames=info.total_frames, kind=config.depth_kind,
    )  # fmt: skip


def check_depth_kind(maps: FolderDepth, num_frames: int, samples: int = 5) -> None:
    """Warn when ``--depth-from`` maps said to be inverse depth look like distances (or the other way round).

    In most footage the top of the frame is farther than the bottom (sky, ceilings, the far side of a room over the
    floor in front): inverse depth is then smaller at the top. Maps whose top rows are larger than their bottom rows
    on most of a few frames probably hold the other kind, which would turn the 3D inside out.
    """
    frames = sorted({round(i * (num_frames - 1) / max(1, samples - 1)) for i in range(samples)})
    votes = 0
    for i in frames:
        d = maps.read(i, i + 1)[0]
        band = max(1, d.shape[0] // 5)
        top, bottom = float(np.median(d[:band])), float(np.median(d[-band:]))
        votes += top > bottom * 1.5
    if votes > len(frames) / 2:
        other = "depth" if maps.kind in ("inverse", "disparity") else "inverse"
        log.warning(
            "depth_from %s: the maps are larger at the top of the frame than at the bottom in %d of %d frames looked at, as "
            "%s maps are; they are read as %s (larger = %s): if they hold %s, pass --depth-kind %s",
            maps.folder, votes, len(frames), other, maps.kind, "nearer" if maps.kind != "depth" else "farther", other, other,
        )  # fmt: skip


def _model_check(config, flags=CONVERT_FLAGS) -> None:
    from .. import models

    models.check_available(config.model, "depth model", **flags)


# Where disparity comes from: name -> (make(config, clip, device, flags), check(config, flags), what identifies it in the
# key).
# A new backend is one class following ``DepthBackend`` and one row here (and a way for the config to choose it).
BACKENDS: dict[str, tuple[Callable, Callable, Callable]] = {
    "model": (_model_backend, _model_check, lambda c: {"model": c.model}),
    "folder": (_folder_backend, lambda c, flags: None, lambda c: {"from": depth_fingerprint(c.depth_from), "kind": c.depth_kind}),
}


def depth_fingerprint(folder: Path) -> str:
    from ..work import digest, sha256_file

    return digest({f.name: sha256_file(f) for f in io.list_depths(folder)})


class DepthStage:
    """Stage 1 in the pipeline (``svg3d.stages``): disparity at ``depth_size``, frame statistics, shot-change scores."""

    name = "depth"
    needs = ()
    lookahead = 0
    spread = True

    def __init__(self, clip, config, device: torch.device, *, flags: dict = CONVERT_FLAGS) -> None:
        from .. import shots

        self.clip, self.config, self.device, self.flags = clip, config, device, flags
        self.backend_name = "folder" if config.depth_from is not None else "model"
        self.size = depth_size(clip.info.size, config.resolution)
        self._shots = shots

    def params(self) -> dict:
        info = self.clip.info
        source = BACKENDS[self.backend_name][2](self.config)
        clip = {"input": self.clip.fingerprint, "start": info.start, "frames": info.num_frames, "size": info.size}
        return {**source, "size": self.size, "clip": clip}

    def check(self) -> None:
        if self.backend_name == "folder":
            check_depth_kind(_folder_backend(self.config, self.clip, self.device), self.clip.num_frames)  # and they pair with the frames
        BACKENDS[self.backend_name][1](self.config, self.flags)

    def run(self, inputs: dict, store, chunks: list[tuple[int, int]], progress: Callable[[int], None]) -> None:
        backend = BACKENDS[self.backend_name][0](self.config, self.clip, self.device, self.flags)
        frames = self.clip.reader(self.name)
        shots = self._shots
        last: dict[int, np.ndarray] = {}  # the signature of the frame before the next chunk

        def cut_scores(first: int, rgb: np.ndarray) -> dict[str, np.ndarray]:
            """Shot-change score of each frame of a chunk (``shots.cut_scores``), against the frame before it."""
            previous = None
            if first > 0:  # the previous chunk's last frame; read again only where a run resumes
                previous = last[first - 1] if first - 1 in last else shots.frame_signature(self.clip.frames(first - 1, first))[0]
            signatures = shots.frame_signature(rgb)
            last.clear()
            last[first + len(rgb) - 1] = signatures[-1]
            return {"cut": shots.cut_scores(signatures, previous)}

        run_depth(frames, backend, store, chunks, size=self.size, analyse=cut_scores, progress=progress)
