"""Masks: drawn shapes and uploaded images become one two-valued mask at the photo's size, bad
ones are refused naming their field, and compositing keeps every unmarked pixel of the photo."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter, ImageOps

from render_assets.domain import masks
from render_assets.domain.framing import fit_to
from render_assets.domain.masks import MaskRefused
from render_assets.domain.payload import Point, PolygonMask, RectangleMask
from render_assets.domain.url_policy import SourceImageRefused
from render_assets.providers import fitting

LANCZOS = Image.Resampling.LANCZOS


def rectangle(x: float, y: float, width: float, height: float) -> RectangleMask:
    return RectangleMask(shape="rectangle", x=x, y=y, width=width, height=height)


def polygon(*points: tuple[float, float]) -> PolygonMask:
    return PolygonMask(shape="polygon", points=[Point(x=x, y=y) for x, y in points])


def encoded(image: Image.Image, image_format: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def values(image: Image.Image) -> set[int]:
    return set(np.unique(np.asarray(image)).tolist())


def noise(size: tuple[int, int], seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def refusal(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(MaskRefused) as refused:
        call(*args, **kwargs)
    assert isinstance(refused.value, SourceImageRefused)  # refused like a bad source photo: uncharged
    return str(refused.value)


# --- drawn shapes --------------------------------------------------------------------------------


def test_a_rectangle_marks_the_pixels_whose_centres_it_covers() -> None:
    mask = masks.mask_from_shapes([rectangle(0.25, 0.5, 0.5, 0.25)], (100, 80))
    pixels = np.asarray(mask)
    assert mask.mode == "L" and mask.size == (100, 80)
    assert values(mask) == {0, 255}
    expected = np.zeros((80, 100), bool)
    expected[40:60, 25:75] = True
    assert np.array_equal(pixels == 255, expected)


def test_a_polygon_marks_its_inside_only() -> None:
    triangle = polygon((0.0, 1.0), (0.5, 0.0), (1.0, 1.0))
    pixels = np.asarray(masks.mask_from_shapes([triangle], (101, 101)))
    for x, y in [(50, 5), (50, 70), (10, 99), (90, 99)]:
        assert pixels[y, x] == 255, (x, y)
    for x, y in [(5, 5), (95, 5), (10, 50), (90, 50)]:
        assert pixels[y, x] == 0, (x, y)
    assert abs(masks.marked_fraction(Image.fromarray(pixels)) - 0.5) < 0.02


def test_shapes_are_united() -> None:
    left, right = rectangle(0, 0, 0.25, 1), polygon((0.75, 0), (1, 0), (1, 1), (0.75, 1))
    mask = masks.mask_from_shapes([left, right], (200, 100))
    assert masks.marked_fraction(mask) == pytest.approx(0.5, abs=0.01)
    assert np.asarray(mask)[50, 100] == 0


def test_shapes_too_small_for_the_photo_are_refused() -> None:
    message = refusal(masks.mask_from_shapes, [rectangle(0.5, 0.5, 0.001, 0.001)], (256, 256))
    assert message == "annotations: the mask shapes mark no pixel of the photo"


# --- uploaded mask images ------------------------------------------------------------------------


def half_white(size: tuple[int, int], mode: str = "L") -> Image.Image:
    image = Image.new(mode, size, 0)
    image.paste(Image.new(mode, (size[0] // 2, size[1]), "white"), (0, 0))
    return image


def test_a_mask_of_the_photos_size_is_read_as_it_is() -> None:
    mask = masks.mask_from_image(encoded(half_white((64, 48))), (64, 48))
    assert mask.mode == "L" and mask.size == (64, 48)
    assert np.array_equal(np.asarray(mask), np.asarray(half_white((64, 48))))


@pytest.mark.parametrize(
    ("mask_size", "photo_size"),
    [
        ((2000, 1500), (1000, 750)),  # a full-size upload for the photo the providers get
        ((1000, 750), (1008, 750)),  # 0.8 % wider
        ((1000, 750), (992, 750)),
        ((320, 240), (640, 480)),
    ],
)
def test_a_mask_within_one_percent_of_the_aspect_is_scaled_and_stays_two_valued(
    mask_size: tuple[int, int], photo_size: tuple[int, int]
) -> None:
    mask = masks.mask_from_image(encoded(half_white(mask_size)), photo_size)
    assert mask.size == photo_size
    assert values(mask) == {0, 255}
    assert masks.marked_fraction(mask) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(("mask_size", "photo_size"), [((1000, 750), (1020, 750)), ((750, 1000), (1000, 750))])
def test_a_mask_of_another_aspect_is_refused(mask_size: tuple[int, int], photo_size: tuple[int, int]) -> None:
    message = refusal(masks.mask_from_image, encoded(half_white(mask_size)), photo_size)
    expected = f"its aspect {mask_size[0]}:{mask_size[1]} does not match the photo's {photo_size[0]}:{photo_size[1]}"
    assert message == f"maskImageUrl: {expected} (within 1 %)"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"SECRET-not-an-image", "image does not decode (not a PNG, JPEG or WebP file)"),
        (encoded(half_white((64, 48)))[:60], "image does not decode"),
        (encoded(half_white((64, 48)), "GIF"), "image does not decode (not a PNG, JPEG or WebP file)"),
        (b"", "image does not decode (not a PNG, JPEG or WebP file)"),
    ],
)
def test_a_file_that_is_not_an_image_is_refused(data: bytes, problem: str) -> None:
    assert refusal(masks.mask_from_image, data, (64, 48)) == f"maskImageUrl: {problem}"


def test_a_mask_over_the_size_limits_is_refused() -> None:
    data = encoded(half_white((400, 300)))
    assert refusal(masks.mask_from_image, data, (400, 300), max_bytes=len(data) - 1) == (
        "maskImageUrl: is larger than the 0 MiB limit"
    )
    assert "exceeds the" in refusal(masks.mask_from_image, data, (400, 300), max_pixels=100_000)
    assert masks.MAX_MASK_PIXELS == 50_000_000  # the photo's limit


def test_a_black_mask_is_refused_and_a_white_one_is_a_full_redesign() -> None:
    black = encoded(Image.new("L", (64, 48), 0))
    assert refusal(masks.mask_from_image, black, (64, 48)) == (
        "maskImageUrl: marks no area to redesign (it is black all over)"
    )
    white = masks.mask_from_image(encoded(Image.new("L", (64, 48), 255)), (64, 48))
    assert masks.marked_fraction(white) == 1.0


@pytest.mark.parametrize(
    ("colour", "marked"),
    [
        ((127, 127, 127), False),
        ((128, 128, 128), True),
        ((255, 0, 0), False),  # luma 76
        ((255, 255, 0), True),  # luma 226
        ((0, 0, 255), False),
    ],
)
def test_luminance_decides(colour: tuple[int, int, int], marked: bool) -> None:
    image = Image.new("RGB", (8, 8), colour)
    image.paste((255, 255, 255), (0, 0, 1, 1))  # never all black: that is refused
    pixels = np.asarray(masks.mask_from_image(encoded(image), (8, 8)))
    assert bool(pixels[4, 4] == 255) is marked


def test_alpha_is_ignored() -> None:
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # a canvas export: transparent black keeps...
    image.paste((255, 255, 255, 255), (0, 0, 4, 8))  # ... opaque white marks ...
    image.paste((255, 255, 255, 0), (4, 0, 6, 8))  # ... and so does white that is transparent
    pixels = np.asarray(masks.mask_from_image(encoded(image), (8, 8)))
    assert (pixels[:, :6] == 255).all() and (pixels[:, 6:] == 0).all()


def test_sixteen_bit_greys_are_scaled_not_clipped() -> None:
    levels = np.array([[0, 20_000, 40_000, 65_535]], dtype=np.uint16)
    image = Image.fromarray(levels)  # mode I;16, as Pillow opens a 16-bit greyscale PNG
    pixels = np.asarray(masks.mask_from_image(encoded(image), (4, 1)))
    assert pixels.tolist() == [[0, 0, 255, 255]]


def test_a_mask_is_turned_upright_like_the_photo() -> None:
    stored = half_white((60, 80), "RGB")  # portrait as stored, landscape as shown
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to show
    data = encoded(stored, "JPEG", quality=95, exif=exif)
    mask = masks.mask_from_image(data, (80, 60))
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("L").point(lambda v: 255 * (v >= 128))
    assert np.array_equal(np.asarray(mask), np.asarray(upright))
    assert (np.asarray(mask)[:30] == 255).all() and (np.asarray(mask)[31:] == 0).all()


# --- compositing ---------------------------------------------------------------------------------


def centre_mask(size: tuple[int, int]) -> Image.Image:
    return masks.mask_from_shapes([rectangle(0.25, 0.25, 0.5, 0.5)], size)


@pytest.mark.parametrize(
    ("photo_size", "output_size"), [((64, 64), (64, 64)), ((400, 300), (1600, 900)), ((1000, 750), (512, 512))]
)
def test_composite_keeps_every_kept_pixel_and_repaints_inside(
    photo_size: tuple[int, int], output_size: tuple[int, int]
) -> None:
    photo, generated, mask = noise(photo_size, 1), noise(output_size, 2), centre_mask(photo_size)
    result = masks.composite(photo, generated, mask)
    assert result.size == output_size and result.mode == "RGB"

    kept = masks.kept_region(mask, output_size)
    out, framed = np.asarray(result), np.asarray(fit_to(photo, output_size, LANCZOS))
    assert kept.any() and np.array_equal(out[kept], framed[kept])
    # Marked pixels more than the feather (4 px) from any kept one: the generated pixels, exactly.
    marked = Image.fromarray((~kept).astype(np.uint8) * 255)
    core = np.asarray(marked.filter(ImageFilter.MinFilter(9))) == 255
    assert core.any() and np.array_equal(out[core], np.asarray(generated)[core])


def test_the_feather_is_a_smooth_ramp_inside_the_marked_area() -> None:
    photo, generated = Image.new("RGB", (40, 20), "black"), Image.new("RGB", (40, 20), "white")
    mask = masks.mask_from_shapes([rectangle(0.5, 0, 0.5, 1)], (40, 20))  # columns 20..39
    row = np.asarray(masks.composite(photo, generated, mask))[10, :, 0].tolist()
    assert row[:20] == [0] * 20  # kept: the photo, to the last pixel
    assert row[20:24] == [51, 102, 153, 204]  # the feather: 4 steps inside the marked area
    assert row[24:] == [255] * 16
    hard = np.asarray(masks.composite(photo, generated, mask, feather_px=0))[10, :, 0].tolist()
    assert hard == [0] * 20 + [255] * 20


def test_the_feather_spares_the_image_border() -> None:
    # A marked area running off the image has no kept pixel there to blend towards.
    photo, generated = Image.new("RGB", (40, 20), "black"), Image.new("RGB", (40, 20), "white")
    mask = masks.mask_from_shapes([rectangle(0.5, 0, 0.5, 1)], (40, 20))
    out = np.asarray(masks.composite(photo, generated, mask))[:, 24:, 0]
    assert (out == 255).all()


@pytest.mark.parametrize("feather_px", [-1, masks.MAX_FEATHER_PX + 1])
def test_a_feather_out_of_range_is_a_programming_error(feather_px: int) -> None:
    with pytest.raises(ValueError, match="feather_px"):
        masks.composite(noise((8, 8), 1), noise((8, 8), 2), centre_mask((8, 8)), feather_px=feather_px)


def test_a_full_redesign_is_the_generated_image() -> None:
    photo, generated = noise((32, 32), 1), noise((32, 32), 2)
    full = Image.new("L", (32, 32), 255)
    assert np.array_equal(np.asarray(masks.composite(photo, generated, full)), np.asarray(generated))
    assert masks.outside_difference(photo, generated, full) == 0.0
    assert not masks.kept_region(full, (32, 32)).any()


# --- how much the provider changed outside the mask -----------------------------------------------


def test_outside_difference_is_zero_for_a_provider_that_kept_the_photo() -> None:
    photo, mask = noise((400, 300), 1), centre_mask((400, 300))
    perfect = masks.composite(photo, noise((800, 600), 2), mask)
    assert masks.outside_difference(photo, perfect, mask) == 0.0


def test_outside_difference_grows_with_what_the_provider_repainted_outside() -> None:
    photo = Image.fromarray(np.full((300, 400, 3), 100, np.uint8))
    mask = centre_mask((400, 300))
    kept = masks.kept_region(mask, (400, 300))
    measured = []
    for shift in (0, 10, 40):
        generated = np.full((300, 400, 3), 100, np.uint8)
        generated[kept] += np.uint8(shift)
        generated[~kept] = 255  # inside the mask: anything, it is not measured
        measured.append(masks.outside_difference(photo, Image.fromarray(generated), mask))
    assert measured == [0.0, 10.0, 40.0]


def test_outside_difference_averages_over_the_kept_pixels_and_channels() -> None:
    photo = Image.new("RGB", (10, 10), (50, 50, 50))
    mask = masks.mask_from_shapes([rectangle(0, 0, 0.5, 1)], (10, 10))  # left half marked
    generated = np.full((10, 10, 3), 50, np.uint8)
    generated[:, 5:, 0] = 80  # one channel of the kept half, +30
    assert masks.outside_difference(photo, Image.fromarray(generated), mask) == pytest.approx(10.0)


def test_marked_fraction() -> None:
    assert masks.marked_fraction(masks.mask_from_shapes([rectangle(0, 0, 0.5, 0.5)], (100, 100))) == 0.25


# --- geometry: the photo goes through the generated image's crop ----------------------------------


def landscape(size: tuple[int, int]) -> Image.Image:
    """A photo whose every row and column differs: a crop or a stretch shows up everywhere."""
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]]
    pixels = np.stack([xs * 255 // size[0], ys * 255 // size[1], (xs + ys) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def test_a_4_3_photo_in_a_16_9_output_takes_the_generated_images_crop() -> None:
    photo, mask = landscape((800, 600)), centre_mask((800, 600))
    # A provider that gave the photo back at its own 4:3, fitted to 16:9 as every reply is.
    generated = fitting.fit_exact(photo, 1600, 900).image
    assert masks.outside_difference(photo, generated, mask) < 1.0
    result = np.asarray(masks.composite(photo, generated, mask)).astype(int)
    assert np.abs(result - np.asarray(generated)).mean() < 1.0
    stretched = photo.resize((1600, 900), LANCZOS)  # what ignoring the crop would put back
    assert np.abs(np.asarray(stretched).astype(int) - np.asarray(generated)).mean() > 10


def test_a_provider_frame_of_its_own_is_followed_through() -> None:
    photo, mask = landscape((800, 600)), centre_mask((800, 600))
    # The provider cover-crops the photo into its square frame (as the local renderer does), then
    # the reply is fitted to 3:2: two crops, which `through` retraces.
    native = ImageOps.fit(photo, (1024, 1024), LANCZOS)
    generated = fitting.fit_exact(native, 1536, 1024).image
    assert masks.outside_difference(photo, generated, mask, through=(1024, 1024)) < 2.0
    assert masks.outside_difference(photo, generated, mask) > 10
    kept = masks.kept_region(mask, (1536, 1024), through=(1024, 1024))
    result = np.asarray(masks.composite(photo, generated, mask, through=(1024, 1024)))
    assert np.array_equal(result[kept], np.asarray(fit_to(photo, (1536, 1024), LANCZOS, through=(1024, 1024)))[kept])
