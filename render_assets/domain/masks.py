"""The area of the customer's photo to redesign, and the photo put back around it.

A mask is a mode "L" image at the photo's size holding only 255 (marked: redesign) and 0
(kept as it is). It comes from one of two places, never both (`payload.py`):

- `maskImageUrl`: decoded under the photo's guards (PNG, JPEG or WebP, 50 MP, metadata limits),
  turned upright by its EXIF orientation like the photo, then read by luminance alone: 128 or
  more (ITU-R 601 luma) marks, darker keeps. Alpha is ignored: a canvas export paints white on
  transparent black, so the colour already says it, and one rule cannot disagree with itself.
  A mask whose aspect is within 1 % of the photo's is scaled to it (bilinear, then thresholded
  again, so it stays two-valued); any other aspect is refused.
- mask shapes in `annotations`: their union, in fractions of the photo's size; a pixel is
  marked when its centre lies inside a shape.

A mask that marks no pixel is refused, like an unreadable one: "change nothing" is not a render
anyone pays for. One that marks every pixel is a full redesign, and accepted.

Compositing frames the photo and the mask as the generated image was framed (`framing.py`),
then takes the generated pixels inside the marked area and the photo's outside it. The
feathered transition lies inside the marked area, so every kept pixel is the photo's own,
exactly; `kept_region` gives those pixels for checks and `outside_difference` measures how much
the provider changed them before compositing put them back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

from render_assets.domain import source_photos, untrusted_images
from render_assets.domain.framing import Size, fit_to
from render_assets.domain.payload import MaskShape, RectangleMask
from render_assets.domain.untrusted_images import MIB, UnsafeImage
from render_assets.domain.url_policy import SourceImageRefused

IMAGE_FIELD = "maskImageUrl"
SHAPES_FIELD = "annotations"
MARKED, KEPT = 255, 0
THRESHOLD = 128  # luminance from which a pixel is marked
MAX_ASPECT_MISMATCH = 0.01
MAX_MASK_PIXELS = source_photos.MAX_PIXELS
MAX_MASK_BYTES = 20 * MIB  # the fetch's default cap (RENDER_SOURCE_IMAGE_MAX_BYTES)
FEATHER_PX = 4
MAX_FEATHER_PX = 64
_BINARY = [KEPT] * THRESHOLD + [MARKED] * (256 - THRESHOLD)  # a lookup table: Pillow applies it in C


class MaskRefused(SourceImageRefused):
    """The customer's mask is bad input, never retried (the render is refunded and no provider
    called); the message starts with the field: `maskImageUrl: …` or `annotations: …`.

    A SourceImageRefused, so code that refuses a bad source photo refuses a bad mask alike."""


def binarize(grey: Image.Image) -> Image.Image:
    """An "L" image as a mask: 255 (marked) from THRESHOLD up, 0 below."""
    return grey.point(_BINARY)


def mask_from_shapes(shapes: Iterable[MaskShape], size: Size) -> Image.Image:
    """The union of the drawn shapes at `size` (the photo's); MaskRefused when it marks no pixel
    (shapes too small for the photo)."""
    width, height = size
    mask = Image.new("L", size, KEPT)
    draw = ImageDraw.Draw(mask)
    for shape in shapes:
        if isinstance(shape, RectangleMask):
            box = (
                _first_pixel(shape.x, width),
                _first_pixel(shape.y, height),
                _first_pixel(shape.x + shape.width, width),
                _first_pixel(shape.y + shape.height, height),
            )
            if box[2] > box[0] and box[3] > box[1]:
                mask.paste(MARKED, box)
        else:
            # Pillow fills the pixels whose index lies inside; the index of a centre is f * size - 0.5.
            draw.polygon([(point.x * width - 0.5, point.y * height - 0.5) for point in shape.points], fill=MARKED)
    _require_marked(mask, SHAPES_FIELD, "the mask shapes mark no pixel of the photo")
    return mask


def _first_pixel(fraction: float, pixels: int) -> int:
    """The first pixel whose centre lies at or past `fraction` of `pixels`."""
    return min(pixels, max(0, math.ceil(fraction * pixels - 0.5)))


def mask_from_image(
    data: bytes, size: Size, *, max_bytes: int = MAX_MASK_BYTES, max_pixels: int = MAX_MASK_PIXELS
) -> Image.Image:
    """The uploaded mask at `size` (the photo's, as given to the providers); MaskRefused naming
    `maskImageUrl` when it is too large, not an image, of another aspect, or marks nothing."""
    if len(data) > max_bytes:
        raise MaskRefused(IMAGE_FIELD, f"is larger than the {max_bytes // MIB} MiB limit")
    try:
        with untrusted_images.opened(data, max_pixels=max_pixels) as image:
            image.load()
            luminance = _luminance(ImageOps.exif_transpose(image))
    except UnsafeImage as problem:
        raise MaskRefused(IMAGE_FIELD, str(problem)) from None
    if luminance.size != size:
        (mask_w, mask_h), (photo_w, photo_h) = luminance.size, size
        if abs((mask_w * photo_h) / (mask_h * photo_w) - 1) > MAX_ASPECT_MISMATCH:
            raise MaskRefused(
                IMAGE_FIELD,
                f"its aspect {mask_w}:{mask_h} does not match the photo's {photo_w}:{photo_h}"
                f" (within {MAX_ASPECT_MISMATCH * 100:g} %)",
            )
        # Stretched, not cropped: a mask drawn over the whole photo at a rounded size still covers all of it.
        luminance = luminance.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    mask = luminance.point(_BINARY)
    _require_marked(mask, IMAGE_FIELD, "marks no area to redesign (it is black all over)")
    return mask


def _luminance(image: Image.Image) -> Image.Image:
    """The image's luminance as 8-bit "L", alpha ignored."""
    if image.mode.startswith("I"):
        # 16-bit greyscale: Pillow's conversion to L clips instead of scaling, so mid-grey would read white.
        levels = np.clip(np.asarray(image, dtype=np.int64), 0, 65_535) >> 8
        return Image.fromarray(levels.astype(np.uint8), "L")
    return image.convert("L")


def _require_marked(mask: Image.Image, field: str, problem: str) -> None:
    if not any(mask.histogram()[THRESHOLD:]):
        raise MaskRefused(field, problem)


def marked_fraction(mask: Image.Image) -> float:
    """The share of the mask's pixels marked for redesign, 0 to 1."""
    histogram = _grey(mask).histogram()
    return sum(histogram[THRESHOLD:]) / (mask.width * mask.height)


def fit_mask(mask: Image.Image, size: Size, *, through: Size | None = None) -> Image.Image:
    """The mask framed and scaled as the generated image was (`framing.fit_to`), still two-valued."""
    fitted = fit_to(_grey(mask), size, Image.Resampling.BILINEAR, through=through)
    return fitted.point(_BINARY)


def kept_region(mask: Image.Image, size: Size, *, through: Size | None = None) -> npt.NDArray[np.bool_]:
    """The output's pixels that `composite` copies from the photo exactly (height x width, True =
    kept): the unmarked ones. The feather lies inside the marked area, so its width changes nothing here."""
    return np.asarray(fit_mask(mask, size, through=through)) == KEPT


def feathered(marked: Image.Image, feather_px: int = FEATHER_PX) -> Image.Image:
    """The blend weights of the generated image: 0 on every unmarked pixel, rising across the
    marked pixels next to kept ones (2 * ceil(feather_px / 2) of them deep) to 255 beyond.

    The marked area shrunk by `reach` (a square minimum), then box-blurred by `reach`: a blur that
    wide reaches no unmarked pixel, since each lies more than `reach` from every pixel left."""
    if not 0 <= feather_px <= MAX_FEATHER_PX:
        raise ValueError(f"feather_px must be between 0 and {MAX_FEATHER_PX}")
    reach = math.ceil(feather_px / 2)
    if reach == 0:
        return marked
    ramp = _shrunk(marked, reach).filter(ImageFilter.BoxBlur(reach))
    # Pixel-wise minimum with the mask: kept pixels stay 0 even if the blur's rounding strayed.
    return ImageChops.darker(ramp, marked)


def _shrunk(marked: Image.Image, reach: int) -> Image.Image:
    """Marked pixels whose square neighbourhood of `reach` is all marked. Pillow's MinFilter does
    this too, in 0.7 s at 4096 px for reach 2; two 1-D minimums in numpy take 40 ms.
    The image's border counts as marked where the mask touches it: nothing there to blend with."""
    pixels = np.asarray(marked)
    height, width = pixels.shape
    padded = np.pad(pixels, reach, mode="edge")
    across = padded[:, :width].copy()
    for shift in range(1, 2 * reach + 1):
        np.minimum(across, padded[:, shift : shift + width], out=across)
    shrunk = across[:height].copy()
    for shift in range(1, 2 * reach + 1):
        np.minimum(shrunk, across[shift : shift + height], out=shrunk)
    return Image.fromarray(shrunk, "L")


def composite(
    photo: Image.Image,
    generated: Image.Image,
    mask: Image.Image,
    *,
    feather_px: int = FEATHER_PX,
    through: Size | None = None,
) -> Image.Image:
    """The generated image inside the marked area and the photo outside it, at `generated.size`.

    `mask` is at the photo's size; both are framed as the generated image was first (`through`:
    the provider's native size, see `framing.frame_box`). Every pixel of `kept_region` is the
    framed photo's pixel exactly; `feather_px` counts output pixels."""
    size = generated.size
    framed = fit_to(_rgb(photo), size, Image.Resampling.LANCZOS, through=through)
    weights = feathered(fit_mask(mask, size, through=through), feather_px)
    return Image.composite(_rgb(generated), framed, weights)


def outside_difference(
    photo: Image.Image, generated: Image.Image, mask: Image.Image, *, through: Size | None = None
) -> float:
    """How much the provider changed what should have stayed: the mean absolute difference
    (0-255, over the R, G and B values) between the framed photo and the generated image over
    the kept region; 0.0 when nothing is kept (a full redesign)."""
    size = generated.size
    kept = ImageChops.invert(fit_mask(mask, size, through=through))  # 255 = kept
    count = kept.histogram()[255]
    if count == 0:
        return 0.0
    framed = fit_to(_rgb(photo), size, Image.Resampling.LANCZOS, through=through)
    # |photo - generated| per value, counted by Pillow over the kept pixels: C loops, no 4K arrays.
    histogram = ImageChops.difference(framed, _rgb(generated)).histogram(mask=kept)  # R, G, B: 256 bins each
    total = sum((index % 256) * pixels for index, pixels in enumerate(histogram))
    return total / (count * 3)


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def _grey(image: Image.Image) -> Image.Image:
    return image if image.mode == "L" else image.convert("L")
