"""Dagster resource shells: typed configuration that opens the project's own clients."""

from render_assets.resources.database import DatabaseResource
from render_assets.resources.providers import ProvidersResource
from render_assets.resources.queue import RenderQueueResource
from render_assets.resources.storage import BlobStorageResource

__all__ = ["BlobStorageResource", "DatabaseResource", "ProvidersResource", "RenderQueueResource"]
