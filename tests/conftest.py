"""Fixtures for every test module."""

from __future__ import annotations

import logging

import pytest


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
