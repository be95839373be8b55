"""The weight-free filler (``svg3d.fill``) behind the ``Filler`` protocol."""

from __future__ import annotations

from dataclasses import asdict

import torch

from .. import fill
from ..matrix import Cells


class ClassicalFiller:
    """Background from other frames (within ``config.window`` frames), then from space, never from the occluder."""

    name = "classical"

    def __init__(self, config: fill.FillConfig) -> None:
        self.config = config
        self.context = config.window

    def params(self) -> dict:
        return {"config": asdict(self.config)}

    def prepare(self, context) -> None:
        pass

    def fill(self, cells: Cells, core: tuple[int, int]) -> torch.Tensor:
        a, b = core[0] - cells.first, core[1] - cells.first
        result = fill.fill_frame_matrix(cells.images, cells.known[:, :, None], cells.depth, self.config)
        return result.images[:, a:b]
