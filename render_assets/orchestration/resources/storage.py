from dataclasses import fields
from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import model_validator

from render_assets.adapters.blob_storage import BlobStore, check_url_options
from render_assets.services.backends import StorageSettings

if TYPE_CHECKING:
    from google.cloud.storage import Client as GcsClient


class BlobStorageResource(ConfigurableResource):
    """Where asset values and delivered images live: `file:///path` or `gs://bucket/prefix`. The
    fields carry `StorageSettings`' names and defaults."""

    url: str
    public_base_url: str | None = StorageSettings.public_base_url  # CDN_BASE_URL
    files_base_url: str | None = StorageSettings.files_base_url  # file:// storage served over HTTP
    gcp_project: str | None = StorageSettings.gcp_project
    private: bool = StorageSettings.private  # the bucket is private: delivered URLs are V4 signed URLs
    signed_url_ttl_s: int = StorageSettings.signed_url_ttl_s
    retry_timeout_s: float = StorageSettings.retry_timeout_s
    retry_initial_delay_s: float = StorageSettings.retry_initial_delay_s

    @model_validator(mode="after")
    def _consistent_urls(self) -> "BlobStorageResource":
        # At load time, so a contradiction stops the deployment instead of failing every render.
        check_url_options(self.public_base_url, self.private, self.signed_url_ttl_s)
        return self

    def settings(self) -> StorageSettings:
        return StorageSettings(**{field.name: getattr(self, field.name) for field in fields(StorageSettings)})

    def get(self) -> BlobStore:
        return self.settings().open(self._gcs_client)

    def _gcs_client(self) -> "GcsClient":
        # Imported here: dagster-gcp costs about a second, and only gs:// storage needs it.
        from dagster_gcp import GCSResource

        return GCSResource(project=self.gcp_project).get_client()
