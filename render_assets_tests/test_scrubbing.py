"""The scrubber removes credentials, e-mail addresses and registered prompt text, and keeps the rest."""

from __future__ import annotations

import logging

import pytest

from render_assets.observability.logs import install_record_scrubbing
from render_assets.observability.scrubbing import (
    FILTERED,
    scrub_breadcrumb,
    scrub_event,
    scrub_exception,
    scrub_text,
    scrub_value,
    sensitive_strings,
)
from render_assets.services.failure_reports import payload_sensitive_strings

OPENAI_KEY = "sk-proj-Q3vX9aB7cD2eF4gH6iJ8kL0mN1oP"
GOOGLE_KEY = "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Incorrect API key provided: {OPENAI_KEY}.", OPENAI_KEY),
        (f"GET https://generativelanguage.googleapis.com/v1/models?key={GOOGLE_KEY}", GOOGLE_KEY),
        (f"headers: Authorization: Bearer {JWT}", JWT),
        ("authorization: Bearer abc123opaque", "abc123opaque"),
        ("postgresql://render_worker:hunter2-Secret@db.internal:5432/renders", "hunter2-Secret"),
        ("redis://:s3cr3tPass@cache:6379/0", "s3cr3tPass"),
        ("mail jane.doe+renders@example.co.uk about it", "jane.doe+renders@example.co.uk"),
        ('{"api_key": "plain-looking-value"}', "plain-looking-value"),
        ("password=correct-horse-battery", "correct-horse-battery"),
        ("token 0123456789abcdef0123456789abcdef01 leaked", "0123456789abcdef0123456789abcdef01"),
        ("blob dGhpcyBpcyBhIHNlY3JldCB0b2tlbiB2YWx1ZTEyMw== end", "dGhpcyBpcyBhIHNlY3JldCB0b2tlbiB2YWx1ZTEyMw"),
        ("posting to https://hooks.slack.com/services/T0001/B0002/XyZ123abc failed", "XyZ123abc"),
        ("ya29.a0AfH6SMBx-token-value in header", "a0AfH6SMBx-token-value"),
    ],
)
def test_credentials_and_addresses_are_removed(text: str, secret: str) -> None:
    scrubbed = scrub_text(text)
    assert secret not in scrubbed
    assert "[Filtered]" in scrubbed or "[email]" in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "render render-3f2a9c1b4d5e failed at raw_render (provider_timeout, attempt 2)",
        "run 0b5f6c2e-8d1a-4c3b-9e7f-1a2b3c4d5e6f step qa_verdict",
        "/work/main/.venv/lib/python3.11/site-packages/dagster/_core/execution/plan/execute_step.py",
        "quality check failed: image is blank (contrast 0.0)",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert scrub_text(text) == text


def test_registered_strings_are_replaced_only_while_registered() -> None:
    prompt = 'a Cozy backyard with "a pond"\nand lavender'
    with sensitive_strings.registered([prompt, "ab", None]):
        assert "Cozy backyard" not in scrub_text(f"provider said: {prompt}")
        assert "Cozy backyard" not in scrub_text(repr(prompt))  # the escaped form too
        assert "COZY BACKYARD" not in scrub_text(prompt.upper())
        assert scrub_text("ab stays") == "ab stays"  # too short to register
    assert scrub_text(prompt) == prompt


def test_payload_fields_and_credential_keys_are_dropped_from_structures() -> None:
    value = {
        "prompt": {"user": "my garden", "system": "sys"},
        "annotations": [{"text": "keep the oak"}],
        "settings": {"resolution": "1024x1024"},
        "headers": {"Authorization": "Bearer x", "X-Api-Key": "k", "accept": "image/png"},
        "usage": {"input_tokens": 12},
        "nested": [{"password": "pw", "note": f"mail bob@example.com {OPENAI_KEY}"}],
    }
    scrubbed = scrub_value(value)
    assert scrubbed["prompt"] == FILTERED and scrubbed["annotations"] == FILTERED
    assert scrubbed["settings"] == {"resolution": "1024x1024"}
    assert scrubbed["headers"] == {"Authorization": FILTERED, "X-Api-Key": FILTERED, "accept": "image/png"}
    assert scrubbed["usage"] == {"input_tokens": 12}  # numbers under token-like names are not secrets
    assert scrubbed["nested"][0]["password"] == FILTERED
    assert "bob@example.com" not in scrubbed["nested"][0]["note"] and OPENAI_KEY not in scrubbed["nested"][0]["note"]


def test_an_event_is_scrubbed_everywhere_but_its_identifiers() -> None:
    event = {
        "event_id": "a" * 32,
        "message": f"failed with {OPENAI_KEY}",
        "logentry": {"message": "key %s", "params": [GOOGLE_KEY]},
        "exception": {
            "values": [
                {
                    "type": "ProviderError",
                    "value": "contact jane@example.com",
                    "stacktrace": {"frames": [{"function": "f", "vars": {"api_key": OPENAI_KEY}}]},
                }
            ]
        },
        "breadcrumbs": {"values": [{"message": f"Bearer {JWT}", "data": {"prompt": "p"}}]},
        "extra": {"payload": {"renderId": "r1"}, "debug": f"url postgresql://u:pw12345@h/db {OPENAI_KEY}"},
        "contexts": {"trace": {"trace_id": "b" * 32, "span_id": "c" * 16}, "render": {"user": "jane"}},
        "user": {"email": "jane@example.com", "ip_address": "10.0.0.1"},
        "tags": {"renderId": "render-1", "stage": "raw_render"},
    }
    scrubbed = scrub_event(event)
    text = repr(scrubbed)
    for secret in (OPENAI_KEY, GOOGLE_KEY, JWT, "jane@example.com", "pw12345", "10.0.0.1"):
        assert secret not in text
    assert "vars" not in scrubbed["exception"]["values"][0]["stacktrace"]["frames"][0]
    assert scrubbed["contexts"]["trace"] == {"trace_id": "b" * 32, "span_id": "c" * 16}
    assert scrubbed["extra"]["payload"] == FILTERED and scrubbed["contexts"]["render"]["user"] == FILTERED
    assert scrubbed["tags"] == {"renderId": "render-1", "stage": "raw_render"}
    assert scrubbed["event_id"] == "a" * 32 and "user" not in scrubbed


def test_a_breadcrumb_is_scrubbed_when_recorded() -> None:
    crumb = scrub_breadcrumb({"message": f"POST with {OPENAI_KEY}", "data": {"url": "https://u:p4ssw0rd@x.io/"}})
    assert OPENAI_KEY not in crumb["message"] and "p4ssw0rd" not in crumb["data"]["url"]


def test_any_four_word_run_of_a_registered_text_is_replaced_however_it_comes_back() -> None:
    brief = "Aunt Matilda wants a lavender spiral maze behind the cobalt greenhouse"
    with sensitive_strings.registered([f"{brief}. Call Bearer abc123opaque"]):
        # Quoted inside a longer text, cut short, re-spaced and with its key masked already.
        quoted = scrub_text(f"Invalid prompt: 'Client brief: \"{brief}. Call ***\". Rendered' (400)")
        cut = scrub_text(f"Invalid prompt 'Client brief: \"{brief[:40]}")
        spaced = scrub_text("AUNT  Matilda\nwants a lavender")
    assert "Matilda" not in quoted and "greenhouse" not in quoted and quoted.startswith("Invalid prompt")
    assert quoted.endswith("Rendered' (400)")
    assert "lavender spiral" not in cut and "Invalid prompt 'Client brief:" in cut
    assert spaced == "[redacted]"
    # Three words in a row are not enough, and nothing is replaced once the run is over.
    assert scrub_text("a lavender spiral") == "a lavender spiral"


def test_three_common_words_of_a_registered_text_stay() -> None:
    with sensitive_strings.registered(["keep the oak tree by the pond"]):
        assert scrub_text("keep the oak") == "keep the oak"
        assert scrub_text("please keep the oak tree") == "please [redacted]"


def test_an_errors_text_is_scrubbed_in_place_with_its_causes() -> None:
    try:
        try:
            raise ConnectionError(f"upstream refused {OPENAI_KEY}")
        except ConnectionError as cause:
            raise RuntimeError("wrapped for jane@example.com", 3) from cause
    except RuntimeError as error:
        scrub_exception(error)
        assert error.args == ("wrapped for [email]", 3)
        assert OPENAI_KEY not in str(error.__cause__)


class Keeper(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_every_log_record_is_scrubbed_when_made_whatever_handles_it() -> None:
    install_record_scrubbing()
    install_record_scrubbing()  # idempotent: one wrapper, not two
    factory = logging.getLogRecordFactory()
    assert getattr(factory, "_render_assets_scrubbing", False)
    logger = logging.getLogger("some.library")
    seen: list[logging.LogRecord] = []
    handler = Keeper(seen)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("calling with Authorization: Bearer %s for %s", "opaqueToken123", "jane@example.com")
        logger.warning('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/r/x?token=abc123", "1.1", 200)
        logger.warning("plain %s line %d", "ordinary", 7)
        try:
            raise ValueError(f"bad key {OPENAI_KEY}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    bearer, access, plain, failure = seen
    # A secret made of parts (the scheme in the message, the value in an argument): flattened.
    assert bearer.args == () and "opaqueToken123" not in bearer.msg and "jane@" not in bearer.msg
    # Clean once each argument is scrubbed: the shape stays (uvicorn's access formatter unpacks it).
    assert access.args == ("127.0.0.1:5", "GET", "/r/x?token=[Filtered]", "1.1", 200)
    assert (plain.msg, plain.args) == ("plain %s line %d", ("ordinary", 7))
    assert failure.exc_text is not None and OPENAI_KEY not in failure.exc_text
    assert OPENAI_KEY not in logging.Formatter().format(failure)


def test_a_payloads_free_text_is_sensitive_but_its_catalogue_words_are_not() -> None:
    payload = {
        "prompt": {"system": "You render gardens.", "user": "a pond where my dog Rex sleeps"},
        "annotations": [
            {"type": "assetInstance", "data": {"category": "plant", "name": "Japanese maple", "x": 0.2}},
            {"type": "textLabel", "data": {"text": "call Maria about the fence"}},
        ],
        "sourceImageUrl": "https://photos.example.com/yard.jpg?sig=abc",
    }
    sensitive = payload_sensitive_strings(payload)
    assert "a pond where my dog Rex sleeps" in sensitive
    assert "call Maria about the fence" in sensitive
    assert "https://photos.example.com/yard.jpg?sig=abc" in sensitive
    assert not {"plant", "Japanese maple"} & set(sensitive)
