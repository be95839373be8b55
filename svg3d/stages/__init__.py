"""The stages of a conversion, each a module that owns its backends, its parameters and its stored format.

The contract a stage follows (``work.Runner`` runs it)::

    name: str                      the stage's folder and record in the work folder (``work.StageStore``)
    needs: tuple[str, ...]         the stages whose chunks it reads (their keys are part of its key)
    lookahead: int | None          frames past the end of its chunk it reads from them (None: the whole clip)
    whole_shots: bool              (optional, default False) and past that to the end of the shot its chunk reaches
                                   (the 3D effect by strength is a shot's: ``matrix.Effect``), so it may follow the
                                   stages before it by a whole shot
    spread: bool                   (optional, default False) each chunk is a function of its inputs' stored frames
                                   alone, so ``convert --gpus`` may compute its chunks in several processes
    params() -> dict               everything that decides its output: the record's key
    check() -> None                fail now (a missing model, unpairable inputs), before anything runs
    run(inputs, store, chunks, progress)
                                   compute ``chunks`` [(a, b), ...] reading ``inputs[name]`` (stores that wait for
                                   frames still being computed), committing each to ``store``; ``progress(n)`` as
                                   frames are done inside a chunk (per frame, or per batch the stage computes at
                                   once), n summing to the chunk's frames: a bar moves during a slow chunk

The pipeline, in order (``PIPELINE``)::

    depth       (stages.depth)      frames -> disparity at the depth resolution, per-frame stats, shot-change scores
    stabilised  (stages.stabilise)  depth -> temporally stabilised disparity (flow + guided filter)
    (ranges)    (stages.matrix)     per-frame normalisation ranges per shot, derived from the two above, not stored
    denoised    (stages.fill)       the diffusion filler's pre-pass: windows of the matrix denoised at the model's size
    filled      (stages.fill)       the hole pixels of the views the exports need (the known ones are the warp)
    export      (stages.export)     the videos in the output folder, encoded as the frames arrive

``generate`` (stages.generate) makes the input from a prompt before any of them. Adding a depth backend, a filler
or an export layout is one class or function plus one registry row: ``depth.BACKENDS``, ``fill.REGISTRY``,
``svg3d.layouts``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

PIPELINE = ("depth", "stabilised", "denoised", "filled", "export")


def scaled(progress: Callable[[int], None] | None, units: int, frames: int) -> Callable[[int], None] | None:
    """``progress`` for work counted in other ``units`` than frames (a filler's view-frames, the denoiser's steps): the
    ``frames`` are reported in proportion as the units are done, exactly ``frames`` once all ``units`` are."""
    if progress is None:
        return None
    if units <= 0:  # nothing to count: the frames are done
        progress(frames)
        return lambda n: None
    state = {"units": 0, "frames": 0}

    def advance(n: int) -> None:
        state["units"] += n
        now = frames * min(state["units"], units) // units
        if now > state["frames"]:
            progress(now - state["frames"])
            state["frames"] = now

    return advance


class Stage(Protocol):
    name: str
    needs: tuple[str, ...]
    lookahead: int | None

    def params(self) -> dict: ...

    def check(self) -> None: ...

    def run(self, inputs: dict, store, chunks: list[tuple[int, int]], progress: Callable[[int], None]) -> None: ...
