from dagster import ConfigurableResource
from pydantic import model_validator

from render_assets.adapters.blob_storage import (
    DEFAULT_SIGNED_URL_TTL_S,
    BlobStore,
    RetrySettings,
    check_url_options,
    open_blob_store,
)


class BlobStorageResource(ConfigurableResource):
    """Where asset values and delivered images live: `file:///path` or `gs://bucket/prefix`."""

    url: str
    public_base_url: str | None = None  # CDN_BASE_URL
    files_base_url: str | None = None  # where local files are served over HTTP (file:// storage only)
    gcp_project: str | None = None
    private: bool = False  # the bucket is private: delivered URLs are V4 signed URLs
    signed_url_ttl_s: int = DEFAULT_SIGNED_URL_TTL_S
    retry_timeout_s: float = RetrySettings.timeout_s
    retry_initial_delay_s: float = RetrySettings.initial_delay_s

    @model_validator(mode="after")
    def _consistent_urls(self) -> "BlobStorageResource":
        # At load time, so a contradiction stops the deployment instead of failing every render.
        check_url_options(self.public_base_url, self.private, self.signed_url_ttl_s)
        return self

    def get(self) -> BlobStore:
        return open_blob_store(
            self.url,
            public_base_url=self.public_base_url,
            files_base_url=self.files_base_url,
            gcs_client=self._gcs_client,
            private=self.private,
            signed_url_ttl_s=self.signed_url_ttl_s,
            retry=RetrySettings(timeout_s=self.retry_timeout_s, initial_delay_s=self.retry_initial_delay_s),
        )

    def _gcs_client(self):  # type: ignore[no-untyped-def]
        # Imported here: dagster-gcp costs about a second, and only gs:// storage needs it.
        from dagster_gcp import GCSResource

        return GCSResource(project=self.gcp_project).get_client()
