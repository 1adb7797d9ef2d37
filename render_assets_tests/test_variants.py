"""The delivered variants as files: sizes, formats, sRGB, stripped metadata; and their names."""

from __future__ import annotations

import hashlib
import io
import logging
import random
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image, ImageCms

from render_assets.domain import imaging
from render_assets.domain.object_keys import object_key, render_folder, variant_of
from render_assets.domain.variants import VARIANTS, Variant, encode_variant

EXIF_ARTIST = 0x013B


def _swapped_primaries_profile() -> bytes:
    """The sRGB profile with its red and green primaries swapped: a source red that must
    come out green once converted to sRGB (a conversion nobody could fake by ignoring it)."""
    profile = bytearray(imaging.srgb_profile())
    (count,) = struct.unpack(">I", profile[128:132])
    entries = {bytes(profile[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, green = entries[b"rXYZ"], entries[b"gXYZ"]
    profile[red + 4 : red + 12], profile[green + 4 : green + 12] = (
        profile[green + 4 : green + 12],
        profile[red + 4 : red + 12],
    )
    return bytes(profile)


def _tagged(image: Image.Image, icc: bytes | None) -> Image.Image:
    """The image as a provider might send it: EXIF (an artist), XMP and maybe a colour profile."""
    exif = Image.Exif()
    exif[EXIF_ARTIST] = "someone@example.com"
    buffer = io.BytesIO()
    extra = {"icc_profile": icc} if icc else {}
    image.save(buffer, "JPEG", quality=95, exif=exif, xmp=b"<x:xmpmeta>secret</x:xmpmeta>", **extra)
    tagged = Image.open(buffer)
    tagged.load()
    return tagged


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("master_format", ["PNG", "JPEG", "WEBP", "AVIF"])
def test_each_variant_has_its_size_format_and_only_the_srgb_profile(master_format: str) -> None:
    srgb = imaging.to_srgb(_tagged(Image.linear_gradient("L").resize((2100, 700)).convert("RGB"), None))
    sizes = {Variant.MASTER: (2100, 700), Variant.WEB: (2048, 683), Variant.THUMBNAIL: (300, 300)}
    formats = {Variant.MASTER: master_format, Variant.WEB: "WEBP", Variant.THUMBNAIL: "WEBP"}

    for variant in VARIANTS:
        encoded = encode_variant(srgb, variant, master_format)
        decoded = _decoded(encoded.data)
        assert (decoded.size, decoded.format) == (sizes[variant], formats[variant]), variant
        assert (encoded.width, encoded.height, encoded.format) == (*sizes[variant], formats[variant])
        assert decoded.info.get("icc_profile") == imaging.srgb_profile(), variant
        assert not decoded.getexif(), variant
        assert not decoded.info.get("xmp") and b"secret" not in encoded.data, variant
        assert b"someone@example.com" not in encoded.data, variant


def test_a_source_profile_is_converted_to_srgb() -> None:
    red = Image.new("RGB", (400, 300), (220, 20, 20))
    srgb = imaging.to_srgb(_tagged(red, _swapped_primaries_profile()))

    r, g, b = srgb.getpixel((200, 150))  # type: ignore[misc]
    assert g > 150 and r < 90 and b < 90, (r, g, b)  # the swapped profile's red is sRGB green
    assert srgb.info == {}
    master = _decoded(encode_variant(srgb, Variant.MASTER, "PNG").data)
    assert master.getpixel((200, 150)) == (r, g, b)
    assert master.info.get("icc_profile") == imaging.srgb_profile()


def test_an_image_without_a_profile_is_taken_as_srgb() -> None:
    source = Image.new("RGBA", (64, 48), (10, 120, 230, 255))
    srgb = imaging.to_srgb(source)
    assert (srgb.mode, srgb.getpixel((5, 5)), srgb.info) == ("RGB", (10, 120, 230), {})
    assert source.mode == "RGBA"  # the caller's image is left alone


@pytest.mark.parametrize(
    "icc",
    [b"not an icc profile", ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()],
    ids=["corrupt", "not-an-rgb-profile"],
)
def test_a_profile_that_cannot_apply_is_ignored_with_a_warning(icc: bytes, caplog: pytest.LogCaptureFixture) -> None:
    source = Image.new("RGB", (32, 32), (90, 100, 110))
    source.info["icc_profile"] = icc
    with caplog.at_level(logging.WARNING, logger="render_assets.domain.imaging"):
        srgb = imaging.to_srgb(source)
    assert (srgb.mode, srgb.getpixel((0, 0)), srgb.info) == ("RGB", (90, 100, 110), {})
    assert "ignoring an embedded colour profile" in caplog.text


@pytest.mark.parametrize(("size", "expected"), [((4096, 4096), (2048, 2048)), ((4096, 2304), (2048, 1152))])
def test_the_web_variant_is_at_most_2048_on_its_long_side(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert imaging.fit_within(Image.new("RGB", size)).size == expected


def test_the_web_variant_is_never_enlarged() -> None:
    small = Image.new("RGB", (1024, 640))
    assert imaging.fit_within(small) is small


def test_object_keys_are_scoped_and_content_addressed() -> None:
    key = object_key("org-1", "proj_2", "render-3", content=b"bytes", variant="web", extension="webp")
    digest = hashlib.sha256(b"bytes").hexdigest()[:16]
    assert key == f"renders/org-1/proj_2/render-3/{digest}-web.webp"
    assert object_key("org-1", "proj_2", "render-3", content=b"bytes", variant="web", extension="webp") == key
    assert object_key("org-1", "proj_2", "render-3", content=b"other", variant="web", extension="webp") != key
    assert variant_of(key) == "web"
    assert variant_of("renders/org-1/proj_2/render-3/notes.txt") is None


@pytest.mark.parametrize("bad", ["..", "../other-org", "a/b", "", "x" * 65, "render\n", "r%2F..", "ré"])
@pytest.mark.parametrize("field", ["organizationId", "projectId", "renderId"])
def test_ids_that_could_escape_their_folder_are_refused(field: str, bad: str) -> None:
    ids = {"organizationId": "org", "projectId": "proj", "renderId": "render"} | {field: bad}
    with pytest.raises(ValueError, match=f"{field} is not a safe object-name segment"):
        render_folder(ids["organizationId"], ids["projectId"], ids["renderId"])
    with pytest.raises(ValueError, match=field):
        object_key(*ids.values(), content=b"x", variant="master", extension="png")


@pytest.mark.parametrize(("variant", "extension"), [("../x", "png"), ("Master", "png"), ("web", "exe"), ("web", "")])
def test_variant_and_extension_are_checked(variant: str, extension: str) -> None:
    with pytest.raises(ValueError, match=r"variant|extension"):
        object_key("org", "proj", "render", content=b"x", variant=variant, extension=extension)


@pytest.mark.parametrize("size", [(640, 400), (2100, 700)], ids=["not-resized", "resized"])
def test_variants_encoded_in_parallel_threads_are_the_same_bytes_every_time(size: tuple[int, int]) -> None:
    """Content-addressed names need deterministic bytes; Pillow keeps save() settings on the Image
    object, so two threads saving one object (the master and an unresized web variant) would mix
    their settings."""
    source = Image.blend(
        Image.linear_gradient("L").resize(size).convert("RGB"),
        Image.frombytes("RGB", size, random.Random(5).randbytes(size[0] * size[1] * 3)),
        0.3,
    )
    srgb = imaging.to_srgb(source)
    digests: dict[Variant, set[str]] = {variant: set() for variant in VARIANTS}
    with ThreadPoolExecutor(len(VARIANTS)) as pool:
        for _ in range(8):
            encoded = pool.map(lambda variant: (variant, encode_variant(srgb, variant, "JPEG")), VARIANTS)
            for variant, image in encoded:
                digests[variant].add(hashlib.sha256(image.data).hexdigest())
    assert {variant: len(found) for variant, found in digests.items()} == {variant: 1 for variant in VARIANTS}


ENCODE_IN_A_FRESH_PROCESS = """
import hashlib, random, sys
from PIL import Image
from render_assets.domain import imaging
from render_assets.domain.variants import VARIANTS, encode_variant
source = Image.frombytes("RGB", (320, 200), random.Random(7).randbytes(320 * 200 * 3))
srgb = imaging.to_srgb(source)
for image_format in sys.argv[1:]:
    for variant in VARIANTS:
        print(image_format, variant.value, hashlib.sha256(encode_variant(srgb, variant, image_format).data).hexdigest())
"""


def test_identical_pixels_encode_to_identical_bytes_in_every_process() -> None:
    """Content addressing across runs: each run worker builds the sRGB profile it embeds, and
    LittleCMS stamps it with the time it was built, one second apart here."""
    formats = ["PNG", "JPEG", "WEBP", "AVIF"]

    def digests() -> str:
        return subprocess.run(
            [sys.executable, "-c", ENCODE_IN_A_FRESH_PROCESS, *formats],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    first = digests()
    time.sleep(1.1)
    assert digests() == first
    assert len(first.splitlines()) == len(formats) * len(VARIANTS)
