"""What every command-line entry point shares: error reporting, logging, progress bars, devices.

A CLI module defines ``create_parser()`` and ``main(argv=None) -> int`` and ends with
``raise SystemExit(main())``. ``main`` wraps its work in ``run_cli`` so that an ``InputError``
becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from .checks import InputError

log = logging.getLogger("svg3d")


def run_cli(body: Callable[[], None], flags: dict[str, str] | None = None, *, underscores: bool = False) -> int:
    """Run ``body``; map ``InputError`` to ``error: ...`` + exit 2 and Ctrl-C to exit 130.

    ``flags``: this CLI's names for library parameters that differ from ``--param-name``
    (``InputError.flag_message``); ``underscores``: the CLI spells its flags ``--param_name`` (the seed
    scripts). The error is also logged, so that a log file records why a run ended.
    """
    try:
        body()
    except InputError as e:
        message = e.flag_message(flags, underscores=underscores)
        log.debug("stopped: %s", message)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except OSError as e:  # the disk or the OS refused (full disk, read-only or vanished folder): no traceback
        where = e.filename if e.filename is not None else ""
        message = f"{where}: {e.strerror or e}" if where else str(e.strerror or e)
        log.debug("stopped: %s", message)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        log.info("interrupted (Ctrl-C): finished chunks are kept")
        print("interrupted: finished outputs are kept; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def setup_logging(*, quiet: bool = False, log_file: str | Path | None = None) -> None:
    """INFO to stderr (WARNING with ``quiet``) and, optionally, DEBUG to ``log_file``."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for h in list(root.handlers):
        root.removeHandler(h)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if quiet else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(console)
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = _LogFile(log_file)
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(fh)
    for noisy in ("PIL", "matplotlib", "urllib3", "filelock", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _LogFile(logging.FileHandler):
    """The log file; when it cannot be written (a full disk) it stops, quietly: logging's own handler would print
    a traceback per record, and the run's own writes report the cause in one line."""

    broken = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.broken:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        self.broken = True
        with contextlib.suppress(OSError):
            self.close()


def progress_bar(total: int, desc: str, *, initial: int = 0, disable: bool = False) -> tuple[Callable[[int], None], Callable[[], None]]:
    """A tqdm bar as ``(advance(n), close())`` — the library takes ``advance`` as its progress callable.

    ``initial``: frames already done (a resumed stage), so that the rate and the ETA count this run's work only.
    """
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, desc=desc, disable=disable, leave=False, dynamic_ncols=True, unit="frame")
    return bar.update, bar.close


def resolve_device(name: str | None):
    """``--device`` to a ``torch.device``: ``auto``/None = CUDA when present, else CPU.

    Asking for CUDA on a machine without it is an ``InputError``, not a silent CPU fallback.
    """
    import torch

    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: no CUDA device on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise InputError(f"--device {name}: unsupported device type (use auto, cpu, cuda or cuda:N)")
    return device


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N")


class ProgressLog:
    """Progress as JSON lines appended to a file (``--progress-log``), for programs that watch a run (the web UI, batch).

    Each line: ``{"stage", "done", "total", "time"}`` (seconds since the epoch), written when a stage starts,
    at most every ``interval`` seconds while it runs, and when it ends. Used as a progress factory next to
    (or instead of) the tqdm bars: ``progress(desc, total, initial) -> (advance, close)``.
    """

    def __init__(self, path: str | Path, interval: float = 0.5) -> None:
        self.path, self.interval = Path(path), interval
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _write(self, stage: str, done: int, total: int) -> None:
        import json
        import time

        try:
            with open(self.path, "a") as f:
                f.write(json.dumps({"stage": stage, "done": done, "total": total, "time": round(time.time(), 3)}) + "\n")
        except OSError as e:  # (a full disk fails the write with no file name)
            raise OSError(e.errno, e.strerror or str(e), str(self.path)) from None

    def __call__(self, desc: str, total: int, initial: int = 0) -> tuple[Callable[[int], None], Callable[[], None]]:
        import time

        state = {"done": initial, "last": 0.0}
        self._write(desc, initial, total)

        def advance(n: int) -> None:
            state["done"] += n
            now = time.monotonic()
            if now - state["last"] >= self.interval or state["done"] >= total:
                state["last"] = now
                self._write(desc, state["done"], total)

        return advance, lambda: self._write(desc, state["done"], total)


def both(*factories):
    """A progress factory feeding every one of ``factories`` (tqdm bars and a ``ProgressLog``)."""

    def make(desc: str, total: int, initial: int = 0):
        pairs = [f(desc, total, initial=initial) for f in factories]
        return (lambda n: [a(n) for a, _ in pairs]), (lambda: [c() for _, c in pairs])

    return make
