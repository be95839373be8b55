"""The input clip as the stages see it: its probe, its fingerprint, and one decoder shared by every stage.

Stages that run concurrently read the same frames at different places: the depth stage ahead, the export behind.
``Clip`` decodes the input once for all of them: a frame decoded for the first reader stays until the slowest
registered reader has passed it, so nothing is decoded twice. Memory is bounded: a reader more than ``window``
frames ahead of the slowest one waits for it (a bounded queue), and ``window`` is set from the stages' chunk size
and declared look-ahead so that the pipeline cannot wait on itself. A reader that asks for frames already dropped
(a stage resuming behind the others, or stages run one after another) gets a decoder of its own.

Stages that wait for the whole clip of their inputs (the 3D effect by strength needs every frame's disparity) read
the input only once the stages before them have read all of it: they are ``defer``red, and at the first read of one
of them the shared decoder starts over for them alone, so a convert decodes its input twice, not once per stage.
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
        self._deferred: tuple[dict[str, int], int] | None = None  # readers that start after the others, their window
        self._restart = False  # the shared decoder may start over for the next registered read (a deferred group began)
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

    def defer(self, first: dict[str, int], window: int) -> None:
        """The readers ``first`` (name -> first frame) start reading only after every registered reader has read all it
        will: at the first read of any of them, the registered readers are let go, these are registered with this
        ``window``, and the shared decoder starts over for them."""
        with self._lock:
            self._deferred = (dict(first), window)

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
            if self._deferred is not None and name in self._deferred[0]:  # the later group begins: the others have read all
                self._positions, self.window = self._deferred
                self._deferred, self._restart = None, True
                self._drop()
            registered = name in self._positions
            if registered:
                self._positions[name] = max(self._positions[name], a)
                self._drop()
                self._lock.notify_all()
                # a bounded queue: a reader ahead of the slowest one by more than the window waits for it (unless a
                # deferred group began meanwhile and let it go: it then reads on a decoder of its own)
                while name in self._positions and b - min(self._positions.values()) > self.window and min(self._positions.values()) < a:
                    self._lock.wait(0.5)
                registered = name in self._positions
            m = next((i for i in range(a, b) if i not in self._frames), b)  # the first frame not kept
            if m == b:
                return np.stack([self._frames[i] for i in range(a, b)])
            if registered and (self._restart or self._ahead_of_decoder(m)):
                # from the first frame a slower reader still needs, if the decoder passes it on its way to m (from the
                # clip's first frame when it starts over): those frames are kept for it
                keep = min(self._positions.values())
                passes = m if self.info.kind == "frames" else 0 if self._restart else self._source.next_frame
                lo = min(m, max(keep, passes))
                self._restart = False
                new = self._source.frames(lo, b)
                for i in range(max(lo, keep), b):
                    self._frames[i] = new[i - lo]
                return np.concatenate([np.stack([self._frames[i] for i in range(a, m)]), new[m - lo :]]) if m > a else new[m - lo :]
        # behind the shared decoder, or a caller outside the pipeline: a decoder of this reader's own
        if not private:
            private.append(self._reopen() if self._reopen is not None else self._source)
            private[0].threads = self._source.threads
        return private[0].frames(a, b)

    def _ahead_of_decoder(self, a: int) -> bool:
        """The shared decoder gives frames from ``a`` on without starting again from the first frame."""
        return self.info.kind == "frames" or self._source.decoded_from() <= a

    def _drop(self) -> None:
        keep = min(self._positions.values(), default=None)
        for i in [i for i in self._frames if keep is None or i < keep]:
            del self._frames[i]

    def close(self) -> None:
        self._source.close()
        self._frames.clear()

