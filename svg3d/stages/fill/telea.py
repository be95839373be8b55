"""OpenCV's Telea inpainting behind the ``Filler`` protocol: the baseline every other filler is measured against."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch

from ...checks import check_same, check_shape
from ..matrix import Cells
from .base import SinglePass

TELEA_RADIUS = 3  # px: cv2.inpaint's neighbourhood (OpenCV's documented example uses 3)


def telea_fill(images: torch.Tensor, known: torch.Tensor, *, radius: int = TELEA_RADIUS) -> torch.Tensor:
    """The naive baseline: OpenCV's Telea inpainting of each image's holes, blind to depth and time.

    images: float ``(N, 3, H, W)`` in [0, 1]; known: bool ``(N, H, W)``. Returns ``(N, 3, H, W)``
    (computed on 8-bit images, as ``cv2.inpaint`` requires; known pixels are unchanged).
    """
    check_same([check_shape(images, "N 3 H W", "images"), check_shape(known, "N H W", "known")], "N H W", ["images", "known"])
    out = images.clone()
    rgb = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # N H W 3
    holes = (~known).to(torch.uint8).cpu().numpy()
    for i in range(len(rgb)):
        if holes[i].any():
            filled = cv2.inpaint(np.ascontiguousarray(rgb[i]), holes[i], radius, cv2.INPAINT_TELEA)
            out[i] = torch.from_numpy(filled).permute(2, 0, 1).to(out) / 255  # H W 3 -> 3 H W
    return torch.where(known[:, None], images, out)


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
