"""OpenCV's Telea inpainting behind the ``Filler`` protocol: the baseline every other filler is measured against."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

import cv2
import numpy as np
import torch

from ...checks import check_same, check_shape
from ...graphs import HostCopy, to_device
from ..matrix import Cells
from .base import SinglePass

TELEA_RADIUS = 3  # px: cv2.inpaint's neighbourhood (OpenCV's documented example uses 3)


def telea_fill(images: torch.Tensor, known: torch.Tensor, *, radius: int = TELEA_RADIUS) -> torch.Tensor:
    """The naive baseline: OpenCV's Telea inpainting of each image's holes, blind to depth and time.

    images: float ``(N, 3, H, W)`` in [0, 1]; known: bool ``(N, H, W)``. Returns ``(N, 3, H, W)`` on the images'
    device (computed on 8-bit images, as ``cv2.inpaint`` requires; known pixels are unchanged). Each image is
    inpainted in the box around its holes (``_margin``: the same pixels as the whole frame's, in a fraction of the
    time when the holes are few: a frame-edge band at 1080p); only the boxes travel to the CPU and back, and the
    images' boxes are inpainted at once on OpenCV's threads (``cv2.getNumThreads``, ``threads.plan_threads``'s
    choice: ``cv2.inpaint`` is one thread each and releases the GIL; the result does not depend on the count).
    ``TeleaJob`` does the same without waiting for it.
    """
    return TeleaJob(images, known, radius=radius).result()


class TeleaJob:
    """``telea_fill`` of ``images`` and ``known`` begun, ``result()`` its tensor. With ``background`` (an executor) the
    round trip to the CPU runs there while the caller goes on: on CUDA the images as 8 bits and their holes are copied
    whole (``whole``, default on CUDA) to pinned memory as the stream gets there (``graphs.HostCopy``: the caller never
    waits for the GPU, which keeps working on what it launches next), and inpainted in their boxes as ``telea_fill``'s;
    on a CPU, where reading is free, only the boxes are made 8-bit. The same pixels either way."""

    def __init__(self, images: torch.Tensor, known: torch.Tensor, *, radius: int = TELEA_RADIUS, background: Executor | None = None,
                 whole: bool | None = None) -> None:  # fmt: skip
        check_same([check_shape(images, "N 3 H W", "images"), check_shape(known, "N H W", "known")], "N H W", ["images", "known"])
        self.images, self.known, self.radius = images, known, radius
        holes = ~known
        if images.device.type == "cuda" if whole is None else whole:
            copy = HostCopy(_to_8bit(images).permute(0, 2, 3, 1), holes)

            def work():
                rgb, hole = copy.arrays()
                return self._inpaint(hole, lambda i, y0, y1, x0, x1: rgb[i, y0:y1, x0:x1])
        else:

            def work():
                return self._inpaint(holes.cpu().numpy(), lambda i, y0, y1, x0, x1: _to_8bit(images[i, :, y0:y1, x0:x1]).permute(1, 2, 0).cpu().numpy())

        self._filled = background.submit(work) if background is not None else None
        self._work = work

    def _inpaint(self, holes: np.ndarray, crop: Callable[..., np.ndarray]) -> list[tuple[tuple[int, ...], np.ndarray]]:
        """The boxes ``(i, y0, y1, x0, x1)`` around each image's holes and their inpainted pixels ``(h, w, 3)`` uint8;
        ``crop(i, y0, y1, x0, x1)``: the 8-bit pixels ``(h, w, 3)`` of image i there."""
        h, w = holes.shape[1:]
        m = _margin(self.radius)
        rows, cols = holes.any(2), holes.any(1)  # (N, H), (N, W)
        boxes = []
        for i in range(len(holes)):
            r, c = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
            if len(c):
                boxes.append((i, max(0, r[0] - m), min(h, r[-1] + 1 + m), max(0, c[0] - m), min(w, c[-1] + 1 + m)))
        crops = [(crop(i, y0, y1, x0, x1), holes[i, y0:y1, x0:x1].astype(np.uint8)) for i, y0, y1, x0, x1 in boxes]

        def inpaint(pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
            return cv2.inpaint(np.ascontiguousarray(pair[0]), np.ascontiguousarray(pair[1]), self.radius, cv2.INPAINT_TELEA)

        workers = min(len(crops), max(1, cv2.getNumThreads()))
        if workers > 1:
            with ThreadPoolExecutor(workers, thread_name_prefix="telea") as pool:
                filled = list(pool.map(inpaint, crops))
        else:
            filled = [inpaint(pair) for pair in crops]
        return list(zip(boxes, filled, strict=True))

    def result(self) -> torch.Tensor:
        filled = self._work() if self._filled is None else self._filled.result()
        out = self.images.clone()
        for (i, y0, y1, x0, x1), f in filled:
            out[i, :, y0:y1, x0:x1] = to_device(f, out.device).permute(2, 0, 1).to(out.dtype) / 255  # h w 3 -> 3 h w
        return torch.where(self.known[:, None], self.images, out)


def _to_8bit(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _margin(radius: int) -> int:
    """Pixels around the holes that ``cv2.inpaint`` (Telea) reads: the known ring of ``radius`` it takes colours
    from, the ring of as much again over which it first marches outwards (its distances to the holes), and the
    gradients' neighbour; beyond it a box of the image inpaints exactly as the whole (tested)."""
    return 2 * radius + 2


class TeleaFiller(SinglePass):
    """Each hole of each cell filled by ``cv2.inpaint`` (Telea), blind to depth and to the other frames."""

    name = "telea"
    context = 0

    def params(self) -> dict:
        return {"radius": TELEA_RADIUS}

    def fill(self, cells: Cells, core: tuple[int, int], progress: Callable[[int], None] | None = None) -> torch.Tensor:
        a, b = core[0] - cells.first, core[1] - cells.first
        out = []
        for t in range(a, b):  # frame by frame: the bar moves with them
            out.append(telea_fill(cells.images[:, t].cpu(), cells.known[:, t].cpu(), radius=TELEA_RADIUS).to(cells.images.device))  # (V, 3, H, W)
            if progress is not None:
                progress(1)
        return torch.stack(out, 1)
