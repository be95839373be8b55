"""What every command-line entry point shares: error reporting, logging, progress bars, devices.

A CLI module defines ``create_parser()`` and ``main(argv=None) -> int`` and ends with
``raise SystemExit(main())``. ``main`` wraps its work in ``run_cli`` so that an ``InputError``
becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from .checks import InputError

log = logging.getLogger("svg3d")


def run_cli(body: Callable[[], None]) -> int:
    """Run ``body``; map ``InputError`` to ``error: ...`` + exit 2 and Ctrl-C to exit 130."""
    try:
        body()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
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
        fh = logging.FileHandler(log_file)
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(fh)
    for noisy in ("PIL", "matplotlib", "urllib3", "filelock", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def progress_bar(total: int, desc: str, *, disable: bool = False) -> tuple[Callable[[int], None], Callable[[], None]]:
    """A tqdm bar as ``(advance(n), close())`` — the library takes ``advance`` as its progress callable."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, disable=disable, leave=False, dynamic_ncols=True)
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
