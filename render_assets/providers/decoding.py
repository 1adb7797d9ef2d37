"""Image bytes from a provider reply, decoded safely (a malformed reply is the provider's fault)."""

from __future__ import annotations

import base64
import binascii
import io
import warnings

from PIL import Image

from render_assets.providers.base import ProviderError
from render_assets.providers.errors import malformed

# Larger than any native output we ask for (4K square is 16.8 MP; an upscaler gives at most 17 MP).
MAX_PIXELS = 40_000_000


def decode_image(provider: str, data: bytes | str) -> Image.Image:
    """An RGB image from raw or base64 bytes; ProviderError(malformed) for anything else."""
    if isinstance(data, str):
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise malformed(provider, "image is not valid base64") from None
    if not data:
        raise malformed(provider, "empty image")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise malformed(provider, f"image of {image.width}x{image.height} exceeds the pixel limit")
            image.load()
        except ProviderError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise malformed(provider, "image does not decode") from None
    return image.convert("RGB")
