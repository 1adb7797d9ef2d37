"""Each failure lands in the class operators group and alert by."""

from __future__ import annotations

import pytest

from render_assets.domain.failure_classes import FailureClass, classify, failed_providers

C = FailureClass


@pytest.mark.parametrize(
    ("reason", "stage", "expected"),
    [
        ("insufficient credits: need 4, have 1", "render_prompt", C.INSUFFICIENT_CREDITS),
        ("invalid job payload: settings.resolution: each side must be …", None, C.INVALID_PAYLOAD),
        ("image provider openai is misconfigured (credentials rejected (HTTP 401))", "raw_render", C.PROVIDER_AUTH),
        (
            "no image provider delivered: google: rate limited (HTTP 429): Quota exceeded for aiplatform",
            "raw_render",
            C.PROVIDER_QUOTA,
        ),
        ("no image provider delivered: openai: rate limited (HTTP 429 insufficient_quota): x", None, C.PROVIDER_QUOTA),
        (
            "no image provider delivered: openai: rate limited (HTTP 429 rate_limit_exceeded)",
            None,
            C.PROVIDER_RATE_LIMIT,
        ),
        ("no image provider delivered: openai: timed out waiting for the reply", "raw_render", C.PROVIDER_TIMEOUT),
        ("no image provider delivered (the 120 s deadline passed): google: x", "raw_render", C.PROVIDER_TIMEOUT),
        (
            "the image providers refused to render this design under their content policies",
            "raw_render",
            C.PROVIDER_REFUSAL,
        ),
        ("no image provider delivered: google: unavailable (HTTP 503): backend error", "raw_render", C.PROVIDER_ERROR),
        ("raw_render failed: APITimeoutError: Request timed out.", "raw_render", C.PROVIDER_TIMEOUT),
        # A failover that met both: auth is the one someone must fix.
        (
            "no image provider delivered: google: credentials rejected (HTTP 403); openai: rate limited",
            None,
            C.PROVIDER_AUTH,
        ),
        ("quality check failed: image is blank (contrast 0.0)", "qa_verdict", C.QUALITY_REJECTED),
        ("qa_verdict failed: OSError: cannot identify image file", "qa_verdict", C.QUALITY_REJECTED),
        ("cdn_image failed: TransportError: upload to bucket renders failed", "cdn_image", C.STORAGE),
        ("cdn_image failed: ConnectionError: connection reset", "cdn_image", C.STORAGE),
        ("could not store the images: NotADirectoryError: [Errno 20] Not a directory", "cdn_image", C.STORAGE),
        ("cdn_image failed: PermissionError: [Errno 13]", "cdn_image", C.STORAGE),
        ("render_prompt failed: OperationalError: database is locked", "render_prompt", C.INTERNAL),
    ],
)
def test_failure_reasons_map_to_classes(reason: str, stage: str | None, expected: FailureClass) -> None:
    assert classify(reason, stage=stage) is expected


def test_exception_type_names_and_explicit_classes_count() -> None:
    assert classify("raw_render failed", stage="raw_render", error_types=("ReadTimeout",)) is C.PROVIDER_TIMEOUT
    assert classify("anything", explicit="storage") is C.STORAGE
    assert classify("insufficient credits: need 2", explicit="not-a-class") is C.INSUFFICIENT_CREDITS


def test_the_providers_a_failure_names_are_found() -> None:
    reason = "no image provider delivered: google: rate limited (HTTP 429): slow down; openai: HTTP error: 500"
    assert failed_providers(reason) == ["google", "openai"]
    assert failed_providers("image provider openai rejected the request (HTTP 400)") == ["openai"]
    assert failed_providers("quality check failed: image is blank") == []
