"""The customer's mask as the providers' edit routes take it.

A request's mask (`GenerationRequest.mask`) is a greyscale PNG of the photo's size, white where
the customer wants a redesign. Every provider reads it through `read_mask`, so all routes agree on
which pixels are marked, and a mask that cannot be right fails fast as INVALID: before anything
is sent or billed, and on routes whose API would not notice (Gemini takes any two images)."""

from __future__ import annotations

import io
import math

from PIL import Image, ImageOps

from render_assets.domain import masks
from render_assets.providers.base import ErrorKind, GenerationRequest, ProviderError
from render_assets.providers.fitting import center_crop, crop_size


def read_mask(provider: str, request: GenerationRequest) -> Image.Image | None:
    """The request's mask as an "L" image of 0 (keep) and 255 (redesign), the photo's size; None
    without one. ProviderError(INVALID) unless it is a greyscale PNG of exactly the photo's size
    that marks something."""
    if request.mask is None:
        return None
    photo_size = _photo_size(provider, request.reference_image)
    try:
        with Image.open(io.BytesIO(request.mask)) as opened:
            # Checked from the header, before any pixel is decoded.
            if opened.format != "PNG" or opened.mode != "L":
                raise _invalid(provider, f"the mask is a {opened.format} {opened.mode} image, not a greyscale PNG")
            if opened.size != photo_size:
                raise _invalid(provider, f"the mask is {_size(opened.size)}, the photo {_size(photo_size)}")
            mask = masks.binarize(opened)  # a soft edge splits in the middle
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise _invalid(provider, f"the mask does not decode ({type(error).__name__})") from None
    if mask.getbbox() is None:  # all black: an edit call would bill for an unchanged photo
        raise _invalid(provider, "the mask marks nothing to redesign")
    return mask


def png(mask: Image.Image) -> bytes:
    """A mask as PNG, in its own mode (the delivery encoder would make it RGB)."""
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    return buffer.getvalue()


def transparent_where_marked(mask: Image.Image) -> bytes:
    """OpenAI's mask: an RGBA PNG of the mask's size, alpha 0 where marked (the API edits where
    the mask is fully transparent) and 255 elsewhere."""
    rgba = Image.new("RGBA", mask.size, (0, 0, 0, 255))
    rgba.putalpha(ImageOps.invert(mask))
    return png(rgba)


def edit_canvas(photo_size: tuple[int, int], width: int, height: int) -> tuple[int, int]:
    """The size to ask an edit route for: the photo's aspect, large enough that its centre crop
    to width:height covers width x height. An output at the photo's aspect lies on the photo, so
    `fitting.fit_exact` crops output and photo alike and the mask stays on what it marks."""
    crop_w, crop_h = crop_size(photo_size, width, height)
    scale = max(width / crop_w, height / crop_h)
    return max(1, math.ceil(photo_size[0] * scale)), max(1, math.ceil(photo_size[1] * scale))


def fit_mask(mask: Image.Image, width: int, height: int) -> Image.Image:
    """The mask over a width x height output: cropped and scaled as `fitting.fit_exact` fits an
    image of the mask's size (same crop box, same pixel mapping); nearest keeps it 0/255."""
    cropped = center_crop(mask, width, height)
    if cropped.size == (width, height):
        return cropped
    return cropped.resize((width, height), Image.Resampling.NEAREST)


def _photo_size(provider: str, photo: bytes | None) -> tuple[int, int]:
    if photo is None:  # GenerationRequest refuses this; a mask without its photo means nothing
        raise _invalid(provider, "a mask without a photo")
    try:
        with Image.open(io.BytesIO(photo)) as opened:
            return opened.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise _invalid(provider, f"the photo does not decode ({type(error).__name__})") from None


def _size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _invalid(provider: str, problem: str) -> ProviderError:
    return ProviderError(f"invalid mask: {problem}", provider=provider, kind=ErrorKind.INVALID)
