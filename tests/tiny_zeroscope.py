"""Moved to ``svg3d.tiny_models`` (bench/ needs the builders too); kept for imports from older branches."""

from svg3d.tiny_models import *  # noqa: F403
