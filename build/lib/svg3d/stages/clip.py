"""The input clip as the stages see it: its probe, its fingerprint, and one decoder shared by every stage.

Stages that run concurrently read the same frames at different places: the depth stage ahead, the export behind.
``Clip`` decodes the input once for all of them: a frame decoded for the first reader stays until the slowest
registered reader has passed it, so nothing is decoded twice. Memory is bounded: a reader more than ``window``
frames ahead of the slowest one waits for it (a bounded queue), and ``window`` is set from the stages' chunk size
and declared look-ahead so that the pipeline cannot wait on itself. A reader that asks for frames already dropped
(a stage resuming behind the others, or stages run one after another) gets a decoder of its own.
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


class Clip:
    """A probed input (``source.open_source``), read by named readers (``reader``)."""

    def __init__(self, path: Path, source: Source, *, reopen: Callable[[], Source] | None = None, window: int = 64) -> None:
        self.path, self.info = path, source.info
        self._source, self._reopen = source, reopen
        self.window = window
        self._frames: dict[int, np.ndarray] = {}
        self._positions: dict[str, int] = {}  # reader -> first frame it may still ask for
        self._lock = threading.Condition()

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
        with self._lock:
            self._positions[name] = first
            self._lock.notify_all()

    def done(self, name: str) -> None:
        with self._lock:
            self._positions.pop(name, None)
            self._drop()
            self._lock.notify_all()

    def reader(self, name: str, size: tuple[int, int] | None = None) -> Callable[[int, int], np.ndarray]:
        """``frames(a, b)`` for the reader ``name`` (registered or not), resized to ``size`` (h, w) if given."""
        private: list[Source] = []

        def read(a: int, b: int) -> np.ndarray:
            rgb = self._read(name, a, b, private)
            if size is None or tuple(size) == self.info.size:
                return rgb
            return np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in rgb])

        return read

    def _read(self, name: str, a: int, b: int, private: list[Source]) -> np.ndarray:
        with self._lock:
            registered = name in self._positions
            if registered:
                self._positions[name] = max(self._positions[name], a)
                self._drop()
                self._lock.notify_all()
                # a bounded queue: a reader ahead of the slowest one by more than the window waits for it
                while b - min(self._positions.values()) > self.window and min(self._positions.values()) < a:
                    self._lock.wait(0.5)
            if all(i in self._frames for i in range(a, b)):
                return np.stack([self._frames[i] for i in range(a, b)])
            if registered and self._ahead_of_decoder(a, b):
                out = self._source.frames(a, b)
                keep = min(self._positions.values())
                for i in range(max(a, keep), b):
                    self._frames[i] = out[i - a]
                return out
        # behind the shared decoder, or a caller outside the pipeline: a decoder of this reader's own
        if not private:
            private.append(self._reopen() if self._reopen is not None else self._source)
            private[0].threads = self._source.threads
        return private[0].frames(a, b)

    def _ahead_of_decoder(self, a: int, b: int) -> bool:
        """The shared decoder gives frames ``a .. b-1`` without starting again from the first frame."""
        return self.info.kind == "frames" or self._source.decoded_from() <= a

    def _drop(self) -> None:
        keep = min(self._positions.values(), default=None)
        for i in [i for i in self._frames if keep is None or i < keep]:
            del self._frames[i]

    def close(self) -> None:
        self._source.close()
        self._frames.clear()

