"""OpenCV's Telea inpainting behind the ``Filler`` protocol: the baseline every other filler is measured against."""

from __future__ import annotations

import torch

from .. import fill
from ..matrix import Cells

TELEA_RADIUS = 3  # px: cv2.inpaint's neighbourhood (OpenCV's documented example uses 3)


class TeleaFiller:
    """Each hole of each cell filled by ``cv2.inpaint`` (Telea), blind to depth and to the other frames."""

    name = "telea"
    context = 0

    def params(self) -> dict:
        return {"radius": TELEA_RADIUS}

    def prepare(self, context) -> None:
        pass

    def fill(self, cells: Cells, core: tuple[int, int]) -> torch.Tensor:
        a, b = core[0] - cells.first, core[1] - cells.first
        images, known = cells.images[:, a:b], cells.known[:, a:b]
        v, n = images.shape[:2]
        out = fill.telea_fill(images.flatten(0, 1).cpu(), known.flatten(0, 1).cpu(), radius=TELEA_RADIUS)  # (V n, 3, H, W)
        return out.unflatten(0, (v, n)).to(images.device)
