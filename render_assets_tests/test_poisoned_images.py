"""Poisoned images from providers (fakes/poisons.py): oversize bodies, decompression bombs,
truncated files, the wrong format behind the declared type, animated files, metadata bombs.
Each is a `malformed` reply (transient, may have billed): decode_image refuses it, the real SDK
clients refuse it as the fake APIs send it, and a render receiving it fails once with its refund.
The decoder's memory stays within a fixed address-space cap."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageCms, ImageFile, PngImagePlugin

from render_assets.domain.payload import parse_job
from render_assets.domain.pricing import render_cost
from render_assets.providers.base import ErrorKind, GenerationRequest, ProviderError
from render_assets.providers.decoding import MAX_ENCODED_CHARS, MAX_IMAGE_BYTES, decode_image
from render_assets_tests.bullmq_jobs import bull_job
from render_assets_tests.fakes.image_apis import FakeImageApis
from render_assets_tests.fakes.poisons import FILE_POISONS, MIB, huge_exif_jpeg, poison, valid_png
from render_assets_tests.fakes.providers import difference, google, openai, resource
from render_assets_tests.payloads import web_app_job
from render_assets_tests.stack import in_process_stack

HTTP_POISONS = ("oversize_reply", "oversize_reply_chunked", "oversize_reply_gzip")
# OpenAI's replies declare no type per image: only poisons declared as the PNG we ask for apply.
OPENAI_POISONS = tuple(name for name in (*FILE_POISONS, *HTTP_POISONS) if poison(name).mime_type == "image/png")
# One or two per kind of poison for the whole pipeline (every kind is covered per endpoint below).
PIPELINE_POISONS = ("oversize_reply_chunked", "bomb_png", "truncated_png", "gif_as_png", "animated_png", "ztxt_bomb")


def assert_malformed(error: ProviderError, provider: str, reason: str) -> None:
    assert (error.provider, error.kind, error.may_have_billed) == (provider, ErrorKind.TRANSIENT, True)
    assert str(error).startswith("malformed reply: ")
    assert reason in str(error)


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


# ---- decode_image --------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["bytes", "base64"])
@pytest.mark.parametrize("name", FILE_POISONS)
def test_each_poisoned_file_is_refused_as_a_malformed_reply_that_may_have_billed(name: str, form: str) -> None:
    item = poison(name)
    data: bytes | str = item.data if form == "bytes" else base64.b64encode(item.data).decode()
    with pytest.raises(ProviderError) as caught:
        decode_image("google", data, mime_type=item.mime_type)
    assert_malformed(caught.value, "google", item.reason)


@pytest.mark.parametrize(
    ("fmt", "mime_type", "options"),
    [
        ("PNG", "image/png", {}),
        ("PNG", None, {}),  # nothing declared: any of the three formats
        ("JPEG", "image/jpeg", {"quality": 90}),
        ("JPEG", "IMAGE/JPG; q=1", {"quality": 90}),
        ("WEBP", "image/webp", {"quality": 90}),
        ("WEBP", "image/webp", {"lossless": True}),
    ],
)
def test_valid_images_with_ordinary_metadata_still_decode(fmt: str, mime_type: str | None, options: dict) -> None:
    source = Image.linear_gradient("L").resize((96, 64)).convert("RGB")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0131] = "renderer 1.0"  # Software
    extra: dict[str, object] = {"icc_profile": srgb, "exif": exif.tobytes()}
    if fmt == "PNG":
        text = PngImagePlugin.PngInfo()
        text.add_text("c2pa-like manifest", "x" * 200_000, zip=True)  # a large but ordinary text chunk
        extra["pnginfo"] = text

    image = decode_image("openai", encoded(source, fmt, **extra, **options), mime_type=mime_type)

    assert (image.mode, image.size) == ("RGB", (96, 64))
    assert difference(image, source) < 3


def test_a_transparent_png_decodes_to_rgb() -> None:
    rgba = Image.new("RGBA", (32, 32), (10, 200, 30, 128))
    assert decode_image("openai", encoded(rgba, "PNG"), mime_type="image/png").mode == "RGB"


def test_oversize_data_is_refused_before_it_is_decoded() -> None:
    too_long = "A" * (MAX_ENCODED_CHARS + 4)  # valid base64 of zero bytes, one triple past the cap
    with pytest.raises(ProviderError) as caught:
        decode_image("openai", too_long, mime_type="image/png")
    assert_malformed(caught.value, "openai", "image of more than 64 MiB")

    with pytest.raises(ProviderError) as caught:
        decode_image("google", bytes(MAX_IMAGE_BYTES + 1), mime_type="image/png")
    assert_malformed(caught.value, "google", "image of more than 64 MiB")

    # At the cap, the size is fine and the content decides.
    at_cap = base64.b64encode(bytes(MAX_IMAGE_BYTES)).decode()
    assert len(at_cap) == MAX_ENCODED_CHARS
    with pytest.raises(ProviderError) as caught:
        decode_image("openai", at_cap, mime_type="image/png")
    assert_malformed(caught.value, "openai", "image does not decode (not a PNG, JPEG or WebP file)")


def test_a_jpeg_with_60_mib_of_exif_segments_is_refused_before_pillow_parses_them() -> None:
    data = huge_exif_jpeg(60 * MIB)  # Pillow alone takes over a minute to open this (quadratic joins)
    start = time.perf_counter()
    with pytest.raises(ProviderError) as caught:
        decode_image("google", data, mime_type="image/jpeg")
    assert time.perf_counter() - start < 2.0
    assert_malformed(caught.value, "google", "image metadata exceeds 8 MiB")


def test_truncated_files_fail_because_pillow_is_not_told_to_accept_them() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # the truncated poisons rely on it
    with pytest.raises(ProviderError):
        decode_image("google", valid_png((300, 300))[:-40], mime_type="image/png")


# ---- through the real SDK clients ----------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeImageApis]:
    with FakeImageApis() as apis:
        yield apis


def request(width: int = 512, height: int = 512) -> GenerationRequest:
    return GenerationRequest(prompt="a gravel garden", negative_prompt="", width=width, height=height, seed=7)


SDK_CASES = [
    *[("gemini", name) for name in (*FILE_POISONS, *HTTP_POISONS)],
    *[("imagen", name) for name in FILE_POISONS],  # the same REST transport as Gemini's
    *[("openai", name) for name in OPENAI_POISONS],
]


@pytest.mark.parametrize(("endpoint", "name"), SDK_CASES)
def test_a_poisoned_reply_through_the_real_sdk_is_a_malformed_reply(
    fake: FakeImageApis, endpoint: str, name: str
) -> None:
    fake.fail(endpoint, "poison", poison=name)
    provider = openai(fake) if endpoint == "openai" else google(fake, route=endpoint)

    with pytest.raises(ProviderError) as caught:
        provider.generate(request())

    assert_malformed(caught.value, "openai" if endpoint == "openai" else "google", poison(name).reason)
    assert (fake.calls(endpoint), fake.billed(endpoint)) == (1, 1)


@pytest.mark.parametrize("encoding", ["gzip", "chunked", "gzip+chunked"])
@pytest.mark.parametrize("endpoint", ["gemini", "openai"])
def test_valid_replies_without_a_length_or_compressed_are_read_whole(
    fake: FakeImageApis, endpoint: str, encoding: str
) -> None:
    fake.reply_encoding = encoding
    provider = openai(fake) if endpoint == "openai" else google(fake)

    result = provider.generate(request(1024, 1024))

    assert difference(result.image, fake.sent[endpoint]) < 4


def test_a_poisoned_upscale_falls_back_to_the_local_enlargement(fake: FakeImageApis) -> None:
    fake.fail("upscale", "poison", poison="bomb_png")
    provider = google(fake, route="imagen", upscale_model="imagen-4.0-upscale-preview")

    result = provider.generate(request(2560, 2560))  # Imagen 2K, then x2

    assert result.image.size == (2560, 2560)
    assert result.upscale_method == "lanczos-unsharp"
    assert "malformed reply: image exceeds the 40 MP limit" in result.facts["upscaler_error"]


# ---- whole renders -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PIPELINE_POISONS)
def test_a_render_whose_providers_both_send_poison_fails_once_and_is_refunded(
    sqlite_url: str, queue_name: str, tmp_path: Path, fake: FakeImageApis, prefix: str, name: str
) -> None:
    fake.fail("gemini", "poison", poison=name)
    fake.fail("openai", "poison", poison=name)
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=resource(fake, prefix)) as stack:
        data = web_app_job(resolution="1024x1024", image_format="JPEG", quality=80)
        data["settings"]["provider"] = "google-imagen"
        job_id = stack.enqueue(data, attempts=1)  # the last attempt: its failure is final

        [result] = stack.run_all()

        assert not result.success
        assert stack.queue.state(job_id) == "failed"
        reason = bull_job(stack.queue_name, job_id).failedReason
        assert reason.startswith("no image provider delivered: ")
        google_error, openai_error = reason.removeprefix("no image provider delivered: ").split("; ")
        for error, provider in ((google_error, "google"), (openai_error, "openai")):
            assert error.startswith(f"{provider}: malformed reply: ") and poison(name).reason in error
        # Each may have billed: asked once, never again (no second pass, no step retry).
        assert (fake.calls("gemini"), fake.calls("openai")) == (1, 1)
        cost = render_cost(parse_job(data).settings)
        assert stack.ledger(data["renderId"]) == [("charge", -cost), ("refund", cost)]


# ---- memory --------------------------------------------------------------------------------------

# Address space the decoder may add to its process (RLIMIT_AS over the process's size with the
# input loaded). Decoding the largest image accepted (40 MP RGBA) needs about 350 MiB; an
# unchecked WebP canvas of 12000x10000 would take 915 MiB before any check could run.
ADDRESS_SPACE_CAP_MIB = 512
_UNDER_A_CAP = """
import base64, json, re, resource, sys
from render_assets.providers.base import ProviderError
from render_assets.providers.decoding import MAX_ENCODED_CHARS, decode_image
from render_assets_tests.fakes.poisons import FILE_POISONS, poison

cases = [(name, base64.b64encode(poison(name).data).decode(), poison(name).mime_type) for name in FILE_POISONS]
cases.append(("oversize_image", "A" * (MAX_ENCODED_CHARS + 4), "image/png"))
cases.append(("valid_40mp_rgba", open(sys.argv[2]).read(), "image/png"))
size = int(re.search(r"VmSize:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
cap = size + int(sys.argv[1]) * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
outcomes = {}
for name, data, mime_type in cases:
    try:
        outcomes[name] = "decoded %dx%d" % decode_image("test", data, mime_type=mime_type).size
    except ProviderError as error:
        outcomes[name] = str(error)
    except MemoryError:
        outcomes[name] = "MemoryError"
print(json.dumps(outcomes))
"""


def test_every_poison_fails_cleanly_within_a_fixed_address_space_cap(tmp_path: Path) -> None:
    gradient = Image.linear_gradient("L").resize((6000, 6666))  # 40 MP, the most the decoder accepts
    largest = tmp_path / "largest.b64"
    largest.write_bytes(base64.b64encode(encoded(Image.merge("RGBA", [gradient] * 4), "PNG", compress_level=1)))

    out = subprocess.run(
        [sys.executable, "-c", _UNDER_A_CAP, str(ADDRESS_SPACE_CAP_MIB), str(largest)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    outcomes = json.loads(out.stdout)

    assert outcomes.pop("valid_40mp_rgba") == "decoded 6000x6666"  # the cap leaves room for real work
    assert outcomes.pop("oversize_image").startswith("malformed reply: image of more than")
    for name, outcome in outcomes.items():
        assert outcome.startswith("malformed reply: ") and poison(name).reason in outcome, (name, outcome)
