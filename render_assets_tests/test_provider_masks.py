"""The customer's mask through each provider's edit route: the real SDK clients against the fakes,
which check and record what came (mask present, PNG, sizes), and the local renderer's painting."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter

from render_assets.providers import imagen_edit
from render_assets.providers.base import ErrorKind, GeneratedImage, GenerationRequest, ImageProvider, ProviderError
from render_assets.providers.edit_masks import edit_canvas, fit_mask, read_mask, transparent_where_marked
from render_assets.providers.fitting import fit_exact
from render_assets.providers.google_image import GEMINI_MASK_INSTRUCTION
from render_assets.providers.local import LocalProvider
from render_assets.providers.openai_image import MASK_INSTRUCTION
from render_assets_tests.fakes.image_apis import FakeImageApis
from render_assets_tests.fakes.providers import google, openai

PHOTO_SIZE = (640, 480)
MARKED_BOX = (320, 240, 640, 480)  # the lower right quarter: a quarter of the photo


@pytest.fixture
def fake() -> Iterator[FakeImageApis]:
    with FakeImageApis() as apis:
        yield apis


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def site_photo(size: tuple[int, int] = PHOTO_SIZE) -> tuple[Image.Image, bytes]:
    """A photo of flat areas (sky over lawn), as the JPEG the providers get, and its decoded pixels."""
    image = Image.new("RGB", size, (200, 60, 160))
    image.paste((20, 200, 220), (0, size[1] // 2, size[0], size[1]))
    data = encoded(image, "JPEG")
    return Image.open(io.BytesIO(data)).convert("RGB"), data


def site_mask(size: tuple[int, int] = PHOTO_SIZE, box: tuple[int, int, int, int] = MARKED_BOX) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def masked_request(width: int = 1024, height: int = 1024, **options: Any) -> GenerationRequest:
    settings: dict[str, Any] = {"reference_image": site_photo()[1], "mask": encoded(site_mask(), "PNG")}
    settings.update(options)
    return GenerationRequest(
        prompt="a cottage garden with a stone path",
        negative_prompt="text, watermark",
        width=width,
        height=height,
        seed=4_000_000_123,
        quality=80,
        **settings,
    )


def region_difference(delivered: Image.Image, expected: Image.Image, marked: Image.Image) -> tuple[float, float]:
    """Mean absolute difference (0..255) outside and inside the marked area, each shrunk by a few
    pixels so resampling at the edge does not count."""
    inside = np.asarray(marked.filter(ImageFilter.MinFilter(9))) == 255
    outside = np.asarray(marked.filter(ImageFilter.MaxFilter(9))) == 0
    diff = np.abs(np.asarray(delivered, np.float32) - np.asarray(expected.convert("RGB"), np.float32)).mean(axis=2)
    return float(diff[outside].mean()), float(diff[inside].mean())


def kept_and_changed(result: GeneratedImage, width: int = 1024, height: int = 1024) -> tuple[float, float]:
    """How far the delivered image is from the photo outside the mask, and inside it, with the
    photo and the mask fitted to the output as the providers fit their images."""
    photo, _ = site_photo()
    expected = fit_exact(photo, width, height).image
    return region_difference(result.image, expected, fit_mask(site_mask(), width, height))


# ---- OpenAI: images.edit with an alpha mask --------------------------------------------------------


def test_openai_sends_the_mask_as_an_alpha_png_of_the_photos_size(fake: FakeImageApis) -> None:
    result = openai(fake).generate(masked_request())

    [call] = fake.recorded("openai")
    assert call["path"] == "/v1/images/edits"
    inputs = call["inputs"]
    assert inputs["image"] == {"decodes": True, "format": "JPEG", "mode": "RGB", "size": PHOTO_SIZE, "alpha": False}
    assert inputs["mask"] == {
        "decodes": True,
        "format": "PNG",
        "mode": "RGBA",
        "size": PHOTO_SIZE,
        "alpha": True,
        "marked": 0.25,
    }
    alpha = np.asarray(Image.open(io.BytesIO(call["files"]["mask"])).getchannel("A"))
    assert (alpha == 0).tolist() == (np.asarray(site_mask()) == 255).tolist()  # transparent = marked
    assert set(np.unique(alpha).tolist()) == {0, 255}
    assert MASK_INSTRUCTION in call["json"]["prompt"]
    # Asked at the photo's 4:3, large enough that its square centre crop covers 1024x1024.
    assert call["json"]["size"] == "1360x1024"
    assert result.image.size == (1024, 1024)
    assert (result.facts["reference_image"], result.facts["mask"]) == ("edited", "inpainted")
    outside, inside = kept_and_changed(result)
    assert outside < 8 < 40 < inside  # the fake respected the mask, and the output lies on the photo


def test_openai_without_a_mask_sends_none_and_says_so(fake: FakeImageApis) -> None:
    result = openai(fake).generate(masked_request(mask=None))

    [call] = fake.recorded("openai")
    assert call["inputs"]["mask"] is None and "mask" not in call["files"]
    assert MASK_INSTRUCTION not in call["json"]["prompt"]
    assert call["json"]["size"] == "1024x1024"  # the request's aspect, as before
    assert (result.facts["reference_image"], result.facts["mask"]) == ("edited", "none")


@pytest.mark.parametrize(
    ("mask", "problem"),
    [
        (transparent_where_marked(site_mask((320, 240), (160, 120, 320, 240))), "same dimensions"),
        (encoded(Image.new("RGB", PHOTO_SIZE, (0, 0, 0)), "PNG"), "alpha channel"),
        (encoded(Image.new("RGBA", PHOTO_SIZE, (0, 0, 0, 0)), "WEBP"), "valid PNG"),
    ],
)
def test_the_openai_fake_refuses_a_mask_openai_would_refuse_and_it_surfaces_as_invalid(
    fake: FakeImageApis, mask: bytes, problem: str
) -> None:
    provider = openai(fake)
    photo = ("site.jpeg", site_photo()[1], "image/jpeg")

    with pytest.raises(ProviderError) as caught:
        provider._call(
            lambda: provider.client().images.edit(
                model="gpt-image-2", image=photo, mask=("mask.png", mask, "image/png"), prompt="a garden"
            )
        )

    assert caught.value.kind is ErrorKind.INVALID
    assert str(caught.value).startswith("request rejected (HTTP 400 invalid_value)") and problem in str(caught.value)
    assert fake.billed("openai") == 0


# ---- Google: Gemini (mask as a second image) and Imagen (the edit model) ---------------------------


def test_gemini_gets_the_photo_then_the_mask_then_the_instruction(fake: FakeImageApis) -> None:
    result = google(fake).generate(masked_request())

    [call] = fake.recorded("gemini")
    photo, mask = call["inputs"]["inline"]
    assert photo == {
        "mime_type": "image/jpeg",
        "decodes": True,
        "format": "JPEG",
        "mode": "RGB",
        "size": PHOTO_SIZE,
        "alpha": False,
    }
    assert mask == {
        "mime_type": "image/png",
        "decodes": True,
        "format": "PNG",
        "mode": "L",
        "size": PHOTO_SIZE,
        "alpha": False,
    }
    parts = call["json"]["contents"][0]["parts"]
    assert [next(iter(part)) for part in parts] == ["inlineData", "inlineData", "text"]
    sent_mask = Image.open(io.BytesIO(base64.b64decode(parts[1]["inlineData"]["data"])))
    assert np.array_equal(np.asarray(sent_mask), np.asarray(site_mask()))
    [text] = call["inputs"]["texts"]
    assert GEMINI_MASK_INSTRUCTION in text and text.endswith(
        "a cottage garden with a stone path\n\nAvoid: text, watermark"
    )
    # The photo's aspect, at the tier whose square centre crop covers the request.
    assert call["json"]["generationConfig"]["imageConfig"] == {"aspectRatio": "4:3", "imageSize": "2K"}
    assert (result.facts["reference_image"], result.facts["mask"]) == ("edited", "instructed")
    outside, inside = kept_and_changed(result)
    assert outside < 8 < 40 < inside


def test_imagen_edits_through_the_capability_model_with_the_documented_shape(fake: FakeImageApis) -> None:
    result = google(fake, route="imagen").generate(masked_request())

    [call] = fake.recorded("imagen")
    assert call["path"].startswith(
        "/v1/projects/test-project/locations/us-central1/publishers/google/models/imagen-3.0-capability-001:predict"
    )
    [instance] = call["json"]["instances"]
    raw, mask = instance["referenceImages"]
    assert instance["prompt"] == f"{imagen_edit.PROMPT_LEAD} a cottage garden with a stone path"
    assert {key: raw[key] for key in ("referenceType", "referenceId")} == {
        "referenceType": "REFERENCE_TYPE_RAW",
        "referenceId": 1,
    }
    assert base64.b64decode(raw["referenceImage"]["bytesBase64Encoded"]) == site_photo()[1]
    assert {key: mask[key] for key in ("referenceType", "referenceId", "maskImageConfig")} == {
        "referenceType": "REFERENCE_TYPE_MASK",
        "referenceId": 2,
        "maskImageConfig": {"maskMode": "MASK_MODE_USER_PROVIDED", "dilation": 0.01},
    }
    assert call["json"]["parameters"] == {
        "editMode": "EDIT_MODE_INPAINT_INSERTION",
        "sampleCount": 1,
        "seed": 4_000_000_123 % (2**31 - 1),
        "addWatermark": False,
        "includeRaiReason": True,
        "outputOptions": {"mimeType": "image/png"},
        "negativePrompt": "text, watermark",
    }
    references = call["inputs"]["references"]
    assert [(r["type"], r["format"], r["mode"], r["size"]) for r in references] == [
        ("REFERENCE_TYPE_RAW", "JPEG", "RGB", PHOTO_SIZE),
        ("REFERENCE_TYPE_MASK", "PNG", "L", PHOTO_SIZE),
    ]
    assert references[1]["marked"] == 0.25
    assert result.model == "imagen-3.0-capability-001" and result.native_size == PHOTO_SIZE
    assert (result.facts["reference_image"], result.facts["mask"]) == ("edited", "inpainted")
    assert result.facts["edit_mode"] == "EDIT_MODE_INPAINT_INSERTION"
    outside, inside = kept_and_changed(result)
    assert outside < 8 < 40 < inside


def test_the_imagen_edit_model_comes_from_configuration(fake: FakeImageApis) -> None:
    google(fake, route="imagen", edit_model="imagen-9.9-capability-test").generate(masked_request())

    [call] = fake.recorded("imagen")
    assert "/models/imagen-9.9-capability-test:predict" in call["path"]


def test_imagen_without_a_mask_still_generates_and_ignores_the_photo(fake: FakeImageApis) -> None:
    result = google(fake, route="imagen").generate(masked_request(mask=None))

    [call] = fake.recorded("imagen")
    assert "/models/imagen-4.0-generate-001:predict" in call["path"]
    assert call["json"]["instances"] == [{"prompt": "a cottage garden with a stone path\n\nAvoid: text, watermark"}]
    assert call["inputs"] == {}
    assert (result.facts["reference_image"], result.facts["mask"]) == ("ignored", "none")
    assert result.model == "imagen-4.0-generate-001"


def test_the_imagen_fake_refuses_a_mask_of_another_size_and_it_surfaces_as_invalid(fake: FakeImageApis) -> None:
    provider = google(fake, route="imagen")
    small_mask = encoded(site_mask((320, 240), (160, 120, 320, 240)), "PNG")
    instances = imagen_edit.instances("a garden", site_photo()[1], small_mask)

    with pytest.raises(ProviderError) as caught:
        provider._predict("imagen-3.0-capability-001", instances, imagen_edit.parameters(1, ""), 10.0)

    assert caught.value.kind is ErrorKind.INVALID
    assert "request rejected (HTTP 400 INVALID_ARGUMENT)" in str(caught.value) and "same dimensions" in str(
        caught.value
    )
    [call] = fake.recorded("imagen")
    assert [r["size"] for r in call["inputs"]["references"]] == [PHOTO_SIZE, (320, 240)]
    assert fake.billed("imagen") == 0


# ---- every route -----------------------------------------------------------------------------------

ROUTES = ["openai", "gemini", "imagen"]


def remote(fake: FakeImageApis, route: str) -> ImageProvider:
    return openai(fake) if route == "openai" else google(fake, route=route)


@pytest.mark.parametrize("route", ROUTES)
def test_a_fake_that_ignores_the_mask_changes_the_kept_area_and_that_can_be_measured(
    fake: FakeImageApis, route: str
) -> None:
    fake.set_mask_behaviour("ignore")

    result = remote(fake, route).generate(masked_request())

    outside, inside = kept_and_changed(result)
    assert outside > 40 and inside > 40


@pytest.mark.parametrize("route", [*ROUTES, "local"])
def test_a_mask_of_another_size_fails_fast_as_invalid_before_any_call(fake: FakeImageApis, route: str) -> None:
    small_mask = encoded(site_mask((320, 240), (160, 120, 320, 240)), "PNG")
    provider = LocalProvider() if route == "local" else remote(fake, route)

    with pytest.raises(ProviderError) as caught:
        provider.generate(masked_request(mask=small_mask))

    assert caught.value.kind is ErrorKind.INVALID
    assert str(caught.value) == "invalid mask: the mask is 320x240, the photo 640x480"
    assert fake.requests == []


@pytest.mark.parametrize("route", [*ROUTES, "local"])
def test_without_a_photo_no_route_reports_a_mask(fake: FakeImageApis, route: str) -> None:
    provider = LocalProvider() if route == "local" else remote(fake, route)

    result = provider.generate(masked_request(reference_image=None, mask=None))

    assert (result.facts["reference_image"], result.facts["mask"]) == ("none", "none")


def test_a_mask_needs_the_photo_it_marks() -> None:
    with pytest.raises(ValueError, match="needs reference_image"):
        masked_request(reference_image=None)


# ---- the local renderer ----------------------------------------------------------------------------


def test_the_local_renderer_paints_inside_the_mask_and_leaves_every_other_pixel_of_the_photo() -> None:
    photo, data = site_photo((1024, 768))
    mask = site_mask((1024, 768), (256, 384, 1024, 768))
    request = masked_request(1024, 768, reference_image=data, mask=encoded(mask, "PNG"))

    result = LocalProvider().generate(request)
    unmasked = LocalProvider().generate(masked_request(1024, 768, reference_image=data, mask=None))

    delivered, kept = np.asarray(result.image), np.asarray(photo)
    marked = np.asarray(mask) == 255
    assert np.array_equal(delivered[~marked], kept[~marked])  # outside: the photo's own pixels
    assert np.abs(delivered[marked].astype(int) - kept[marked]).mean() > 20  # inside: the design
    assert np.array_equal(delivered[marked], np.asarray(unmasked.image)[marked])  # as it paints unmasked
    assert (result.facts["reference_image"], result.facts["mask"]) == ("blended", "painted")


def test_the_local_renderer_fits_photo_and_mask_to_the_output_as_providers_fit_their_images() -> None:
    result = LocalProvider().generate(masked_request(512, 512))

    photo, _ = site_photo()
    kept = np.asarray(fit_exact(photo, 512, 512).image)
    marked = np.asarray(fit_mask(site_mask(), 512, 512)) == 255
    delivered = np.asarray(result.image)
    assert result.image.size == (512, 512)
    assert np.array_equal(delivered[~marked], kept[~marked])
    assert np.abs(delivered[marked].astype(int) - kept[marked]).mean() > 20


# ---- reading the mask --------------------------------------------------------------------------------


def test_a_soft_mask_is_read_as_marked_from_128_up() -> None:
    soft = Image.linear_gradient("L").resize(PHOTO_SIZE)  # 0 at the top to 255 at the bottom
    mask = read_mask("test", masked_request(mask=encoded(soft, "PNG")))

    assert mask is not None and set(np.unique(np.asarray(mask)).tolist()) == {0, 255}
    assert np.array_equal(np.asarray(mask) == 255, np.asarray(soft) >= 128)


@pytest.mark.parametrize(
    ("mask", "problem"),
    [
        (encoded(Image.new("L", PHOTO_SIZE, 0), "PNG"), "the mask marks nothing to redesign"),
        (
            encoded(Image.new("RGB", PHOTO_SIZE, (255, 255, 255)), "PNG"),
            "the mask is a PNG RGB image, not a greyscale PNG",
        ),
        (encoded(Image.new("L", PHOTO_SIZE, 255), "JPEG"), "the mask is a JPEG L image, not a greyscale PNG"),
        (b"not an image", "the mask does not decode (UnidentifiedImageError)"),
    ],
)
def test_a_mask_that_cannot_be_right_is_invalid(mask: bytes, problem: str) -> None:
    with pytest.raises(ProviderError) as caught:
        read_mask("test", masked_request(mask=mask))
    assert caught.value.kind is ErrorKind.INVALID and str(caught.value) == f"invalid mask: {problem}"


@pytest.mark.parametrize(
    ("photo", "request_size", "canvas"),
    [
        ((640, 480), (1024, 1024), (1366, 1024)),  # a square from a 4:3 photo: the height decides
        ((640, 480), (1600, 900), (1600, 1200)),  # 16:9 from 4:3: the width decides
        ((480, 640), (768, 1024), (768, 1024)),  # the photo's own aspect: the request itself
    ],
)
def test_the_edit_canvas_has_the_photos_aspect_and_its_crop_covers_the_request(
    photo: tuple[int, int], request_size: tuple[int, int], canvas: tuple[int, int]
) -> None:
    assert edit_canvas(photo, *request_size) == canvas
