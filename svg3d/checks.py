"""Input validation shared by every stage.

``InputError`` is the one exception type for problems with what the user gave us (a missing file, a
corrupt frame, inconsistent flags). The CLIs print its message as a single line and exit with status 2;
the GPU running out of memory is said in one line too (``gpu_out_of_memory``, exit status 1); anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is not imported at run time, so that CLIs' --help stays instant
    import torch


class InputError(Exception):
    """A problem with the user's input, reported as one line naming the file or flag at fault.

    ``params``: the library parameters the message names (``"start_frame 50: ..."``). The library does not
    know what a command line calls them, so a CLI rewrites them into its own flag names (``flag_message``).
    """

    def __init__(self, message: str, *, params: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.params = tuple(params)

    def flag_message(self, flags: dict[str, str] | None = None, *, underscores: bool = False) -> str:
        """The message with each of ``params`` written as a flag: ``flags[param]``, else ``--param-name``
        (``--param_name`` with ``underscores``)."""
        import re

        text = str(self)
        for param in self.params:
            flag = (flags or {}).get(param, "--" + (param if underscores else param.replace("_", "-")))
            text = re.sub(rf"(?<![\w-]){re.escape(param)}(?!\w)", flag, text)
        return text


def check_shape(x: torch.Tensor, spec: str, name: str = "tensor") -> dict[str, int]:
    """Check ``x`` against a shape spec such as ``"V T C H W"`` and return the named sizes.

    A spec item is a name (any size, but the same name must have the same size everywhere) or an
    integer literal (that exact size). Raises ``ValueError`` (a programming error, not an
    ``InputError``) with the spec in the message so it matches the docstring of the caller.
    """
    dims = spec.split()
    if x.ndim != len(dims):
        raise ValueError(f"{name}: expected shape ({spec}), got {tuple(x.shape)}")
    sizes: dict[str, int] = {}
    for dim, size in zip(dims, x.shape, strict=True):
        if dim.isdigit():
            if size != int(dim):
                raise ValueError(f"{name}: expected shape ({spec}), got {tuple(x.shape)}")
        elif sizes.setdefault(dim, size) != size:
            raise ValueError(f"{name}: expected shape ({spec}), got {tuple(x.shape)}")
    return sizes


def check_same(sizes: Sequence[dict[str, int]], keys: str, names: Sequence[str]) -> None:
    """Check that several ``check_shape`` results agree on the sizes named in ``keys``."""
    for key in keys.split():
        values = {s[key] for s in sizes}
        if len(values) > 1:
            raise ValueError(f"{', '.join(names)} disagree on {key}: {[s[key] for s in sizes]}")


def gpu_out_of_memory(e: BaseException) -> str | None:
    """The one line for torch's CUDA out-of-memory error (``torch.OutOfMemoryError``, a ``RuntimeError``; from a spread
    worker, a ``RuntimeError`` naming it), with what to change; None for any other error."""
    text = str(e)
    if type(e).__name__ != "OutOfMemoryError" and not text.startswith("OutOfMemoryError:"):
        return None
    first = text.removeprefix("OutOfMemoryError:").strip().split(". ")[:2]  # "CUDA out of memory. Tried to allocate 2.00 GiB"
    return (
        f"the GPU ran out of memory ({'. '.join(first).rstrip('.')}): give a smaller --chunk-frames, fewer --fill-workers or "
        "--processes-per-gpu, or a larger --max-gpu-memory; finished chunks are kept, and the same command resumes"
    )
