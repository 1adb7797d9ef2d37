"""The area of the customer's photo a render redesigns, and the rest of the photo kept.

A job marks the area with `maskImageUrl` (fetched under the photo's rules) or with mask shapes in
its annotations (`domain/payload.py`). Either becomes one mask at the photo's own size
(`domain/masks.py`); the providers get it at the size of the photo they are sent. After
generation, how much the provider changed outside the mask is measured, then the photo's own
pixels are put back there, so what the customer did not mark stays exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from render_assets.adapters.remote_images import RemoteImageFetcher
from render_assets.domain import masks, source_photos
from render_assets.domain.payload import RenderJob
from render_assets.domain.source_photos import SourcePhoto
from render_assets.providers import edit_masks
from render_assets.providers.base import GeneratedImage


@dataclass(frozen=True)
class SiteMask:
    photo: Image.Image  # the whole photo, upright and sRGB, at its own size
    mask: Image.Image  # mode "L" at the photo's size: 255 redesign, 0 keep

    def for_providers(self, sent: SourcePhoto) -> bytes:
        """The mask as a greyscale PNG at the size of the photo the providers are sent."""
        return edit_masks.png(masks.fit_mask(self.mask, (sent.width, sent.height)))


@dataclass(frozen=True)
class KeptOutside:
    image: Image.Image  # the generated image with the photo put back outside the mask
    outside_difference: float  # mean absolute difference (0-255) the provider made outside the mask
    marked_fraction: float  # of the output's pixels


def site_mask(job: RenderJob, photo: SourcePhoto, fetcher: RemoteImageFetcher) -> SiteMask | None:
    """The job's mask at the photo's size, or None when it marks no area (the whole photo is
    redesigned). Raises `MaskRefused` for a mask that is bad input (uncharged or refunded, no
    provider called), and the fetcher's errors for one that could not be fetched."""
    if job.maskImageUrl is None and not job.mask_shapes():
        return None
    whole = source_photos.upright(photo.original, "sourceImageUrl", max_pixels=fetcher.limits.max_pixels)
    if job.maskImageUrl is not None:
        data = fetcher.download(job.maskImageUrl, field=masks.IMAGE_FIELD)
        mask = masks.mask_from_image(data, whole.size, max_bytes=fetcher.limits.max_bytes)
    else:
        mask = masks.mask_from_shapes(job.mask_shapes(), whole.size)
    return SiteMask(whole, mask)


def keep_outside(generated: GeneratedImage, site: SiteMask) -> KeptOutside:
    """Measure the provider's changes outside the mask, then put the photo back there (feathered
    inside the marked area).

    The output keeps the photo's own frame, so each kept pixel is the photo's (exactly, when the
    output has the photo's size). A provider frames its image in its own size first, which can
    sit a pixel or two off the photo's (sizes in steps of 16, fixed tiers); its changes are
    measured in its frame, so that offset does not count as a change, and inside the marked area,
    which it redesigns anyway, it does not show."""
    difference = masks.outside_difference(site.photo, generated.image, site.mask, through=generated.native_size)
    image = masks.composite(site.photo, generated.image, site.mask)  # framed as the output: the photo's frame
    marked = masks.marked_fraction(masks.fit_mask(site.mask, generated.image.size))
    return KeptOutside(image, round(difference, 2), round(marked, 4))
