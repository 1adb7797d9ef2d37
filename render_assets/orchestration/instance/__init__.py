"""How runs start on the render worker's Dagster instance: `forking.py` (the run launcher) and
`coordinator.py` (the run coordinator)."""

from render_assets.orchestration.instance.coordinator import RenderRunCoordinator
from render_assets.orchestration.instance.forking import ForkingRunLauncher

__all__ = ["ForkingRunLauncher", "RenderRunCoordinator"]
