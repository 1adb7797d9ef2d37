"""Asset values in blob storage: one object per asset and partition, images as PNG files and
everything else as JSON, so a person can open them in the bucket."""

import json
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import ConfigurableIOManager, InputContext, OutputContext
from PIL import Image

from render_assets.domain import imaging
from render_assets.orchestration.resources.storage import BlobStorageResource

IMAGE = "png"
JSON = "json"


def stored_value_key(asset_path: Sequence[str], partition: str | None, value_format: str) -> str:
    """Where an asset's value for a partition is kept: `dagster/<asset>/<partition>.<format>`."""
    return "/".join(["dagster", *asset_path, f"{partition or '__unpartitioned__'}.{value_format}"])


def _key(context: InputContext | OutputContext, value_format: str) -> str:
    partition = context.partition_key if context.has_partition_key else None
    return stored_value_key(context.asset_key.path, partition, value_format)


def _format_of(metadata: Mapping[str, Any] | None) -> str:
    return str((metadata or {}).get("value_format", JSON))


class BlobIOManager(ConfigurableIOManager):
    storage: BlobStorageResource

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        value_format = _format_of(context.definition_metadata)
        if value_format == IMAGE:
            if not isinstance(obj, Image.Image):
                raise TypeError(f"{context.asset_key.to_user_string()} must return a PIL image, got {type(obj)}")
            # Fast PNG: this is an intermediate value; the delivered master is encoded separately.
            data, media_type = imaging.encode(obj, "PNG", fast=True).data, "image/png"
        else:
            data, media_type = json.dumps(obj, sort_keys=True).encode(), "application/json"
        stored = self.storage.get().put(_key(context, value_format), data, content_type=media_type)
        context.add_output_metadata({"stored_at": stored.key, "stored_bytes": stored.size})

    def load_input(self, context: InputContext) -> Any:
        upstream = context.upstream_output
        value_format = _format_of(upstream.definition_metadata if upstream else None)
        data = self.storage.get().get(_key(context, value_format))
        if value_format == IMAGE:
            return imaging.decode(data)
        return json.loads(data)
