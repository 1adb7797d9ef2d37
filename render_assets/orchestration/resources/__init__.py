"""Dagster resource shells: typed configuration that opens the project's own clients."""

from render_assets.orchestration.resources.database import DatabaseResource
from render_assets.orchestration.resources.providers import ProvidersResource
from render_assets.orchestration.resources.queue import RenderQueueResource
from render_assets.orchestration.resources.storage import BlobStorageResource

__all__ = ["BlobStorageResource", "DatabaseResource", "ProvidersResource", "RenderQueueResource"]
