"""The frame matrix: V views x T frames of warped pixels and known-masks (DESIGN.md §4).

In memory (conventions in ``camera``): ``images (V, T, 3, H, W)`` float32 in [0, 1] with holes 0,
``masks (V, T, 1, H, W)`` bool, True = known. A *column* is one view over time; a *row* is one time
over the views.

On disk, the reference layout, so that matrices made by either implementation load in both::

    {frame:05d}_baseline_{B}_{view:03d}.jpg        warped RGB (or .png with lossless=True)
    {frame:05d}_baseline_{B}_{view:03d}_mask.png   known-mask, 0 / 255
    manifest.json                                  ours: baselines, layout, focal, sizes, format

``manifest.json`` is written last, so a folder with a manifest is complete; while a folder is being
written it holds ``.unfinished``, and a folder a failed or killed run left with it is refused. Folders
without either (made by the reference) are read by parsing the file names.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import camera, comfort, io, memory
from ..checks import InputError, check_shape
from ..config import MatrixConfig
from ..graphs import to_device

MANIFEST = "manifest.json"
UNFINISHED = ".unfinished"  # in a frame-matrix folder being written (``MatrixWriter``); removed once complete
_NAME = re.compile(r"^(\d+)_baseline_(.+)_(\d+)_mask\.png$")


@dataclass(frozen=True)
class MatrixInfo:
    """What a frame matrix on disk holds (its ``manifest.json``)."""

    num_views: int
    num_frames: int
    height: int
    width: int
    baselines: tuple[float, ...]  # metres, per view (camera.view_baselines)
    max_baseline: float
    layout: str  # camera.Layout value
    focal: float  # pixels
    image_suffix: str = ".jpg"  # ".jpg" (reference) or ".png" (lossless)
    frame_names: tuple[str, ...] = ()  # stems of the source frames, if known
    fps: float = io.DEFAULT_FPS
    # how depth became Z (camera.disparity_to_depth), recorded so that resume can compare runs
    nearest_depth: float = -1.0
    farest_depth: float = camera.DEFAULT_FAREST_DEPTH
    metric_depth: bool = False
    num_planes: int = 4
    screen: float = 0.0  # inverse depth (1/m) of the screen plane (camera conventions); 0: at infinity, the paper's

    @property
    def reference_view(self) -> int:
        return camera.reference_view(self.num_views, self.layout)


@dataclass
class FrameMatrix:
    """Warped views and their known-masks.

    images: float32 ``(V, T, 3, H, W)`` in [0, 1], 0 in holes.
    masks:  bool ``(V, T, 1, H, W)``, True = known.
    info:   sizes, baselines and camera.
    """

    images: torch.Tensor
    masks: torch.Tensor
    info: MatrixInfo

    def __post_init__(self) -> None:
        s = check_shape(self.images, "V T 3 H W", "images")
        m = check_shape(self.masks, "V T 1 H W", "masks")
        if (s["V"], s["T"], s["H"], s["W"]) != (m["V"], m["T"], m["H"], m["W"]):
            raise ValueError(f"images {tuple(self.images.shape)} and masks {tuple(self.masks.shape)} disagree")
        if self.masks.dtype != torch.bool:
            raise ValueError(f"masks must be bool, got {self.masks.dtype}")


def file_stem(frame: int, view: int, max_baseline: float) -> str:
    """The reference's name for one cell: ``%05d_baseline_%s_%03d`` (``%s`` of a Python float)."""
    return "%05d_baseline_%s_%03d" % (frame, max_baseline, view)  # noqa: UP031 (the reference format, verbatim)


def matrix_info(
    plan: camera.ViewPlan, config: MatrixConfig, *, size: tuple[int, int], num_frames: int, names: tuple[str, ...] = (), fps: float = io.DEFAULT_FPS
) -> MatrixInfo:
    """The manifest of the frame matrix of ``num_frames`` frames of ``size`` (H, W) under a view plan."""
    return MatrixInfo(
        num_views=plan.num_views, num_frames=num_frames, height=size[0], width=size[1], baselines=plan.baselines,
        max_baseline=plan.max_baseline, layout=plan.layout.value, focal=plan.focal, image_suffix=".png" if config.lossless else ".jpg",
        frame_names=tuple(names), fps=fps, nearest_depth=config.nearest_depth, farest_depth=config.farest_depth,
        metric_depth=config.metric_depth, num_planes=config.num_planes, screen=plan.screen,
    )  # fmt: skip


def save_frame_matrix(fm: FrameMatrix, folder: str | Path, *, jpeg_quality: int = 95) -> None:
    """Write every cell atomically, then the manifest (whose presence marks the folder complete)."""
    writer = MatrixWriter.for_info(folder, fm.info, jpeg_quality=jpeg_quality)
    writer.commit(0, {"images": fm.images, "known": fm.masks[:, :, 0]})
    writer.close()


class MatrixWriter:
    """Writes a frame-matrix folder chunk by chunk in the reference layout; ``close`` writes the manifest last."""

    def __init__(self, folder: str | Path, plan: camera.ViewPlan, config: MatrixConfig, source_info, *, jpeg_quality: int = 95) -> None:
        info = matrix_info(plan, config, size=source_info.size, num_frames=source_info.num_frames, names=source_info.names, fps=source_info.fps)
        self._init(folder, info, jpeg_quality)

    @classmethod
    def for_info(cls, folder: str | Path, info: MatrixInfo, *, jpeg_quality: int = 95) -> MatrixWriter:
        writer = cls.__new__(cls)
        writer._init(folder, info, jpeg_quality)
        return writer

    def _init(self, folder: str | Path, info: MatrixInfo, jpeg_quality: int) -> None:
        self.folder, self.info, self.jpeg_quality = Path(folder), info, jpeg_quality
        self.known_pixels = 0  # of the cells committed: the share of holes is what create_frame_matrix.py reports
        self.folder.mkdir(parents=True, exist_ok=True)
        # Incomplete until ``close``: without its manifest the cells written so far would read as a shorter
        # matrix (``_infer_info``), so the folder is marked until then.
        io.write_text(self.folder / UNFINISHED, "create_frame_matrix.py has not finished this frame matrix\n")
        (self.folder / MANIFEST).unlink(missing_ok=True)

    def plan(self, chunk_frames: int) -> list[tuple[int, int]]:
        n = self.info.num_frames
        return [(a, min(a + chunk_frames, n)) for a in range(0, n, chunk_frames)]

    def commit(self, first: int, arrays: dict[str, torch.Tensor], stats: dict | None = None) -> None:
        """Cells of frames ``first ..``: ``images`` ``(V, n, 3, H, W)`` in [0, 1], ``known`` ``(V, n, H, W)`` bool."""
        images, known = arrays["images"], arrays["known"]
        self.known_pixels += int(known.sum())
        rgb = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()  # V n H W 3
        mask = known.cpu().numpy().astype(np.uint8) * 255  # V n H W
        for v in range(rgb.shape[0]):
            for i in range(rgb.shape[1]):
                stem = file_stem(first + i, v, self.info.max_baseline)
                io.write_image(self.folder / f"{stem}{self.info.image_suffix}", rgb[v, i], jpeg_quality=self.jpeg_quality)
                io.write_image(self.folder / f"{stem}_mask.png", mask[v, i])

    def close(self) -> None:
        io.write_text(self.folder / MANIFEST, json.dumps(asdict(self.info), indent=1))
        (self.folder / UNFINISHED).unlink(missing_ok=True)


def read_matrix_info(folder: str | Path) -> MatrixInfo:
    """The manifest of a frame-matrix folder, or one inferred from reference file names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such frame-matrix folder")
    if (folder / UNFINISHED).exists():
        raise InputError(f"{folder}: an unfinished frame matrix (its writer stopped before the end); make it again")
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
            data["baselines"] = tuple(data["baselines"])
            data["frame_names"] = tuple(data.get("frame_names", ()))
            return MatrixInfo(**data)
        except (ValueError, TypeError, KeyError) as e:
            raise InputError(f"{manifest}: unreadable manifest ({e})") from None
    return _infer_info(folder)


def _infer_info(folder: Path) -> MatrixInfo:
    cells: dict[tuple[int, int], str] = {}
    baselines: set[str] = set()
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if m:
            cells[int(m.group(1)), int(m.group(3))] = m.group(2)
            baselines.add(m.group(2))
    if not cells:
        raise InputError(f"{folder}: no frame-matrix files (*_baseline_*_mask.png) in this folder")
    if len(baselines) > 1:
        raise InputError(f"{folder}: frame matrices of several baselines mixed ({sorted(baselines)})")
    num_frames = max(t for t, _ in cells) + 1
    num_views = max(v for _, v in cells) + 1
    max_baseline = float(baselines.pop())
    suffix = ".png" if (folder / (file_stem(0, 0, max_baseline) + ".png")).is_file() else ".jpg"
    first = io.read_image(folder / (file_stem(0, 0, max_baseline) + suffix))
    h, w = first.shape[:2]
    # The reference writes no manifest; its default is left2right-like numbering (view 0 = input).
    layout = camera.Layout.LEFT2RIGHT
    return MatrixInfo(
        num_views=num_views,
        num_frames=num_frames,
        height=h,
        width=w,
        baselines=tuple(camera.view_baselines(num_views, max_baseline, layout).tolist()),
        max_baseline=max_baseline,
        layout=layout.value,
        focal=camera.default_focal(w),
        image_suffix=suffix,
    )


class MatrixFolder:
    """A frame-matrix folder read by frame range (``svg.py`` reads it window by window), checked for the views and
    frames asked for: ``num_views`` must equal the views on disk when given; ``num_frames``/``start_frame``: the
    frame range (all when ``None``). ``info``: the manifest of that range. Every missing file is an ``InputError``
    naming it."""

    def __init__(self, folder: str | Path, *, num_views: int | None = None, num_frames: int | None = None, start_frame: int = 0) -> None:
        folder = Path(folder)
        info = read_matrix_info(folder)
        if num_views is not None and num_views != info.num_views:
            raise InputError(f"{folder}: holds {info.num_views} views, but --num_views is {num_views}")
        frames = info.num_frames - start_frame if num_frames is None else num_frames
        if start_frame + frames > info.num_frames or frames < 1:
            raise InputError(f"{folder}: holds {info.num_frames} frames, but frames {start_frame}..{start_frame + frames - 1} were asked for")
        self.folder, self.start = folder, start_frame
        self.info = MatrixInfo(**{**asdict(info), "num_frames": frames, "frame_names": info.frame_names[start_frame : start_frame + frames]})
        for v in range(info.num_views):  # a missing cell fails now, not in the middle of a run that reads it late
            for t in range(start_frame, start_frame + frames):
                for suffix in (info.image_suffix, "_mask.png"):
                    if not (path := folder / f"{file_stem(t, v, info.max_baseline)}{suffix}").is_file():
                        raise InputError(f"{path}: no such image file")

    def read(self, a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``a .. b-1`` of the range: images float32 ``(V, n, 3, H, W)`` in [0, 1], masks bool ``(V, n, 1, H, W)``."""
        info, folder = self.info, self.folder
        images = np.empty((info.num_views, b - a, info.height, info.width, 3), np.uint8)
        masks = np.empty((info.num_views, b - a, info.height, info.width), bool)
        for v in range(info.num_views):
            for i in range(b - a):
                stem = file_stem(self.start + a + i, v, info.max_baseline)
                img = io.read_image(folder / f"{stem}{info.image_suffix}")
                mask_path = folder / f"{stem}_mask.png"
                mask = io.read_image(mask_path)[..., 0]
                for what, arr, path in (("image", img, stem + info.image_suffix), ("mask", mask, mask_path.name)):
                    if arr.shape[:2] != (info.height, info.width):
                        raise InputError(f"{folder / path}: {what} is {arr.shape[1]}x{arr.shape[0]}, the matrix is {info.width}x{info.height}")
                images[v, i] = img
                masks[v, i] = mask > 127
        return torch.from_numpy(images).permute(0, 1, 4, 2, 3).float() / 255, torch.from_numpy(masks)[:, :, None]  # V n H W 3 -> V n 3 H W


def load_frame_matrix(
    folder: str | Path,
    *,
    num_views: int | None = None,
    num_frames: int | None = None,
    start_frame: int = 0,
) -> FrameMatrix:
    """Load a frame matrix (``MatrixFolder``'s range, whole)."""
    m = MatrixFolder(folder, num_views=num_views, num_frames=num_frames, start_frame=start_frame)
    images, masks = m.read(0, m.info.num_frames)
    return FrameMatrix(images=images, masks=masks, info=m.info)


def build_frame_matrix(
    frames: torch.Tensor,
    depth: torch.Tensor,
    info: MatrixInfo,
    *,
    num_planes: int = 4,
    chunk: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> FrameMatrix:
    """Warp every frame to every view of ``info`` (DESIGN.md §4).

    frames: float ``(T, 3, H, W)`` in [0, 1]. depth: metric depth ``Z`` ``(T, H, W)`` (see
    ``camera.disparity_to_depth``). The reference view is the input frame with an all-ones mask.
    ``chunk``: frames warped per batch (bounds memory; the result does not depend on it). Default:
    2 on the CPU (the working set then stays in cache, ~2x faster than 16), all frames on CUDA.
    ``progress``: called with the number of frames done after each chunk.
    """
    from ..warp import warp_views

    s = check_shape(frames, "T 3 H W", "frames")
    d = check_shape(depth, "T H W", "depth")
    if (s["T"], s["H"], s["W"]) != (d["T"], d["H"], d["W"]):
        raise ValueError(f"frames {tuple(frames.shape)} and depth {tuple(depth.shape)} disagree")
    baselines = torch.tensor(info.baselines, dtype=frames.dtype, device=frames.device)
    chunk = chunk or (s["T"] if frames.device.type == "cuda" else 2)
    images, masks = [], []
    for t0 in range(0, s["T"], chunk):
        img, msk = warp_views(frames[t0 : t0 + chunk], depth[t0 : t0 + chunk], baselines, info.focal, screen=info.screen, num_planes=num_planes)
        images.append(img)
        masks.append(msk)
        if progress is not None:
            progress(min(chunk, s["T"] - t0))
    images_t = torch.cat(images, dim=1)  # V T 3 H W
    masks_t = torch.cat(masks, dim=1)
    ref = info.reference_view
    images_t[ref] = frames
    masks_t[ref] = True
    return FrameMatrix(images_t, masks_t, info)


def frame_matrix_from_clip(
    frames: np.ndarray,
    disparity: np.ndarray,
    config: MatrixConfig,
    *,
    frame_names: tuple[str, ...] = (),
    fps: float = io.DEFAULT_FPS,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> FrameMatrix:
    """The frame matrix of a clip: frames ``uint8 (T, H, W, 3)``, disparity ``(T, H, W)`` (raw, as saved
    by the depth stage, or inverse metric depth with ``config.metric_depth``).

    Depth is normalised over the whole clip (``camera.disparity_to_depth``). Returned on the CPU.
    """
    t, h, w, _ = frames.shape
    if disparity.shape != (t, h, w):
        raise ValueError(f"disparity {disparity.shape} does not match frames {frames.shape}")
    info = matrix_info(camera.plan_views(config, w), config, size=(h, w), num_frames=t, names=frame_names, fps=fps)
    rgb = torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).float() / 255  # T H W 3 -> T 3 H W
    z = camera.disparity_to_depth(
        torch.from_numpy(disparity).to(device).float(),
        nearest_depth=config.nearest_depth,
        farest_depth=config.farest_depth,
        metric=config.metric_depth,
    )
    fm = build_frame_matrix(rgb, z, info, num_planes=config.num_planes, progress=progress)
    return FrameMatrix(fm.images.cpu(), fm.masks.cpu(), info)


# --------------------------------------------------------------------------------------------------
# streamed cells: the frame matrix of any frame range, warped when asked for


def warp_cells(
    frames: torch.Tensor,
    depth: torch.Tensor,
    baselines: torch.Tensor,
    focal: float,
    *,
    screen: float = 0.0,
    num_planes: int = 4,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The frame-matrix cells of T frames and the metric depth of every cell.

    frames ``(T, 3, H, W)`` in [0, 1]; depth Z ``(T, H, W)``; baselines ``(V,)`` metres. Returns images
    ``(V, T, 3, H, W)`` (0 in holes), masks ``(V, T, 1, H, W)`` bool and depth ``(V, T, H, W)`` (0 in
    holes). Z travels as a fourth channel of the same warp, so its holes are exactly the images' and the
    crack clean-up blurs depth where it blurs colour.
    """
    from ..warp import warp_views

    s = check_shape(frames, "T 3 H W", "frames")
    check_shape(depth, f"{s['T']} {s['H']} {s['W']}", "depth")
    stacked = torch.cat([frames, depth[:, None].to(frames.dtype)], 1)  # (T, 4, H, W): RGB + Z
    warped, masks = warp_views(stacked, depth, baselines.to(depth), focal, screen=screen, num_planes=num_planes)
    return warped[:, :, :3], masks, torch.where(masks[:, :, 0], warped[:, :, 3], 0)


def warp_depth(depth: torch.Tensor, baselines: torch.Tensor, focal: float, *, screen: float = 0.0, num_planes: int = 4) -> torch.Tensor:
    """Metric depth of every frame-matrix cell: Z ``(T, H, W)`` warped to views at ``baselines (V,)``.

    Returns ``(V, T, H, W)``, 0 in holes. It is ``warp.warp_views`` applied to Z itself as a
    one-channel image, so its holes are exactly the frame matrix's (which depend on Z alone) and the
    crack clean-up blurs depth where it blurs colour.
    """
    check_shape(depth, "T H W", "depth")
    check_shape(baselines, "V", "baselines")
    from ..warp import warp_views

    warped, known = warp_views(depth[:, None], depth, baselines.to(depth), focal, screen=screen, num_planes=num_planes)
    return torch.where(known, warped, 0)[:, :, 0]  # (V, T, 1, H, W) -> (V, T, H, W)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Colours in [0, 1] as 8 bits (round to nearest): the exact value of every 8-bit input colour."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


@dataclass
class Cells:
    """Frame-matrix cells of a frame range ``first .. first + n - 1`` for some views.

    views: the view indices, in order. images ``(V, n, 3, H, W)`` float in [0, 1], 0 in holes; known
    ``(V, n, H, W)`` bool; depth ``(V, n, H, W)`` metric Z, 0 in holes; source ``(n, 3, H, W)`` and
    source_depth ``(n, H, W)``: the input view itself.
    """

    first: int
    views: tuple[int, ...]
    images: torch.Tensor
    known: torch.Tensor
    depth: torch.Tensor
    source: torch.Tensor
    source_depth: torch.Tensor
    baselines: tuple[float, ...] = ()  # metres, of ``views``
    focal: float = 0.0  # pixels
    screen: float = 0.0  # inverse depth (1/m) of the screen plane (``camera``)


class HandOn:
    """Cells the fill stage warped, handed on to the export stage of the same conversion, which reads the same frames
    of the same matrix (``fill.stage.views``) and would warp them again: on a CPU that second warp was most of the
    export stage's own time (py-spy of a 48-frame convert at 640x360: 10.6 s of its 11.8).

    ``put`` keeps a frame's cell while the cells held stay within ``capacity_mb`` (stages that run one after another
    hand on the clip's first frames, concurrent ones as many as the export lags behind); ``take`` returns it once and
    forgets it. Cells are those ``MatrixSource`` computes for a frame alone, whatever the batch (the outputs do not
    depend on the chunk size), so a cell handed on is the one the export would compute. Thread-safe: the fill's runs
    put from several threads.

    On CUDA each thread queues its work on a stream of its own (``threads.own_stream``), so a cell crosses streams: the
    taker's stream waits for the work the putter had queued when it put the cell (an event), and the cell's memory is
    marked as used on the taker's stream (``record_stream``), so that the putter's allocator does not hand it out again
    while the taker's kernels may still read it. Without both, only the host's waits elsewhere kept the order."""

    def __init__(self, capacity_mb: float = memory.HAND_ON_MB) -> None:
        self.capacity = capacity_mb * 2**20
        self._cells: dict[tuple[int, tuple[int, ...]], tuple[tuple[torch.Tensor, ...], torch.cuda.Event | None]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.handed = 0  # cells taken (what the export did not warp again)

    @staticmethod
    def _size(cell: tuple[torch.Tensor, ...]) -> int:
        return sum(t.numel() * t.element_size() for t in cell)

    def put(self, key: tuple[int, tuple[int, ...]], cell: tuple[torch.Tensor, ...]) -> None:
        size = self._size(cell)
        with self._lock:
            if key not in self._cells and self._bytes + size <= self.capacity:
                written = None
                if cell[0].is_cuda:  # the work that writes the cell, queued on the putter's stream
                    written = torch.cuda.Event()
                    written.record(torch.cuda.current_stream(cell[0].device))
                self._cells[key] = cell, written
                self._bytes += size

    def take(self, key: tuple[int, tuple[int, ...]]) -> tuple[torch.Tensor, ...] | None:
        with self._lock:
            cell, written = self._cells.pop(key, (None, None))
            if cell is not None:
                self._bytes -= self._size(cell)
                self.handed += 1
        if written is not None:
            stream = torch.cuda.current_stream(cell[0].device)
            stream.wait_event(written)
            for t in cell:
                t.record_stream(stream)
        return cell


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """``[(i, j), ...]``: the runs of equal values of ``flags`` ``(n,)``, in order."""
    edges = [0, *(np.flatnonzero(flags[1:] != flags[:-1]) + 1).tolist(), len(flags)]
    return list(zip(edges, edges[1:], strict=False))


class MatrixSource:
    """The cells of a clip's frame matrix by frame range, computed on demand (never stored whole).

    frames(a, b): the input frames ``uint8 (n, H, W, 3)``; disparity(a, b): the (stabilised) disparity
    ``float32 (n, h, w)``, upsampled to the frame size bilinearly; lo, hi: per-frame normalisation range
    ``(T,)`` (``svg3d.shots``), or ``ranges(a, b) -> (lo, hi)`` instead (``Ranges``, computed as the statistics
    arrive); plan: the views; config: how disparity becomes Z. Recent frames' cells
    are kept (``cache_frames``, colours as 8 bits), so a stage reading a chunk and its temporal context
    warps each frame once. Everything is computed on ``device``. ``track(b)``: the effect's ``comfort.EffectTrack``
    over frames ``0 .. b-1`` at least (``Effect.track``, which waits for their shots): the normalised disparity of
    the frames whose effect is not the envelope's is mapped into their own effect (``EffectTrack.remap``) before it
    becomes Z, frame by frame, so a frame's depth does not depend on the chunk it is read in; None: as normalised
    (the physical camera, or a given range). ``hand_on``: a
    ``HandOn`` that every cell computed is offered to (the fill's source); ``take_from``: one whose cells are taken
    instead of warping them again (the export's).
    """

    def __init__(
        self,
        frames,
        disparity,
        lo: np.ndarray | None,
        hi: np.ndarray | None,
        plan: camera.ViewPlan,
        config: MatrixConfig,
        *,
        device: torch.device | str = "cpu",
        cache_frames: int = 32,
        ranges=None,
        track: Callable[[int], comfort.EffectTrack] | None = None,
        hand_on: HandOn | None = None,
        take_from: HandOn | None = None,
    ) -> None:
        self._frames, self._disparity, self.track = frames, disparity, track
        self.hand_on, self.take_from = hand_on, take_from
        if ranges is None:
            lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
            ranges = lambda a, b: (lo[a:b], hi[a:b])  # noqa: E731
        self.ranges = ranges
        self.plan, self.config, self.device = plan, config, torch.device(device)
        self.cache_frames = cache_frames
        self._cache: dict[tuple[int, tuple[int, ...]], tuple[torch.Tensor, ...]] = {}

    def source(self, a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The input frames ``(n, 3, H, W)`` in [0, 1] and their metric depth ``(n, H, W)``."""
        rgb = to_device(self._frames(a, b), self.device).permute(0, 3, 1, 2).float() / 255  # n H W 3 -> n 3 H W
        return rgb, self._depth(a, b, rgb.shape[-2:])

    def _depth(self, a: int, b: int, size: tuple[int, int]) -> torch.Tensor:
        """The metric depth ``(n, H, W)`` of frames ``a .. b-1`` at the frames' ``size``."""
        h, w = size
        d = to_device(np.ascontiguousarray(self._disparity(a, b)), self.device)
        if d.shape[-2:] != (h, w):
            d = torch.nn.functional.interpolate(d[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        c = self.config
        lo, hi = (to_device(np.asarray(x, np.float32), self.device) for x in self.ranges(a, b))
        track = self.track(b) if self.track is not None else None
        remapped = track.remapped[a:b] if track is not None else np.zeros(b - a, bool)
        parts = []
        for i, j in _runs(remapped):  # (a chunk may hold frames of shots with and without their own effect)
            if remapped[i]:  # normalised here, remapped, then taken as already normalised (range 0..1)
                x, x_lo, x_hi = track.remap(camera.normalise_disparity(d[i:j], lo[i:j], hi[i:j]), a + i, a + j), 0.0, 1.0
            else:
                x, x_lo, x_hi = d[i:j], lo[i:j], hi[i:j]
            parts.append(camera.disparity_to_depth(x, nearest_depth=c.nearest_depth, farest_depth=c.farest_depth, metric=c.metric_depth, lo=x_lo, hi=x_hi))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def known_share(self, t: int, view: int, size: tuple[int, int]) -> float:
        """The share of frame ``t``'s pixels that ``view``'s cell keeps from the input (``size``: the frames'), from the
        disparity alone: a cell's holes depend on the depth only (``warp_depth``), so no frame is read, and a look at
        a frame far from where the caller reads moves nothing of the clip's shared decoder."""
        baselines = torch.tensor([self.plan.baselines[view]], dtype=torch.float64)
        z = self._depth(t, t + 1, size)
        warped = warp_depth(z, baselines.to(z), self.plan.focal, screen=self.plan.screen, num_planes=self.config.num_planes)
        return float((warped > 0).float().mean())

    def cells(self, a: int, b: int, views: tuple[int, ...] | None = None) -> Cells:
        """Cells of frames ``a .. b-1`` for ``views`` (default: the plan's fill views)."""
        views = tuple(self.plan.fill_views if views is None else views)
        missing = [t for t in range(a, b) if (t, views) not in self._cache]
        for t in missing if self.take_from is not None else ():
            if (cell := self.take_from.take((t, views))) is not None:
                self._cache[t, views] = cell
        todo = [t for t in missing if (t, views) not in self._cache]
        if todo:
            t0, t1 = todo[0], todo[-1] + 1  # contiguous in practice: a chunk's new frames (or those not handed on)
            rgb, z = self.source(t0, t1)
            baselines = torch.tensor([self.plan.baselines[v] for v in views], dtype=torch.float64)
            images, masks, depth = warp_cells(rgb, z, baselines, self.plan.focal, screen=self.plan.screen, num_planes=self.config.num_planes)
            for i, t in enumerate(range(t0, t1)):
                # colours kept as 8 bits (a quarter of the memory): the warp's pixels are 8-bit values of the
                # input, and the crack clean-up's blends are rounded here, where every reader of the cells
                # (the fill stage, the export) gets them the same way
                cell = (_to_uint8(images[:, i]), masks[:, i, 0], depth[:, i], _to_uint8(rgb[i]), z[i])
                self._cache[t, views] = cell
                if self.hand_on is not None:
                    self.hand_on.put((t, views), cell)
        if missing:  # frames came in, warped or handed on: keep the last cache_frames
            for key in sorted(self._cache):
                if len(self._cache) <= self.cache_frames:
                    break
                if key[0] < a or key[0] >= b:
                    del self._cache[key]
        parts = [self._cache[t, views] for t in range(a, b)]
        return Cells(
            first=a,
            views=views,
            images=torch.stack([p[0] for p in parts], 1).float() / 255,  # per frame (V, 3, H, W) -> (V, n, 3, H, W)
            known=torch.stack([p[1] for p in parts], 1),
            depth=torch.stack([p[2] for p in parts], 1),
            source=torch.stack([p[3] for p in parts]).float() / 255,
            source_depth=torch.stack([p[4] for p in parts]),
            baselines=tuple(self.plan.baselines[v] for v in views),
            focal=self.plan.focal,
            screen=self.plan.screen,
        )


class Cuts:
    """The cuts of a clip as the depth stage's shot-change scores arrive (``shots.detect_cuts``): ``read(end)`` reads
    the scores of frames ``0 .. end-1`` (waiting for them) and returns the cuts found in them; ``final`` holds those
    no later score can move (more than ``shots.CUT_NEIGHBOURHOOD`` frames before the furthest ``end`` read, or all
    once the clip's end is read). Reads may come in any order (a stage's chunks computed by several threads): what
    was final stays final."""

    def __init__(self, store) -> None:
        from .. import shots

        self._shots, self.store = shots, store
        self.final: list[int] = []
        self.until = 1  # cuts before this frame are final
        self.end = 0  # the furthest frame whose score was read, plus one

    def read(self, end: int) -> list[int]:
        shots = self._shots
        scores = self.store.stats("cut", end)
        final = len(scores) if end >= self.store.num_frames else len(scores) - shots.CUT_NEIGHBOURHOOD
        found = shots.detect_cuts(scores, start=self.until, cuts=self.final)
        if final > self.until:
            self.final = [t for t in found if t < final]
            self.until = final
        self.end = max(self.end, len(scores))
        return [t for t in found if t < len(scores)]


class Ranges:
    """The per-frame normalisation ranges of a conversion (``shots.depth_ranges``), as the statistics arrive.

    ``ranges(a, b) -> (lo, hi)`` float32 ``(b - a,)`` waits for the statistics that decide them: in mode ``shot``
    those of the first ``b + shots.range_lookahead(fps)`` frames (``lookahead``), in mode ``clip`` the whole clip's.
    ``cuts`` come from the depth stage's shot-change scores, ``stats`` from the disparity the matrix uses.
    """

    def __init__(self, cuts_store, stats_store, mode: str, fps: float) -> None:
        from .. import shots

        self._shots, self.cuts_store, self.stats_store, self.mode, self.fps = shots, cuts_store, stats_store, mode, fps
        self.num_frames = stats_store.num_frames
        self.lookahead = shots.range_lookahead(fps) if mode == "shot" else None
        self._cuts = Cuts(cuts_store)
        self._lock = threading.Lock()

    def __call__(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        n = self.num_frames
        end = n if self.lookahead is None else min(n, b + self.lookahead)
        stats = {k: self.stats_store.stats(k, end) for k in ("min", "max", "p01", "p99")}
        if self.mode == "shot":
            with self._lock:
                cuts = self._cuts.read(end)
        else:
            cuts = []
        return self._shots.depth_ranges(stats, self.mode, cuts=cuts, fps=self.fps, frames=(a, b))


class Effect:
    """The 3D effect of every frame of a conversion (``comfort.effect_of``: strength and screen plane per shot from
    the screen's budget, window violations handled), what it read of the disparity, and the (near, far) parallax of
    every frame (``comfort.check_physical`` for the physical camera). ``inputs``: the stores ``depth`` (the cuts) and
    the disparity the matrix uses.

    A shot's effect needs the whole shot's disparity (its strength, its steady range, its edge objects), and nothing
    of the other shots': with the effect by strength and ranges per shot it is worked out shot by shot as the
    disparity arrives (``per_shot``: the stages that warp with it wait for the end of the shot their chunk reaches,
    not for the whole clip: ``whole_shots``), each shot exactly as the whole clip's numbers would have it. Otherwise it
    is worked out once, from the whole clip (its readers' ``lookahead`` is None). ``ranges``, ``track`` and ``windows``
    are a chunk's (waiting for its shots); ``get`` the whole clip's (waiting for all of it)."""

    def __init__(self, config, plan, *, disparity: str, width: int, fps: float, chunk_frames: int) -> None:
        self.config, self.plan, self.disparity, self.width, self.fps, self.chunk = config, plan, disparity, width, fps, chunk_frames
        self._lock = threading.Lock()  # held while a shot is worked out; the shots known are read without it
        self._pieces: list[tuple[comfort.EffectTrack | None, comfort.FrameScan, np.ndarray, np.ndarray]] = []
        self._known = (0, None)  # (frames whose shots are worked out, their joined (track, lo, hi)): read and set whole
        self._cuts: Cuts | None = None
        self._value = None

    @property
    def warps(self) -> bool:
        """Whether the warp depends on it (the effect by strength: its remap, its screen plane per shot)."""
        return comfort.is_effect(self.config.matrix)

    @property
    def per_shot(self) -> bool:
        """Whether it is worked out shot by shot (its readers wait for a shot's end, not the clip's)."""
        return self.warps and self.config.matrix.depth_range == "shot"

    def ranges(self, inputs: dict) -> Callable[[int, int], tuple[np.ndarray, np.ndarray]]:
        """``ranges(a, b) -> (lo, hi)`` float32 ``(b - a,)``: the ranges frames ``a .. b-1`` are normalised over
        (``comfort.effect_ranges``: for the effect by strength, the warp's too), as ``MatrixSource`` takes them."""

        def ranges(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
            _, lo, hi = self._upto(inputs, b)
            return lo[a:b].astype(np.float32), hi[a:b].astype(np.float32)

        return ranges

    def track(self, inputs: dict) -> Callable[[int], comfort.EffectTrack]:
        """``track(b)``: the ``comfort.EffectTrack`` of frames ``0 .. b-1`` at least (``MatrixSource``'s ``track``)."""
        return lambda b: self._upto(inputs, b)[0]

    def windows(self, inputs: dict, a: int, b: int) -> np.ndarray | None:
        """The floating-window bars ``(b - a, 2)`` of frames ``a .. b-1`` (None: the physical camera)."""
        track = self._upto(inputs, b)[0]
        return None if track is None else track.windows[a:b]

    def get(self, inputs: dict):
        """``(track, scan, near, far, cuts, lo, hi)``: ``comfort.EffectTrack`` (None: the physical camera), the
        ``comfort.FrameScan``, parallax ``(T,)`` of the nearest and farthest point, the cuts, the ranges every frame's
        disparity is normalised over (``comfort.effect_ranges``: for the effect by strength, the warp's too)."""
        track, lo, hi = self._upto(inputs, inputs[self.disparity].num_frames)
        with self._lock:
            if self._value is None:
                scan = comfort.FrameScan.join([p[1] for p in self._pieces])
                if track is None:
                    near, far = comfort.check_physical(self.config.matrix, self.plan, lo, hi, width=self.width)
                else:
                    near, far = track.parallax(1.0), track.parallax(0.0)
                comfort.say_violations(track)
                self._value = (track, scan, near, far, self._cuts.final, lo, hi)
            return self._value

    def _upto(self, inputs: dict, b: int) -> tuple[comfort.EffectTrack | None, np.ndarray, np.ndarray]:
        """The joined (track, lo, hi) of at least frames ``0 .. b-1``: their shots worked out first if they are not."""
        known, joined = self._known
        if known >= b:
            return joined
        with self._lock:
            while self._known[0] < b:
                self._next_piece(inputs)
            return self._known[1]

    def _next_piece(self, inputs: dict) -> None:
        """Work out the next shot (``per_shot``), or the whole clip, from the first frame not yet known."""
        from .. import shots

        store, config = inputs[self.disparity], self.config.matrix
        n = store.num_frames
        if self._cuts is None:
            self._cuts = Cuts(inputs["depth"])
            comfort.say_budget(config)
        first = self._known[0]
        end = n
        if self.per_shot:  # the end of the shot starting at ``first``: the first final cut after it, or the clip's end
            while True:
                look = min(n, max(first, self._cuts.end) + self.chunk)
                self._cuts.read(look)
                after = [t for t in self._cuts.final if t > first]
                if after or look == n:
                    end = after[0] if after else n
                    break
        elif config.depth_range == "shot":
            self._cuts.read(n)
        cuts = [t for t in self._cuts.final if t < end]
        stats = {k: store.stats(k, end) for k in ("min", "max", "p01", "p99")}
        lo, hi = shots.depth_ranges(stats, config.depth_range, cuts=cuts, fps=self.fps, frames=(first, end))
        inner = [t - first for t in cuts if t > first]  # the piece's cuts, from its first frame
        lo, hi = comfort.effect_ranges(config, lo, hi, inner)  # steady within a shot for the effect by strength
        scan = comfort.scan_disparity(lambda a, b: store.read(first + a, first + b, "disparity"), end - first, lo, hi, chunk=self.chunk)
        self._pieces.append((comfort.effect_of(config, lo, hi, inner, scan, width=self.width), scan, lo, hi))
        tracks = [p[0] for p in self._pieces]
        track = None if tracks[0] is None else comfort.EffectTrack.join(tracks)
        self._known = (end, (track, np.concatenate([p[2] for p in self._pieces]), np.concatenate([p[3] for p in self._pieces])))


def matrix_source(clip, reader: str, inputs: dict, disparity: str, plan, config, device, cache_frames: int, *,
                  effect: Effect | None = None, hand_on: HandOn | None = None, take_from: HandOn | None = None) -> MatrixSource:  # fmt: skip
    """The frame matrix over the stores ``inputs`` (``disparity`` and ``depth`` for its shot scores) for ``reader``,
    each frame warped with its own effect (``Effect``) when the effect is set by strength; ``hand_on``, ``take_from``:
    ``MatrixSource``'s."""
    store = inputs[disparity]
    track = None
    if effect is not None and effect.warps:  # the effect's ranges (steady within a shot) and its remap, shot by shot
        ranges, track = effect.ranges(inputs), effect.track(inputs)
    else:  # the ranges as the statistics arrive
        ranges = Ranges(inputs["depth"], store, config.matrix.depth_range, clip.info.fps)
    return MatrixSource(
        clip.reader(reader), lambda a, b: store.read(a, b, "disparity"), None, None, plan, config.matrix, device=device,
        cache_frames=cache_frames, ranges=ranges, track=track, hand_on=hand_on, take_from=take_from,
    )  # fmt: skip


class MatrixStage:
    """Every view's cells of the frame matrix, chunk by chunk, into a store (``create_frame_matrix.py``: a
    ``MatrixWriter``), over the stores ``depth`` (its shot scores) and ``disparity`` (``matrix_source``, as the fill
    and export stages read them). ``run`` follows the stage contract (``svg3d.stages``), but it is no stage of the
    pipeline: ``convert`` derives the cells on demand and never stores them, so it needs no record key."""

    name = "matrix"  # its reader of the clip

    def __init__(self, clip, plan: camera.ViewPlan, config, device: torch.device, *, chunk_frames: int) -> None:
        self.clip, self.plan, self.config, self.device, self.chunk_frames = clip, plan, config, device, chunk_frames

    def run(self, inputs: dict, store, chunks: list[tuple[int, int]], progress: Callable[[int], None]) -> None:
        source = matrix_source(self.clip, self.name, inputs, "disparity", self.plan, self.config, self.device, self.chunk_frames)
        for a, b in chunks:
            cells = source.cells(a, b, views=tuple(range(self.plan.num_views)))
            store.commit(a, {"images": cells.images, "known": cells.known})
            progress(b - a)
