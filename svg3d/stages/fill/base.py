"""What a filler is (``Filler``), and ``SinglePass`` for the fillers without a pre-pass (``svg3d.stages.fill``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from ...camera import ViewPlan
    from ...config import ConvertConfig
    from ..matrix import Cells


class Filler(Protocol):
    name: str
    context: int  # frames of temporal context on each side of a chunk

    def params(self) -> dict: ...

    def stages(self, clip, plan: ViewPlan, config: ConvertConfig, *, disparity: str, effect) -> tuple: ...  # its pre-pass stages

    def bind(self, inputs: dict) -> None: ...  # the stores of the stages the fill stage reads, before ``fill``

    def fill(self, cells: Cells, core: tuple[int, int], progress: Callable[[int], None] | None = None) -> torch.Tensor: ...


class SinglePass:
    """For fillers that fill each chunk from its cells alone: no pre-pass, no stages of their own."""

    def stages(self, clip, plan, config, *, disparity: str, effect) -> tuple:
        return ()

    def bind(self, inputs: dict) -> None:
        pass


__all__ = ["Filler", "SinglePass"]
