"""The work folder: stage records written chunk by chunk, locks, fingerprints and path checks.

Every stage of ``convert`` keeps its outputs in ``<work>/<stage>/`` as chunk files, one per run of
consecutive frames (``chunk_<first>.npz``), and its record in ``<work>/<stage>.json``::

    {"stage", "key", "params", "inputs", "num_frames",
     "chunks": [{"first", "count", "file", "size", "frames": [sha256 per frame], "stats": {name: [per frame]}}],
     "complete", "digest", "cleaned", "seconds", "finished"}

A chunk is committed in two atomic steps: its file is written (temporary name, renamed), then the record
is rewritten with the chunk in it. A run killed at any moment therefore leaves only whole chunks in the
record; a rerun with the same key keeps them and computes only the frames no chunk covers (``missing``).
A different key (changed parameters or inputs) discards the stage's chunks. ``digest`` hashes the
per-frame hashes in frame order, so it does not depend on how the frames were split into chunks: a
downstream stage's key holds it, and an upstream stage that reruns with identical results leaves
everything downstream valid.

Chunk files hold named arrays whose first axis is the frame; each array is byte-shuffled and deflated
(``zlib`` level 1): lossless, and about half the size of raw float32 for smooth depth maps.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from . import __version__, io
from .checks import InputError

log = logging.getLogger(__name__)

WORK_DIR = "work"  # default work folder, inside the output folder
LOG_FILE = "convert.log"
LOCK_FILE = ".lock"  # in the work folder
OUTPUT_LOCK_FILE = ".svg3d.lock"  # in the output folder: two converts must not write one output folder
CHUNK_NAME = "chunk_{first:06d}.npz"
COMPRESSION_LEVEL = 1  # zlib: level 6 saves ~3% more on depth maps at ~3x the time


# --------------------------------------------------------------------------------------------------
# digests


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digest(items: object) -> str:
    """sha256 of a JSON-able value (dict keys sorted; other objects by ``str``)."""
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()


def input_fingerprint(path: Path) -> str:
    """Content digest of a video file, or of a clip folder's frame files (names and bytes)."""
    if path.is_file():
        return sha256_file(path)
    return digest({f.name: sha256_file(f) for f in io.list_images(io.frames_folder(path))})


# --------------------------------------------------------------------------------------------------
# paths


def default_work_dir(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / WORK_DIR


def inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_paths(input_path: Path | None, out_dir: Path, work_dir: Path, depth_from: Path | None = None) -> None:
    """Refuse outputs that could overwrite an input, and output folders that cannot be written.

    Called before anything is written, so a refused run leaves no trace. ``input_path`` None: the
    clip is generated (text to video).
    """
    if input_path is not None and not input_path.exists():
        raise InputError(f"{input_path}: no such file or folder")
    for what, folder in (("input", input_path), ("depth_from", depth_from)):
        if folder is None:
            continue
        for flag, path in (("output", out_dir), ("work_dir", work_dir)):
            named = (flag, what) if what != "input" else (flag,)  # (the input is no flag's value: convert's INPUT)
            if folder.is_dir() and inside(path, folder):
                raise InputError(f"{flag} {path}: is inside the {what} folder {folder}; choose an output folder outside it", params=named)
            if folder.is_file() and path.resolve() == folder.resolve():
                raise InputError(f"{flag} {path}: is the {what} file itself", params=named)
        if inside(folder, work_dir):  # stage folders are rewritten
            raise InputError(f"{what} {folder}: is inside the work folder {work_dir}, which convert rewrites; copy it elsewhere first", params=(what,))
    for flag, path in (("output", out_dir), ("work_dir", work_dir)):
        check_writable(flag, path)


def check_writable(param: str, path: Path) -> None:
    """Refuse an output folder ``path`` (parameter ``param``) that is a file or sits where nothing can be written."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{param} {path}: {existing} is a file, not a folder", params=(param,))
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = hasattr(os, "statvfs") and os.statvfs(existing).f_flag & os.ST_RDONLY  # (POSIX only)
        why = "read-only file system" if read_only else "permission denied"
        raise InputError(f"{param} {path}: cannot write in {existing} ({why})", params=(param,))


def make_dirs(*folders: Path) -> None:
    """Create the folders and prove they can be written (a read-only mount passes ``os.access``)."""
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with io.atomic_path(folder / ".write-test"):
                pass
            (folder / ".write-test").unlink()
        except OSError as e:
            raise InputError(f"{folder}: cannot write to this folder ({e.strerror or e})") from None


@contextlib.contextmanager
def fresh_folders(*folders: Path) -> Iterator[Callable[[], None]]:
    """``make_dirs(*folders)`` for a run that may still fail in its checks: until the run calls the callable this
    yields (its stages start), an error removes what it made there — the folders it created, and in folders that
    were there the lock files — so a run refused before it started leaves nothing behind."""
    created = [f for f in folders if not Path(f).exists()]
    locks = [Path(f) / n for f in folders for n in (LOCK_FILE, OUTPUT_LOCK_FILE) if not (Path(f) / n).exists()]  # ours to remove
    make_dirs(*folders)
    state = {"started": False}
    try:
        yield lambda: state.update(started=True)
    except BaseException:
        if not state["started"]:
            for folder in folders:
                if folder in created:
                    shutil.rmtree(folder, ignore_errors=True)
            for path in locks:  # (never another run's lock file: that one's holder would lose its lock)
                path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def lock(folder: Path, name: str, message: str) -> Iterator[None]:
    """Hold ``folder/name`` exclusively, or raise ``InputError(message)`` at once if another process holds it.

    An OS file lock (``flock``): a killed run leaves nothing to clean up. Not available on Windows,
    where nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(message) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def lock_folders(work_dir: Path, out_dir: Path) -> Iterator[None]:
    """Lock the work folder and the output folder for one convert (a second one stops at once)."""
    busy = "another convert is using {}; wait for it, or give this one its own -o / --work-dir"
    with lock(work_dir, LOCK_FILE, busy.format(f"the work folder {work_dir}")):
        with lock(out_dir, OUTPUT_LOCK_FILE, busy.format(f"the output folder {out_dir}")):
            yield


# --------------------------------------------------------------------------------------------------
# chunk files


def _shuffle(a: np.ndarray) -> bytes | np.ndarray:
    """The bytes of ``a`` grouped by significance (all first bytes, all second bytes, ...): deflate then finds
    the runs in the exponents of smooth float data."""
    if a.dtype.itemsize == 1:  # (one byte per value: the bytes as they are, without a copy)
        return np.ascontiguousarray(a).reshape(-1)
    raw = np.ascontiguousarray(a).view(np.uint8).reshape(-1, a.dtype.itemsize)
    return np.ascontiguousarray(raw.T).tobytes()


def _unshuffle(data: bytes, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    raw = np.frombuffer(data, np.uint8).reshape(dtype.itemsize, -1)
    return np.ascontiguousarray(raw.T).view(dtype).reshape(shape)


def write_chunk(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write named arrays (byte-shuffled, deflated) as an ``.npz`` of byte blobs and a header."""
    header, blobs = {}, {}
    for name, a in arrays.items():
        a = np.asarray(a)
        header[name] = {"dtype": a.dtype.str, "shape": list(a.shape)}
        blobs[name] = np.frombuffer(zlib.compress(_shuffle(a), COMPRESSION_LEVEL), np.uint8)
    with io.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **blobs)


def read_chunk(path: Path, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays of a chunk file (``names`` only, when given)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(z["__header__"].tobytes())
            out = {}
            for name, meta in header.items():
                if names is None or name in names:
                    out[name] = _unshuffle(zlib.decompress(z[name].tobytes()), np.dtype(meta["dtype"]), tuple(meta["shape"]))
            return out
    except (OSError, ValueError, KeyError, zlib.error) as e:
        raise InputError(f"{path}: damaged work file ({e}); delete it and run again") from None


def _malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to do
        return None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Give freed heap memory back to the OS (glibc's ``malloc_trim``; a no-op elsewhere), after every chunk.

    glibc keeps the freed blocks of a chunk's large, differently sized arrays for reuse, and with them
    fragmented, a process's RSS crept up with the clip's length although nothing stayed alive: measured on
    the stabilisation of 640x360 frames, 930 -> 1047 MB over 24 chunks without trimming, a flat 602 MB with.
    """
    if _TRIM is not None:
        _TRIM(0)


def frame_hashes(arrays: dict[str, np.ndarray], count: int) -> list[str]:
    """sha256 per frame over every array's frame slice (names sorted)."""
    hashes = []
    for i in range(count):
        h = hashlib.sha256()
        for name in sorted(arrays):
            h.update(name.encode())
            h.update(np.ascontiguousarray(arrays[name][i]))
        hashes.append(h.hexdigest())
    return hashes


# --------------------------------------------------------------------------------------------------
# stages


class StageStopped(RuntimeError):
    """A reader waited for frames that the stage computing them will not deliver (it failed or was stopped)."""


class FrameChunks(Protocol):
    """Where a stage writes: the ranges still to compute and a commit per chunk (``work.StageStore`` or a folder)."""

    def plan(self, chunk_frames: int) -> list[tuple[int, int]]: ...

    def commit(self, first: int, arrays: dict[str, np.ndarray], stats: dict[str, np.ndarray] | None = None) -> None: ...




# A chunk and the two around it (what a reader with context needs at once), for each of two readers at once: the fill's
# runs of chunks (``threads.ThreadPlan.fill_workers``) read the disparity at two places of the clip, and with three
# chunks kept each read evicted the other's.
READ_CACHE_CHUNKS = 6
READ_CACHE_BYTES = 512 << 20  # and no more memory than this (a 1080p fill chunk is ~130 MB: then three or four)


class _Writer(threading.Thread):
    """``write()`` in a thread of its own, its exception kept for whoever joins it (``StageStore.flush``)."""

    def __init__(self, name: str, write: Callable[[], None]) -> None:
        super().__init__(name=f"write-{name}", daemon=True)
        self._write, self.error = write, None
        self.start()

    def run(self) -> None:
        try:
            self._write()
        except BaseException as e:  # (KeyboardInterrupt from a test's on_chunk too: raised in the stage's thread)
            self.error = e


class StageStore:
    """One stage's chunk files and record (module docstring). ``open`` it with the key of this run.

    ``folder``: the name of its folder and record in ``root`` (default ``name``): a stage may keep several, one per
    variant of its parameters that a later run may come back to (``stages.fill.stage.store_name``: one per view count).
    """

    def __init__(self, root: Path, name: str, *, key: str, params: dict, inputs: dict, num_frames: int, folder: str | None = None,
                 writes: int = 1) -> None:  # fmt: skip
        self.root, self.name, self.key = root, name, key
        self.writes = writes  # chunks written at once in the background (``commit``; ``threads.ThreadPlan.writes``)
        self.params, self.inputs, self.num_frames = params, inputs, num_frames
        folder = folder or name
        self.folder = root / folder
        self.record_path = root / f"{folder}.json"
        # the chunks read last, by first frame: a reader of a chunk and its context (the next stage, the fill) reads
        # the chunks around it, and its next read most of them again (at 1080p one chunk at a time decompressed each
        # ~3 times: a fifth of the fill thread's time on the GPU, py-spy)
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._started = time.perf_counter()
        self.resumed_from: int | None = None  # first frame computed by this run when earlier chunks were kept
        self.record = self._load()
        # Readers in other threads (the next stage, running concurrently) wait on this for chunks to be committed;
        # ``_failed`` wakes them when the producer stopped, so that none waits forever.
        self._changed = threading.Condition()
        self._producing = False
        self._failed: BaseException | None = None
        self.stopping = False  # the run stops: no more commits (``Runner``)
        self._read_lock = threading.Lock()  # the read cache is shared by a stage's readers
        self._writing: list[_Writer] = []  # the chunks being written in the background (``commit``)
        self._writing_lock = threading.Lock()  # (several threads of a stage may commit: the fill's runs)

    # the record

    def _load(self) -> dict:
        try:
            record = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            record = None
        if record is not None and record.get("key") == self.key and record.get("num_frames") == self.num_frames:
            self._stale = False
            return record
        # Another key (or none): the old chunks are of no use. They are deleted when this run starts the
        # stage (``start``), not now, so that merely looking at a stage changes nothing on disk.
        self._stale = record is not None or self.folder.exists()
        return {
            "stage": self.name, "key": self.key, "svg3d": __version__, "params": self.params, "inputs": self.inputs,
            "num_frames": self.num_frames, "chunks": [], "complete": False, "digest": None, "cleaned": False,
        }  # fmt: skip

    def _save(self) -> None:
        io.write_text(self.record_path, json.dumps(self.record, indent=None, default=str))

    @property
    def chunks(self) -> list[dict]:
        return self.record["chunks"]

    @property
    def complete(self) -> bool:
        """Every frame is recorded (the data may have been cleaned since: ``has_data``)."""
        return bool(self.record["complete"])

    @property
    def has_data(self) -> bool:
        """Every recorded chunk file is present with its recorded size."""
        return all(self._chunk_ok(c) for c in self.chunks)

    @property
    def current(self) -> bool:
        """Complete for this key, with its data present."""
        return self.complete and not self.record.get("cleaned") and self.has_data

    @property
    def digest(self) -> str:
        if not self.complete:
            raise RuntimeError(f"stage {self.name} is not complete")
        return self.record["digest"]

    def _chunk_ok(self, c: dict) -> bool:
        path = self.folder / c["file"]
        return path.is_file() and path.stat().st_size == c["size"]

    def start(self) -> list[tuple[int, int]]:
        """Prepare to (re)compute: drop another key's files and chunks whose file is gone; return the missing ranges."""
        if self._stale:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.record_path.unlink(missing_ok=True)
            self._stale = False
        # A run killed inside a write leaves that file's temporary (``io.atomic_path``); the work folder is
        # locked, so no live writer holds one: they are litter.
        for tmp in [*self.folder.glob(".*.part.*"), *self.root.glob(f".{self.record_path.stem}.*.part.json")]:
            tmp.unlink(missing_ok=True)
        kept = [c for c in self.chunks if self._chunk_ok(c)]
        if len(kept) != len(self.chunks) or self.record.get("cleaned"):
            self.record.update(chunks=kept, complete=False, digest=None, cleaned=False)
            self._save()
        self.folder.mkdir(parents=True, exist_ok=True)
        missing = self.missing()
        if kept and missing:
            self.resumed_from = missing[0][0]
        self._started = time.perf_counter()
        return missing

    def missing(self) -> list[tuple[int, int]]:
        """Frame ranges ``[a, b)`` no recorded chunk covers, in order."""
        covered = np.zeros(self.num_frames, bool)
        for c in self.chunks:
            covered[c["first"] : c["first"] + c["count"]] = True
        out, a = [], None
        for i, done in enumerate(np.append(covered, True)):
            if not done and a is None:
                a = i
            elif done and a is not None:
                out.append((a, i))
                a = None
        return out

    def plan(self, chunk_frames: int) -> list[tuple[int, int]]:
        """The missing frames cut into chunks of at most ``chunk_frames``."""
        return [(s, min(s + chunk_frames, b)) for a, b in self.missing() for s in range(a, b, chunk_frames)]

    def commit(self, first: int, arrays: dict[str, np.ndarray], stats: dict[str, np.ndarray] | None = None) -> None:
        """Write the chunk of frames ``first ..`` (every array's first axis is its frames) and record it, in a thread
        of its own while the stage computes its next chunk (deflate and the frames' hashes were a fifth of the fill
        stage's thread at 1080p on a GPU): the arrays are the store's from here on, the caller must not change them.
        Each commit first waits for the oldest chunks still being written until fewer than ``writes`` are (all of a
        stage's threads counted: the fill's runs of chunks, ``Runner``'s workers) and raises their error; ``flush``
        and ``finish`` wait for all of them. With one write at a time, deflating a chunk of 1080p depth took longer
        than computing the next on a GPU (py-spy: 45 ms a frame in the depth stage's writer, which its commits waited
        for), while the machine's other cores idled."""
        if self._failed is not None and self._producing is False and self.stopping:
            raise StageStopped(f"stage {self.name} stopped before frame {first}")
        self._wait_writes(self.writes - 1)
        writer = _Writer(f"{self.name}-{first}", lambda: self.record_chunk(self.write(first, arrays, stats)))
        with self._writing_lock:
            self._writing.append(writer)

    def flush(self) -> None:
        """Wait for every chunk being written (``commit``) and raise the first error one had."""
        self._wait_writes(0)

    def _wait_writes(self, keep: int) -> None:
        """Wait for the oldest chunks being written until at most ``keep`` are, and raise the first error one had."""
        with self._writing_lock:
            cut = max(0, len(self._writing) - keep)
            writing, self._writing = self._writing[:cut], self._writing[cut:]
        for writer in writing:
            writer.join()
        error = next((w.error for w in writing if w.error is not None), None)
        if error is not None:
            raise error

    def write(self, first: int, arrays: dict[str, np.ndarray], stats: dict[str, np.ndarray] | None = None) -> dict:
        """Write the chunk's file and return its record entry, without recording it (``commit`` records it; a worker
        process of ``convert --gpus`` sends it to the process that owns the record)."""
        counts = {len(a) for a in arrays.values()}
        if len(counts) != 1:
            raise ValueError(f"chunk arrays disagree on the frame count: { {k: len(a) for k, a in arrays.items()} }")
        count = counts.pop()
        if not (0 <= first and first + count <= self.num_frames):
            raise ValueError(f"chunk {first}..{first + count - 1} is outside the stage's {self.num_frames} frames")
        name = CHUNK_NAME.format(first=first)
        path = self.folder / name
        write_chunk(path, arrays)
        entry = {
            "first": first, "count": count, "file": name, "size": path.stat().st_size,
            "frames": frame_hashes(arrays, count),
            "stats": {k: np.asarray(v, dtype=np.float64).tolist() for k, v in (stats or {}).items()},
            "written": round(time.time(), 3),  # (epoch seconds: when each stage's chunks came, for the benchmarks' timeline)
        }  # fmt: skip
        release_memory()
        return entry

    def record_chunk(self, entry: dict) -> None:
        """Record a chunk whose file is written (``write``): readers waiting for its frames wake."""
        with self._read_lock:  # (a chunk written again: not the one read before)
            self._cache.pop(entry["first"], None)
        with self._changed:
            chunks = [c for c in self.chunks if c["first"] != entry["first"]] + [entry]
            self.record["chunks"] = sorted(chunks, key=lambda c: c["first"])
            self._save()
            self._changed.notify_all()

    def finish(self) -> str:
        """Mark the stage complete (every frame recorded); returns its digest."""
        self.flush()
        if self.missing():
            raise RuntimeError(f"stage {self.name}: frames {self.missing()[0]} are missing")
        hashes = [h for c in self.chunks for h in c["frames"]]
        seconds = time.perf_counter() - self._started
        self.record.update(
            complete=True, digest=digest([self.key, hashes]), cleaned=False, seconds=round(seconds, 3),
            finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )  # fmt: skip
        self._save()
        self.producing(False)
        return self.record["digest"]

    # concurrent readers (``Runner``)

    def producing(self, on: bool, error: BaseException | None = None) -> None:
        """Mark the stage as being computed by another thread (readers then wait for its chunks), or stopped."""
        with self._changed:
            self._producing, self._failed = on, error
            self._changed.notify_all()

    def _covered(self, a: int, b: int) -> bool:
        todo = b - a
        for c in self.chunks:
            todo -= max(0, min(b, c["first"] + c["count"]) - max(a, c["first"]))
        return todo <= 0

    def wait(self, a: int, b: int) -> None:
        """Block until frames ``a .. b-1`` are committed (at once when they are, or when nobody computes them)."""
        if not self._covered(a, b):  # the chunks being written first (their errors are the producer's: its ``flush``)
            with self._writing_lock:
                writing = list(self._writing)
            for writer in writing:
                writer.join()
        with self._changed:
            while self._producing and not self._covered(a, b):
                self._changed.wait(0.5)
            if self._failed is not None and not self._covered(a, b):
                raise StageStopped(f"stage {self.name} stopped before frame {b - 1}") from self._failed

    def clean(self) -> int:
        """Delete the chunk files (the record stays, marked cleaned); returns the bytes freed."""
        freed = sum(p.stat().st_size for p in self.folder.glob("*") if p.is_file()) if self.folder.is_dir() else 0
        shutil.rmtree(self.folder, ignore_errors=True)
        self.record["cleaned"] = True
        self._save()
        return freed

    # reading

    def _chunk_at(self, i: int) -> dict:
        for c in self.chunks:
            if c["first"] <= i < c["first"] + c["count"]:
                return c
        raise RuntimeError(f"stage {self.name}: frame {i} is not computed")

    def read(self, a: int, b: int, name: str) -> np.ndarray:
        """Frames ``a .. b-1`` of the array ``name``, across chunk files (waiting for them while the stage runs)."""
        self.wait(a, b)
        parts, i = [], a
        with self._read_lock:
            while i < b:
                c = self._chunk_at(i)
                data = self._cached(c)[name]
                j = min(b, c["first"] + c["count"])
                parts.append(data[i - c["first"] : j - c["first"]])
                i = j
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _cached(self, c: dict) -> dict[str, np.ndarray]:
        """Chunk ``c``'s arrays, from the cache of the last ``READ_CACHE_CHUNKS`` read (within ``READ_CACHE_BYTES``,
        the newest always kept) or read now; under ``_read_lock``."""
        cache = self._cache
        if c["first"] in cache:
            cache.move_to_end(c["first"])
            return cache[c["first"]]
        cache[c["first"]] = read_chunk(self.folder / c["file"])
        size = lambda arrays: sum(a.nbytes for a in arrays.values())  # noqa: E731
        while len(cache) > 1 and (len(cache) > READ_CACHE_CHUNKS or sum(size(x) for x in cache.values()) > READ_CACHE_BYTES):
            cache.popitem(last=False)
        return cache[c["first"]]

    def stats(self, name: str, end: int | None = None) -> np.ndarray:
        """Per-frame statistic ``name`` of frames ``0 .. end-1`` (default: the whole stage), float64 ``(end, ...)``;
        waits for them while the stage runs."""
        end = self.num_frames if end is None else min(end, self.num_frames)
        self.wait(0, end)
        with self._changed:
            chunks = list(self.chunks)
        return np.concatenate([np.asarray(c["stats"][name], dtype=np.float64) for c in chunks])[:end]

    def bytes(self) -> int:
        return sum(c["size"] for c in self.chunks)


class OutputRecord:
    """The record of a stage that writes finished files elsewhere (the exports): its key and its outputs.

    ``current(key)``: the record has this key and every output is there with its recorded size. The
    record is written after the outputs, so a run killed while writing them leaves a stale record.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.record = json.loads(path.read_text())
        except (OSError, ValueError):
            self.record = {}

    def current(self, key: str) -> bool:
        if self.record.get("key") != key:
            return False
        for out in self.record.get("outputs", {}).values():
            p = Path(out["path"])
            if not p.exists() or (p.is_file() and p.stat().st_size != out["size"]):
                return False
        return True

    def outputs(self) -> dict[str, Path]:
        return {name: Path(out["path"]) for name, out in self.record.get("outputs", {}).items()}

    def write(self, key: str, outputs: dict[str, Path]) -> None:
        def entry(p: Path) -> dict:
            size = p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
            return {"path": str(p.resolve()), "size": size if p.is_file() else None}

        self.record = {
            "key": key, "svg3d": __version__, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "outputs": {name: entry(Path(p)) for name, p in outputs.items()},
        }  # fmt: skip
        io.write_text(self.path, json.dumps(self.record, indent=1))


class OutputStore:
    """A stage that writes finished files elsewhere (the exports), behind the ``StageStore`` calls the runner makes.

    Its files are written whole by every run (each atomically); it is complete when its ``OutputRecord`` has this
    key and every output is there. The stage puts what it wrote in ``outputs`` before ``finish`` records it.
    """

    def __init__(self, root: Path, name: str, *, key: str, num_frames: int) -> None:
        self.root, self.name, self.key, self.num_frames = root, name, key, num_frames
        self.record_file = OutputRecord(root / f"{name}.json")
        self.record = {"digest": None}
        self.outputs: dict[str, Path] = {}
        self.resumed_from = None
        self.chunks: list[dict] = []

    @property
    def complete(self) -> bool:
        return self.record_file.current(self.key)

    has_data = True

    def start(self) -> list[tuple[int, int]]:
        return [(0, self.num_frames)]

    def plan(self, chunk_frames: int) -> list[tuple[int, int]]:
        return [(a, min(a + chunk_frames, self.num_frames)) for a in range(0, self.num_frames, chunk_frames)]

    def producing(self, on: bool, error: BaseException | None = None) -> None:
        pass

    def finish(self) -> None:
        self.record_file.write(self.key, self.outputs)

    def bytes(self) -> int:
        return sum(p.stat().st_size for p in self.outputs.values() if Path(p).is_file())

    def clean(self) -> int:
        return 0


# --------------------------------------------------------------------------------------------------
# the runner


@dataclass(frozen=True)
class StageReport:
    """What one stage did: ``ran`` False when it was up to date; ``resumed_from``: first frame this run computed."""

    name: str
    ran: bool
    seconds: float
    frames: int
    resumed_from: int | None = None


def _no_progress(desc: str, total: int, initial: int = 0):
    return (lambda n: None), (lambda: None)


def split(chunks: list[tuple[int, int]], parts: int) -> list[list[tuple[int, int]]]:
    """``chunks`` in order, cut into at most ``parts`` contiguous runs of equal frame counts (within a frame; none
    empty): a chunk across a run's end is cut there, so a short clip of few chunks is shared out evenly too (a
    chunk's frames are a function of its inputs alone, so the cut changes files, not frames)."""
    total = sum(b - a for a, b in chunks)
    parts = max(1, min(parts, total))
    ends = [(total * (k + 1)) // parts for k in range(parts)]  # each run's end, in frames to do
    out: list[list[tuple[int, int]]] = [[]]
    done = 0
    for a, b in chunks:
        while a < b:
            take = min(b - a, ends[len(out) - 1] - done)
            out[-1].append((a, a + take))
            a, done = a + take, done + take
            if done == ends[len(out) - 1] and len(out) < parts:
                out.append([])
    return [run for run in out if run]


class Runner:
    """Evaluates a pipeline of stages lazily, as ``make`` does, and runs the stages that must run concurrently.

    Each stage's key holds its parameters and the keys of the stages it reads (``needs``), so every key is known
    before anything runs: a stage that is complete for its key is skipped, one that is partly done resumes at its
    first missing chunk, and a stage runs only when a later one needs its data. The stages that run are each a
    thread: a stage reads its inputs' chunks as they are committed (``StageStore.read`` waits for them), so chunk i
    of stage k+1 is computed while stage k computes chunk i+1. The hand-off is the committed chunk file, so memory
    stays one chunk (and its declared context) per stage, and results are those of running the stages one after
    another (each chunk is a function of its inputs' frames alone; tested byte for byte). ``concurrent=False``
    runs them one after another in this thread.

    A stage follows ``svg3d.stages.Stage``. ``stores[name]`` are made by ``make_store(name, key, params)``; a stage's ``run(inputs, store, chunks, progress)``
    gets its inputs' stores by name. The first error of any stage stops the others at their next chunk and is
    raised here; what they committed stays.

    ``workers[name]`` > 1: a ``spread`` stage (each chunk a function of its inputs alone) computes that many of its
    chunks at once, each thread calling ``run`` with a contiguous run of them (``split``); the chunks and so the bytes are those
    of one thread (chunks may be committed out of order: readers wait for the frames they need). On a CPU that
    takes the cores a lone stage's small per-frame ops leave idle (``threads.ThreadPlan.fill_workers``).
    ``on_thread(name, workers)`` is called in every thread a stage computes in before it starts (``convert`` sets
    that thread's torch threads there).
    """

    def __init__(
        self,
        stages: list,
        make_store: Callable[[str, str, dict], object],
        *,
        chunk_frames: int,
        progress: Callable | None = None,
        concurrent: bool = True,
        finished: Callable[[str], None] | None = None,
        workers: dict[str, int] | None = None,
        on_thread: Callable[[str, int], None] | None = None,
    ) -> None:
        self.finished = finished or (lambda name: None)  # told when a stage's thread ends, however it ends
        self.workers = workers or {}  # stage -> chunks it computes at once (a ``spread`` stage's only)
        self.on_thread = on_thread or (lambda name, workers: None)  # told in every thread a stage computes in, first
        self.stages = {s.name: s for s in stages}
        self.order = [s.name for s in stages]  # the pipeline order: every stage after the ones it needs
        self.chunk_frames, self.concurrent = chunk_frames, concurrent
        self.progress = progress or _no_progress
        self.reports: dict[str, StageReport] = {}
        self.stores: dict[str, object] = {}
        self._jobs: list[_StageJob] = []
        for name in self.order:
            stage = self.stages[name]
            missing = [n for n in stage.needs if n not in self.stores]
            if missing:
                raise ValueError(f"stage {name} needs {missing}, which no earlier stage makes")
            params = stage.params()
            key = digest({"stage": name, "svg3d": __version__, "params": params, "inputs": {n: self.stores[n].key for n in stage.needs}})
            self.stores[name] = make_store(name, key, params)

    def todo(self, target: str) -> list[str]:
        """The stages that must run for ``target`` to be complete, in pipeline order."""
        run: set[str] = set()

        def visit(name: str, need_data: bool) -> None:
            store = self.stores[name]
            if name in run or (store.complete and (store.has_data or not need_data)):
                return
            run.add(name)
            for up in self.stages[name].needs:
                visit(up, True)

        visit(target, False)
        return [n for n in self.order if n in run]

    def run(self, target: str) -> dict[str, StageReport]:
        """Make ``target`` complete (and every stage it needs that is not); returns a report per stage visited."""
        names = self.todo(target)
        for name in self.order:
            if name not in names and name not in self.reports and (name == target or self._feeds(name, names)):
                log.info("%-10s up to date (%d frames)", name, self.stores[name].num_frames)
                self.reports[name] = StageReport(name, False, 0.0, self.stores[name].num_frames)
        if not names:
            return self.reports
        jobs = self._jobs = [_StageJob(self, name) for name in names]
        for job in jobs:
            job.start()
        if hasattr(self.progress, "plan"):  # (a pipeline progress: "stage k of n" and an overall ETA)
            self.progress.plan([(j.name, j.store.num_frames, j.store.num_frames - j.todo) for j in jobs])
        if not self.concurrent or len(jobs) == 1:
            for job in jobs:
                job.body()
                if job.error is not None:
                    raise job.error
            return self.reports
        threads = [threading.Thread(target=job.body, name=f"stage-{job.name}", daemon=True) for job in jobs]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)  # (a plain join would hold Ctrl-C back until the thread ends)
        except BaseException as e:  # Ctrl-C here: the stages stop at their next chunk or read
            _stop_all(jobs, e)
            for t in threads:
                t.join(STOP_GRACE / len(threads))
            raise
        errors = [j.error for j in jobs if j.error is not None]
        first = next((e for e in errors if not isinstance(e, StageStopped)), errors[0] if errors else None)
        if first is not None:
            raise first
        return self.reports

    def _feeds(self, name: str, names: list[str]) -> bool:
        """``name`` is read by a stage that runs (its report says it was up to date)."""
        return any(name in self.stages[n].needs for n in names)


STOP_GRACE = 1.0  # s a stopped run waits for its stage threads to finish their chunk before it leaves them


def _stop_all(jobs: list, error: BaseException) -> None:
    for job in jobs:
        job.stop = True
        job.store.stopping = True
        job.store.producing(False, error)


class _StageJob:
    """One stage's run inside ``Runner.run``: its store prepared, its body, its report and its error."""

    def __init__(self, runner: Runner, name: str) -> None:
        self.runner, self.name = runner, name
        self.stage, self.store = runner.stages[name], runner.stores[name]
        self.error: BaseException | None = None
        self.stop = False

    def start(self) -> None:
        store = self.store
        self.was_complete = store.complete and store.record.get("digest")
        self.missing = store.start()
        self.todo = sum(b - a for a, b in self.missing)
        if store.resumed_from is not None:
            log.info("%-10s resumed at frame %d: %d of %d frames were done", self.name, store.resumed_from, store.num_frames - self.todo, store.num_frames)
        elif self.was_complete:
            log.info("%-10s its files were cleaned: computing it again", self.name)
        store.producing(True)

    def body(self) -> None:
        runner, store = self.runner, self.store
        inputs = {n: runner.stores[n] for n in self.stage.needs}
        started = time.perf_counter()
        advance, close = runner.progress(self.name, store.num_frames, initial=store.num_frames - self.todo)

        def step(n: int) -> None:
            if self.stop:
                raise StageStopped(f"stage {self.name} stopped: another stage stopped")
            advance(n)

        try:
            self._compute(inputs, step)
            digest_ = store.finish()
        except BaseException as e:  # the log says where a run ended; what is committed stays
            self.error = e
            try:  # (the chunk still being written is committed too)
                store.flush()
            except BaseException:  # noqa: BLE001 (its error, if any, comes after the one raised)
                pass
            done = sum(c["count"] for c in store.chunks)
            if not isinstance(e, StageStopped):
                log.info("%-10s stopped (%s) with %d of %d frames committed", self.name, type(e).__name__, done, store.num_frames)
            _stop_all(runner._jobs, e)  # the others stop at their next chunk; their readers wake
            return
        finally:
            close()
            runner.finished(self.name)
        if self.was_complete and digest_ != self.was_complete:
            log.warning("%s: recomputed with different results (a nondeterministic model?); the stages after it were made from the earlier results", self.name)
        seconds = time.perf_counter() - started
        log.info("%-10s done: %d frames in %.1f s, %.1f MB", self.name, self.todo, seconds, store.bytes() / 1e6)
        runner.reports[self.name] = StageReport(self.name, True, seconds, self.todo, store.resumed_from)

    def _compute(self, inputs: dict, step: Callable[[int], None]) -> None:
        """The stage's chunks, in this thread or, for a ``spread`` stage given ``workers``, over that many threads
        (this one and the rest) each taking a contiguous run of them (``split``: a thread's chunks follow each other, so
        a filler hands its flows on from one to the next as in one thread); the first error is raised once all have ended."""
        runner, store = self.runner, self.store
        chunks = store.plan(runner.chunk_frames)
        k = min(runner.workers.get(self.name, 1), len(chunks)) if getattr(self.stage, "spread", False) else 1
        if k <= 1:
            runner.on_thread(self.name, 1)
            self.stage.run(inputs, store, chunks, step)
            return
        runs = split(chunks, k)
        errors: list[BaseException] = []

        def work(j: int) -> None:
            try:
                runner.on_thread(self.name, k)
                self.stage.run(inputs, store, runs[j], step)
            except BaseException as e:  # the others stop at their next frame (``step``) or commit
                errors.append(e)
                self.stop = True

        others = [threading.Thread(target=work, args=(j,), name=f"stage-{self.name}-{j}", daemon=True) for j in range(1, len(runs))]
        for t in others:
            t.start()
        work(0)
        for t in others:
            t.join()
        if errors:
            raise next((e for e in errors if not isinstance(e, StageStopped)), errors[0])
