"""Temporary ("part") files and folders that become outputs only when complete, and that a killed run leaves recognisable.

An output ``out/clip_SBS_LR.mp4`` is written as ``out/.clip_SBS_LR.<hash8>.svg3d-part.mp4`` and renamed
over the output when complete (``os.replace``: atomic on one file system). A folder output is built
the same way as ``out/.clip_eyes.<hash8>.svg3d-part/``. The names are

- hidden (a leading dot), so a folder listing or a player's library does not show them;
- recognisable: ``remove_stale_parts(out_dir)`` (the CLI calls it when a run starts) removes every
  part that no live writer holds, so even a ``kill -9`` leaves nothing behind after the next run;
- bounded: at most ``MAX_PART_NAME`` bytes whatever the output's name (a 240-character stem gave a
  256-byte temporary name before, which the file system refused): the output's name is cut at a
  UTF-8 character boundary and the hash of the whole name keeps parts of different outputs apart.

A live writer holds an exclusive ``flock`` on its part (files and folders alike); the lock dies with
the process, so a part whose lock can be taken is stale. (Where ``fcntl`` is missing, Windows, every
part counts as stale: do not start two runs into one folder there.)
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

log = logging.getLogger(__name__)

PART_TAG = ".svg3d-part"
MAX_PART_NAME = 200  # bytes: under the 255 of ext4/XFS/APFS/NTFS, room to spare for a suffix
_NAME_BUDGET = 150  # bytes of the output's own name kept in the part's name
_PART_RE = re.compile(r"^\..*\.[0-9a-f]{8}\.svg3d-part(-old)?(\.[A-Za-z0-9]{1,8})?$")
MAX_NAME = 255  # bytes: a file name longer than this cannot be created (ext4, XFS, APFS, NTFS)


def _cut(text: str, budget: int) -> str:
    """``text`` cut to at most ``budget`` UTF-8 bytes, at a character boundary."""
    data = text.encode()
    if len(data) <= budget:
        return text
    return data[:budget].decode(errors="ignore")


def part_path(final: str | os.PathLike, *, folder: bool = False, tag: str = "") -> Path:
    """The part name for the output ``final`` (a file, or a folder with ``folder=True``), in its folder."""
    final = Path(final)
    suffix = "" if folder else final.suffix
    stem = final.name if folder else final.name[: len(final.name) - len(suffix)]
    digest = hashlib.sha1(f"{final.name}{tag}".encode()).hexdigest()[:8]
    name = f".{_cut(stem, _NAME_BUDGET)}.{digest}{PART_TAG}{tag}{suffix}"
    assert len(name.encode()) <= MAX_PART_NAME, name
    return final.parent / name


def is_part(name: str) -> bool:
    return bool(_PART_RE.match(name))


def _try_lock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


class Part:
    """One part (a file or a folder) held by this process until ``commit`` renames it over ``final`` or ``discard`` removes it.

    Creating the part takes its lock; a leftover part of the same name (a killed run) is replaced.
    """

    def __init__(self, final: str | os.PathLike, *, folder: bool = False):
        self.final = Path(final)
        self.folder = folder
        self.path = part_path(self.final, folder=folder)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():  # a killed run's part (remove it), or another run writing the same output (refuse)
            fd = os.open(self.path, os.O_RDONLY)
            try:
                if not _try_lock(fd):
                    raise OSError(errno.EBUSY, f"{self.final.name} is being written by another process")
            finally:
                os.close(fd)
            _remove(self.path)
        if folder:
            self.path.mkdir()
            self._fd = os.open(self.path, os.O_RDONLY)
        else:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        if not _try_lock(self._fd):  # another process created the same part between our remove and create
            os.close(self._fd)
            raise OSError(errno.EBUSY, f"{self.final.name} is being written by another process")

    def commit(self) -> Path:
        """Rename the part over ``final`` (a folder replaces an existing folder) and release the lock."""
        if self.folder and self.final.is_dir():
            old = part_path(self.final, folder=True, tag="-old")  # recognisable too if we are killed here
            _remove(old)
            os.replace(self.final, old)
            os.replace(self.path, self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.path, self.final)
        self._release()
        return self.final

    def discard(self) -> None:
        """Remove the part (idempotent) and release the lock."""
        with contextlib.suppress(OSError):
            _remove(self.path)
        self._release()

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove_stale_parts(out_dir: str | os.PathLike) -> list[Path]:
    """Remove the parts in ``out_dir`` that no live writer holds (left by a killed run); return them.

    Only names this module makes are touched (``.<name>.<hash8>.svg3d-part[.ext]``). A missing folder
    is not an error (nothing to clean).
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    removed = []
    for entry in sorted(out_dir.iterdir()):
        if not is_part(entry.name):
            continue
        try:
            fd = os.open(entry, os.O_RDONLY)
        except OSError:
            continue  # vanished meanwhile
        try:
            if not _try_lock(fd):
                log.debug("%s is held by a live writer; kept", entry)
                continue
            _remove(entry)
            removed.append(entry)
            log.info("removed %s, left by an interrupted run", entry)
        finally:
            os.close(fd)
    return removed
