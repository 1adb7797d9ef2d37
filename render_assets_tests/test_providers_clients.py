"""The real google-cloud-aiplatform and openai clients against the local fakes: what goes over
the wire, what comes back, and how every failure is classified."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from render_assets.providers.base import ErrorKind, GenerationRequest, ImageProvider, ProviderError
from render_assets.providers.registry import build_providers, preferred_first, provider_names
from render_assets_tests.fakes.image_apis import FakeImageApis
from render_assets_tests.fakes.providers import OPENAI_TEST_KEY, difference, expected_delivery, google, openai


@pytest.fixture
def fake() -> Iterator[FakeImageApis]:
    with FakeImageApis() as apis:
        yield apis


def request(width: int = 512, height: int = 512, **options: Any) -> GenerationRequest:
    return GenerationRequest(
        prompt="a cottage garden with a stone path",
        negative_prompt="text, watermark",
        width=width,
        height=height,
        seed=4_000_000_123,
        quality=80,
        **options,
    )


def test_gemini_route_sends_generate_content_with_image_config_and_returns_the_exact_size(fake: FakeImageApis) -> None:
    result = google(fake).generate(request(1536, 640))

    [sent] = fake.recorded("gemini")
    assert sent["path"].startswith(
        "/v1/projects/test-project/locations/global/publishers/google/models/gemini-3.1-flash-image:generateContent"
    )
    body = sent["json"]
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "a cottage garden with a stone path\n\nAvoid: text, watermark"}]}
    ]
    config = body["generationConfig"]
    assert config["imageConfig"] == {"aspectRatio": "21:9", "imageSize": "1K"}
    assert config["responseModalities"] == [2]  # IMAGE, as the REST transport encodes enums
    assert config["seed"] == 4_000_000_123 % (2**31 - 1) == result.seed
    assert "authorization" not in sent["headers"]  # anonymous against a local fake
    assert result.image.size == (1536, 640)
    assert (result.provider, result.model, result.facts["route"]) == ("google", "gemini-3.1-flash-image", "gemini")
    assert result.native_size == fake.sent["gemini"].size
    assert result.upscale_method == "downscale-lanczos"
    assert difference(result.image, expected_delivery(fake.sent["gemini"], 1536, 640)) < 4


def test_imagen_route_sends_predict_without_watermark_and_upscales_with_the_google_upscaler(
    fake: FakeImageApis,
) -> None:
    provider = google(fake, route="imagen", upscale_model="imagen-4.0-upscale-preview")
    result = provider.generate(request(4096, 4096))

    [sent] = fake.recorded("imagen")
    assert sent["path"].startswith(
        "/v1/projects/test-project/locations/us-central1/publishers/google/models/imagen-4.0-generate-001:predict"
    )
    params = sent["json"]["parameters"]
    assert params["aspectRatio"] == "1:1" and params["sampleImageSize"] == "2K"
    assert params["addWatermark"] is False and params["sampleCount"] == 1  # sent as 1.0: a protobuf Value
    [upscale] = fake.recorded("upscale")
    assert upscale["json"]["parameters"]["upscaleConfig"] == {"upscaleFactor": "x2"}
    assert result.image.size == (4096, 4096)
    assert result.native_size == (2048, 2048)
    assert result.upscale_method == "google:imagen-4.0-upscale-preview x2"
    assert difference(result.image, fake.sent["imagen"]) < 4


def test_openai_sends_a_supported_size_and_quality_with_sdk_retries_off(fake: FakeImageApis) -> None:
    result = openai(fake).generate(request(3840, 2160))

    [sent] = fake.recorded("openai")
    assert sent["path"] == "/v1/images/generations"
    assert sent["json"] == {
        "model": "gpt-image-2",
        "prompt": "a cottage garden with a stone path\n\nAvoid: text, watermark",
        "n": 1,
        "output_format": "png",
        "quality": "high",
        "size": "3840x2160",
    }
    assert sent["headers"]["authorization"] == f"Bearer {OPENAI_TEST_KEY}"
    assert sent["headers"]["x-stainless-retry-count"] == "0"
    assert result.image.size == (3840, 2160) and result.upscale_method == "none"
    assert result.seed is None  # the Images API takes no seed
    assert difference(result.image, fake.sent["openai"]) < 4


GOOGLE_FAULTS = [
    ("rate_limit", {"retry_after": "7"}, ErrorKind.TRANSIENT, False, "rate limited (HTTP 429 RESOURCE_EXHAUSTED)"),
    ("server_error", {"status": 503}, ErrorKind.TRANSIENT, False, "unavailable (HTTP 503 UNAVAILABLE)"),
    ("server_error", {"status": 500}, ErrorKind.TRANSIENT, False, "unavailable (HTTP 500 INTERNAL)"),
    ("slow", {"delay_s": 1.5}, ErrorKind.TRANSIENT, True, "timed out waiting for the reply"),
    ("refuse", {}, ErrorKind.REFUSED, False, "content refused"),
    ("malformed", {}, ErrorKind.TRANSIENT, True, "malformed reply"),
    ("malformed_image", {}, ErrorKind.TRANSIENT, True, "malformed reply: image does not decode"),
    ("auth", {}, ErrorKind.AUTH, False, "credentials rejected (HTTP 403 PERMISSION_DENIED)"),
    ("invalid", {}, ErrorKind.INVALID, False, "request rejected (HTTP 400 INVALID_ARGUMENT)"),
]


@pytest.mark.parametrize("route", ["gemini", "imagen"])
@pytest.mark.parametrize(("fault", "options", "kind", "billed", "message"), GOOGLE_FAULTS)
def test_google_failures_are_classified(
    fake: FakeImageApis, route: str, fault: str, options: dict[str, object], kind: ErrorKind, billed: bool, message: str
) -> None:
    fake.fail(route, fault, times=1, **options)
    with pytest.raises(ProviderError) as caught:
        google(fake, route=route, timeout_s=0.8).generate(request())
    error = caught.value
    assert (error.provider, error.kind, error.may_have_billed) == ("google", kind, billed)
    assert str(error).startswith(message)
    assert error.retry_after_s == (7.0 if fault == "rate_limit" else None)
    assert fake.calls(route) == 1  # the SDK's own retries are off


@pytest.mark.parametrize(
    ("route", "fault", "reason"),
    [
        ("gemini", "refuse", "Unable to show the generated image"),
        ("imagen", "filtered", "every image was filtered out"),  # HTTP 200 with {}
        ("imagen", "filtered_reason", "All images were filtered out"),  # includeRaiReason's shape
        ("imagen", "refuse", "sensitive words"),  # the prompt pre-filter's 400
    ],
)
def test_google_refusals_carry_a_readable_reason(fake: FakeImageApis, route: str, fault: str, reason: str) -> None:
    fake.fail(route, fault)
    with pytest.raises(ProviderError) as caught:
        google(fake, route=route).generate(request())
    assert caught.value.kind is ErrorKind.REFUSED
    assert reason in (caught.value.filtered_reason or "")


OPENAI_FAULTS = [
    ("rate_limit", {"retry_after": "7"}, ErrorKind.TRANSIENT, False, "rate limited (HTTP 429 rate_limit_exceeded)"),
    ("quota", {}, ErrorKind.TRANSIENT, False, "rate limited (HTTP 429 insufficient_quota)"),
    ("server_error", {"status": 503}, ErrorKind.TRANSIENT, False, "unavailable (HTTP 503)"),
    ("slow", {"delay_s": 1.5}, ErrorKind.TRANSIENT, True, "timed out waiting for the reply"),
    ("refuse", {}, ErrorKind.REFUSED, False, "content refused (HTTP 400 moderation_blocked)"),
    ("malformed", {}, ErrorKind.TRANSIENT, True, "malformed reply"),
    ("malformed_image", {}, ErrorKind.TRANSIENT, True, "malformed reply: image does not decode"),
    ("auth", {}, ErrorKind.AUTH, False, "credentials rejected (HTTP 401 invalid_api_key)"),
    ("invalid", {}, ErrorKind.INVALID, False, "request rejected (HTTP 400 invalid_value)"),
]


def test_an_empty_openai_base_url_in_the_environment_means_the_openai_api(
    fake: FakeImageApis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deployment that sets every variable, empty for "the default" (deploy/docker/compose.yaml).
    monkeypatch.setenv("OPENAI_BASE_URL", "")
    assert str(openai(fake, base_url=None).client().base_url) == "https://api.openai.com/v1/"
    assert str(openai(fake).client().base_url) == f"{fake.url}/v1/"


@pytest.mark.parametrize(("fault", "options", "kind", "billed", "message"), OPENAI_FAULTS)
def test_openai_failures_are_classified(
    fake: FakeImageApis, fault: str, options: dict[str, object], kind: ErrorKind, billed: bool, message: str
) -> None:
    fake.fail("openai", fault, times=1, **options)
    with pytest.raises(ProviderError) as caught:
        openai(fake, timeout_s=0.8).generate(request())
    error = caught.value
    assert (error.provider, error.kind, error.may_have_billed) == ("openai", kind, billed)
    assert str(error).startswith(message)
    assert error.retry_after_s == (7.0 if fault == "rate_limit" else None)
    assert OPENAI_TEST_KEY not in str(error) and OPENAI_TEST_KEY not in repr(openai(fake))
    assert fake.calls("openai") == 1  # max_retries=0: the SDK does not retry 429, 5xx or timeouts


def test_an_unreachable_endpoint_is_a_transient_failure_that_cannot_have_billed() -> None:
    with FakeImageApis() as gone:
        url = gone.url
    for provider in (google(gone, api_endpoint=url, timeout_s=2), openai(gone, base_url=f"{url}/v1", timeout_s=2)):
        with pytest.raises(ProviderError) as caught:
            provider.generate(request())
        assert caught.value.kind is ErrorKind.TRANSIENT and not caught.value.may_have_billed


def test_configuration_errors_name_the_missing_variable() -> None:
    with pytest.raises(ValueError, match="RENDER_PROVIDERS names unknown provider 'imagen'"):
        provider_names("google,imagen")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        build_providers("openai")
    with pytest.raises(ValueError, match="GOOGLE_CLOUD_PROJECT"):
        build_providers("google")
    with pytest.raises(ValueError, match="twice"):
        provider_names("local,local")


def test_the_jobs_preferred_provider_goes_first_and_the_configured_order_follows(fake: FakeImageApis) -> None:
    providers: list[ImageProvider] = [google(fake), openai(fake)]
    assert [p.name for p in preferred_first(providers, "openai-gpt-image")] == ["openai", "google"]
    assert [p.name for p in preferred_first(providers, "google-imagen")] == ["google", "openai"]
    assert [p.name for p in preferred_first(providers[:1], "openai-gpt-image")] == ["google"]


def test_provider_sdks_are_imported_only_when_a_provider_is_called() -> None:
    """The code location, the provider modules and building providers import no SDK."""
    probe = (
        "import sys, render_assets.orchestration.definitions, render_assets.providers.google_image, "
        "render_assets.providers.openai_image, render_assets.providers.failover; "
        "from render_assets.providers.registry import build_providers, ProviderSettings; "
        "build_providers('google,openai,local', settings=ProviderSettings(google_project='p', openai_api_key='k')); "
        "print(','.join(m for m in ('openai', 'google.cloud.aiplatform', 'google.cloud.aiplatform_v1', 'httpx2')"
        " if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
