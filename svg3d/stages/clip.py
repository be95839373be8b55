"""The input clip as the stages see it: its probe, its fingerprint, and one decoder shared by every stage.

Stages that run concurrently read the same frames at different places: the depth stage ahead, the export behind.
``Clip`` decodes the input once for all of them: a frame decoded for the first reader stays until the slowest
registered reader has passed it, so nothing is decoded twice. Memory is bounded: a reader more than ``window``
frames ahead of the slowest one waits for it (a bounded queue), and ``window`` is set from the stages' chunk size
and declared look-ahead so that the pipeline cannot wait on itself. A reader that asks for frames already dropped
(a stage resuming behind the others, or stages run one after another) gets a decoder of its own.

Stages that may fall behind the others by more than any window (the 3D effect by strength is a shot's: the fill
waits for the end of each shot, or of the whole clip, of the disparity) are ``defer``red: they share a decoder of
their own, opened at the first read of one of them, so a convert decodes its input twice, not once per stage, and
neither group waits for the other's readers.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .. import work
from ..source import Source, open_source


class _Group:
    """Readers that share one decoder (``source``; None until the group's first read): the frames it decoded that one
    of them may still ask for, and where each of them reads (``positions``: the first frame it may still ask for)."""

    def __init__(self, source: Source | None, window: int, positions: dict[str, int] | None = None) -> None:
        self.source, self.window = source, window
        self.positions: dict[str, int] = dict(positions or {})
        self.frames: dict[int, np.ndarray] = {}
        self.changed = threading.Condition()

    def drop(self) -> None:
        keep = min(self.positions.values(), default=None)
        for i in [i for i in self.frames if keep is None or i < keep]:
            del self.frames[i]


class Clip:
    """A probed input (``source.open_source``), read by named readers (``reader``)."""

    def __init__(self, path: Path, source: Source, *, reopen: Callable[[], Source] | None = None, window: int = 64) -> None:
        self.path, self.info = path, source.info
        self._source, self._reopen = source, reopen
        self._groups = [_Group(source, window)]  # the registered readers, then the deferred ones (``defer``)
        self._lock = threading.Lock()  # over the list of groups; each group's state is under its own condition

    @property
    def window(self) -> int:
        """Frames the registered readers may be apart (the first group's)."""
        return self._groups[0].window

    @window.setter
    def window(self, frames: int) -> None:
        self._groups[0].window = frames

    @classmethod
    def open(cls, path: Path, config) -> Clip:
        """The clip ``config`` (``ClipConfig``) selects from ``path``."""
        kw = {"start": config.start_frame, "count": config.num_frames, "size": config.size, "fps": config.fps}
        return cls(path, open_source(path, **kw), reopen=lambda: open_source(path, **kw))

    @functools.cached_property
    def fingerprint(self) -> str:
        """The content digest of the input (``work.input_fingerprint``): the depth stage's key holds it."""
        return work.input_fingerprint(self.path)

    @property
    def num_frames(self) -> int:
        return self.info.num_frames

    def frames(self, a: int, b: int) -> np.ndarray:
        """Frames ``a .. b-1`` ``uint8 (n, H, W, 3)`` for a caller that is no registered reader (checks, previews)."""
        return self.reader("")(a, b)

    def decoder_threads(self, n: int) -> None:
        """Decode with ``n`` threads (``threads.ThreadPlan.decoder``), from the next decoder started on."""
        self._source.threads = n

    def register(self, name: str, first: int) -> None:
        """``name`` will read from frame ``first`` on: frames from there are kept for it."""
        group = self._groups[0]
        with group.changed:
            group.positions[name] = first
            group.changed.notify_all()

    def defer(self, first: dict[str, int], window: int) -> None:
        """The readers ``first`` (name -> first frame) share a decoder of their own, opened at the first read of one of
        them, with this ``window``: they may fall behind the registered readers by any number of frames."""
        with self._lock:
            self._groups.append(_Group(None, window, first))

    def done(self, name: str) -> None:
        group = self._group_of(name)
        if group is not None:
            with group.changed:
                group.positions.pop(name, None)
                group.drop()
                group.changed.notify_all()

    def reader(self, name: str, size: tuple[int, int] | None = None) -> Callable[[int, int], np.ndarray]:
        """``frames(a, b)`` for the reader ``name`` (registered or not), resized to ``size`` (h, w) if given."""
        private: list[Source] = []

        def read(a: int, b: int) -> np.ndarray:
            rgb = self._read(name, a, b, private)
            if size is None or tuple(size) == self.info.size:
                return rgb
            return np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in rgb])

        return read

    def _group_of(self, name: str) -> _Group | None:
        with self._lock:
            return next((g for g in self._groups if name in g.positions), None)

    def _open(self) -> Source:
        source = self._reopen() if self._reopen is not None else self._source
        source.threads = self._source.threads
        return source

    def _read(self, name: str, a: int, b: int, private: list[Source]) -> np.ndarray:
        group = self._group_of(name)
        if group is not None:
            with group.changed:
                positions = group.positions
                if name in positions:  # (not if its stage's end was told meanwhile: then it reads on its own)
                    positions[name] = max(positions[name], a)
                group.drop()
                group.changed.notify_all()
                # a bounded queue: a reader ahead of the slowest one of its group by more than the window waits for it
                while name in positions and b - min(positions.values()) > group.window and min(positions.values()) < a:
                    group.changed.wait(0.5)
                if name in positions:
                    frames = group.frames
                    m = next((i for i in range(a, b) if i not in frames), b)  # the first frame not kept
                    if m == b:
                        return np.stack([frames[i] for i in range(a, b)])
                    if group.source is None:
                        group.source = self._open()
                    source = group.source
                    if self.info.kind == "frames" or source.decoded_from() <= m:  # the decoder gives m on without starting over
                        # from the first frame a slower reader still needs, if the decoder passes it on its way to m:
                        # those frames are kept for it
                        keep = min(positions.values())
                        lo = min(m, max(keep, m if self.info.kind == "frames" else source.next_frame))
                        new = source.frames(lo, b)
                        for i in range(max(lo, keep), b):
                            frames[i] = new[i - lo]
                        return np.concatenate([np.stack([frames[i] for i in range(a, m)]), new[m - lo :]]) if m > a else new[m - lo :]
        # behind its group's decoder, or a caller outside the pipeline: a decoder of this reader's own
        if not private:
            private.append(self._open())
        return private[0].frames(a, b)

    def close(self) -> None:
        for group in self._groups:
            if group.source is not None:
                group.source.close()
            group.frames.clear()
