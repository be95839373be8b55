"""Fixtures for every test module."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from svg3d.tiny_models import save_tiny_zeroscope


@pytest.fixture(autouse=True)
def restore_logging():
    """CLI ``main``s point the root logger at the test's (captured) stderr; undo that afterwards, or a later
    test's log records go to a closed stream (seen when test_denoise's svg.py tests ran before test_pipeline)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in root.handlers:
        if h not in handlers:
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def flush_denormals():
    """Random tiny VAEs decode extreme early x0 into subnormal floats, ~100x slower on a CPU; flush them
    (as svg.py does on the CPU). Opt-in per module: ``pytestmark = pytest.mark.usefixtures("flush_denormals")``."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A tiny random zeroscope saved in the diffusers folder layout, shared by every test that loads one."""
    return save_tiny_zeroscope(tmp_path_factory.mktemp("zeroscope"))


@pytest.fixture(scope="module")
def model(model_dir):
    """The tiny zeroscope loaded on the CPU through the real loader."""
    from svg3d.models import load_zeroscope

    return load_zeroscope(str(model_dir), device=torch.device("cpu"))
