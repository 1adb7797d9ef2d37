from dagster import ConfigurableResource

from render_assets.adapters.blob_storage import BlobStore, open_blob_store


class BlobStorageResource(ConfigurableResource):
    """Where asset values and delivered images live: `file:///path` or `gs://bucket/prefix`."""

    url: str
    public_base_url: str | None = None
    gcp_project: str | None = None

    def get(self) -> BlobStore:
        return open_blob_store(self.url, public_base_url=self.public_base_url, gcs_client=self._gcs_client)

    def _gcs_client(self):  # type: ignore[no-untyped-def]
        # Imported here: dagster-gcp costs about a second, and only gs:// storage needs it.
        from dagster_gcp import GCSResource

        return GCSResource(project=self.gcp_project).get_client()
