"""The input's shared decoder (``stages.clip.Clip``) over a counting stand-in for ``source.Source``: each frame decoded
once for the readers that share it, the right frames to every reader, and no reader left waiting."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from svg3d.stages.clip import Clip


class CountingSource:
    """Frames in order from a decoder that starts over from frame 0 when asked for one behind it; frame i is filled
    with i % 256; ``decoded`` counts what every source made so far decoded, frame by frame."""

    decoded: Counter = Counter()

    def __init__(self, n: int = 100) -> None:
        self.info = SimpleNamespace(kind="video", num_frames=n, size=(2, 2))
        self.threads, self._next = 0, 0

    def frames(self, a: int, b: int) -> np.ndarray:
        if a < self._next:
            self._next = 0
        while self._next < b:
            CountingSource.decoded[self._next] += 1
            self._next += 1
        return np.stack([np.full((2, 2, 3), i % 256, np.uint8) for i in range(a, b)])

    def decoded_from(self) -> int:
        return self._next

    @property
    def next_frame(self) -> int:
        return self._next


def _clip(window: int) -> Clip:
    CountingSource.decoded.clear()
    return Clip(Path("clip.mp4"), CountingSource(), reopen=CountingSource, window=window)


def _is(frames: np.ndarray, a: int, b: int) -> bool:
    return frames.shape[0] == b - a and all(int(f[0, 0, 0]) == i for i, f in zip(range(a, b), frames, strict=True))


def test_readers_at_different_places_share_one_decoding():
    """A reader behind the decoder by some frames gets those kept for it, and only what is new is decoded: the decoder
    never starts over, and every frame is decoded once (a stage reading a chunk with context behind another)."""
    clip = _clip(window=32)
    clip.register("ahead", 0)
    clip.register("behind", 0)
    ahead, behind = clip.reader("ahead"), clip.reader("behind")
    assert _is(ahead(0, 3), 0, 3)
    assert _is(behind(0, 5), 0, 5)  # 0..2 kept, 3..4 decoded on
    assert _is(ahead(3, 8), 3, 8)
    assert _is(behind(2, 9), 2, 9)
    assert set(CountingSource.decoded.values()) == {1} and len(CountingSource.decoded) == 9


def test_frames_the_decoder_passes_are_kept_for_a_slower_reader():
    """The first read of a deferred group starts the decoder over: the frames it passes on its way to the reader's
    first frame are kept for the group's slower reader, so the slower one decodes nothing again."""
    clip = _clip(window=64)
    clip.register("early", 0)
    assert _is(clip.reader("early")(0, 20), 0, 20)
    clip.done("early")  # (its stage ended: its frames go)
    clip.defer({"fill": 0, "export": 0}, 64)
    assert _is(clip.reader("fill")(10, 14), 10, 14)  # the fill's first look is in the middle: 0..13 decoded again
    assert _is(clip.reader("export")(0, 6), 0, 6)  # from memory, kept for the export on the way
    assert all(CountingSource.decoded[i] == 2 for i in range(14)) and CountingSource.decoded[15] == 1


def test_a_deferred_group_reads_on_its_own_decoder_beside_the_registered_readers():
    """A deferred group (the fill and the export, a shot behind depth) decodes on a decoder of its own from its first
    read, while the registered readers go on sharing theirs: a registered reader waiting in the bounded queue (too
    far ahead of the slowest) neither holds the deferred group nor is let go by it, and moves once the slower one
    does; each group decodes every frame it reads once."""
    clip = _clip(window=4)
    clip.register("depth", 0)
    clip.register("stabilised", 0)
    clip.defer({"fill": 0, "export": 0}, 8)
    got = {}

    def depth() -> None:
        got["depth"] = clip.reader("depth")(10, 12)  # 12 - 0 > 4: waits for stabilised

    thread = threading.Thread(target=depth, daemon=True)  # (a reader left waiting must not hold the suite)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()  # (it does wait)
    assert _is(clip.reader("fill")(0, 6), 0, 6) and _is(clip.reader("export")(0, 3), 0, 3)  # not held by depth
    time.sleep(0.3)
    assert thread.is_alive()  # (still its group's queue: the deferred readers do not count there)
    assert _is(clip.reader("stabilised")(8, 10), 8, 10)
    thread.join(5)
    assert not thread.is_alive() and _is(got["depth"], 10, 12)
    # the registered readers' decoder: 0..11 once; the deferred group's: 0..5 once, the export's from memory
    assert all(CountingSource.decoded[i] == 2 for i in range(6)) and all(CountingSource.decoded[i] == 1 for i in range(6, 12))
