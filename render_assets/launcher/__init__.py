"""Run launchers for the render worker's Dagster instance (see `forking.py`)."""

from render_assets.launcher.forking import ForkingRunLauncher

__all__ = ["ForkingRunLauncher"]
