"""The BullMQ job payload the web app sends, validated strictly.

The model mirrors the web app's `RenderJobData` field for field, so its jobs are accepted as
they are; anything else (unknown fields, wrong types, out-of-range values) is rejected with a
reason that names the field and never echoes the value (it may hold a user's prompt).
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    field_validator,
)

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_ANNOTATIONS = 500
MAX_USER_PROMPT_CHARS = 2_000
MAX_SYSTEM_PROMPT_CHARS = 4_000
MAX_URL_CHARS = 2_048
MIN_SIDE, MAX_SIDE = 256, 4096
MAX_ANNOTATION_DEPTH = 64  # nested arrays/objects in one annotation's data
# Python refuses to convert longer digit strings to int (sys.int_info.default_max_str_digits).
MAX_INT_DIGITS = 4_300

# The payload is stored in PostgreSQL (JSONB), which holds neither NUL nor unpaired surrogates:
# refused here, or the claim could never be recorded and the job would come back forever.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_UNSTORABLE_MESSAGE = "must not contain NUL characters or unpaired surrogates"
# Error locations echo key names, which the producer chose: only name-like ones are shown.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _storable(value: str) -> str:
    if _UNSTORABLE.search(value):
        raise ValueError(_UNSTORABLE_MESSAGE)
    return value


def _storable_json(value: Any) -> Any:
    """Refuse annotation data PostgreSQL cannot store (NaN, infinities, NUL, unpaired
    surrogates) or that nests absurdly deep; iterative, so any depth fails cleanly."""
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_ANNOTATION_DEPTH:
                raise ValueError(f"nested deeper than {MAX_ANNOTATION_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite")
        elif isinstance(item, str) and _UNSTORABLE.search(item):
            raise ValueError(f"strings {_UNSTORABLE_MESSAGE}")
    return value


Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Url = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL_CHARS), AfterValidator(_storable)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PromptText(_Strict):
    system: Annotated[str, StringConstraints(max_length=MAX_SYSTEM_PROMPT_CHARS), AfterValidator(_storable)]
    user: Annotated[str, StringConstraints(max_length=MAX_USER_PROMPT_CHARS), AfterValidator(_storable)]


class Annotation(_Strict):
    type: Literal["mask", "assetInstance", "textLabel"]
    data: Annotated[JsonValue, BeforeValidator(_storable_json)] = None


class RenderSettings(_Strict):
    provider: Literal["google-imagen", "openai-gpt-image"]
    resolution: Annotated[str, StringConstraints(pattern=r"^[0-9]{3,4}x[0-9]{3,4}$")]
    format: Literal["PNG", "JPEG", "WEBP", "AVIF"]
    quality: Annotated[int, Field(ge=1, le=100)] | None = None
    # Read by the old worker through an untyped cast; accepted so its jobs still validate.
    forceManualReview: bool | None = None

    @field_validator("resolution")
    @classmethod
    def _sides_in_range(cls, value: str) -> str:
        width, height = (int(side) for side in value.split("x"))
        if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
            raise ValueError(f"each side must be between {MIN_SIDE} and {MAX_SIDE} pixels")
        return value

    @property
    def size(self) -> tuple[int, int]:
        width, height = self.resolution.split("x")
        return int(width), int(height)


class RenderJob(_Strict):
    renderId: Identifier
    projectId: Identifier
    sceneId: Identifier
    userId: Identifier
    organizationId: Identifier
    subscriptionTier: Literal["starter", "pro", "growth"]
    sourceImageUrl: Url
    maskImageUrl: Url | None = None
    prompt: PromptText
    annotations: Annotated[list[Annotation], Field(max_length=MAX_ANNOTATIONS)]
    settings: RenderSettings


class InvalidJob(ValueError):
    """A job payload the worker refuses; the message names every offending field."""


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        location = ".".join(_location_part(part) for part in item["loc"]) or "payload"
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{location}: {message}")
    return "invalid job payload: " + "; ".join(problems[:10])


def _location_part(part: str | int) -> str:
    return str(part) if isinstance(part, int) or _NAME.fullmatch(part) else "<unnamed>"


def _parse_int(digits: str) -> int | float:
    # Past Python's limit a number is out of any field's range: infinity, which validation
    # refuses at the field, instead of failing the whole document.
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        return -math.inf if digits.startswith("-") else math.inf
    return int(digits)


def parse_job(data: Any) -> RenderJob:
    """Validate job data as BullMQ hands it over: a JSON string, or already decoded JSON.

    A problem with the job data as a whole (size, not JSON, not an object) names `data`.
    """
    if isinstance(data, bytes | str):
        try:
            size = len(data.encode()) if isinstance(data, str) else len(data)
        except UnicodeEncodeError:  # undecodable bytes, as the queue adapter passes them on
            raise InvalidJob("invalid job payload: data: not UTF-8") from None
        if size > MAX_PAYLOAD_BYTES:
            raise InvalidJob(f"invalid job payload: data: larger than {MAX_PAYLOAD_BYTES} bytes")
        try:
            data = json.loads(data, parse_int=_parse_int)
        except RecursionError:
            raise InvalidJob("invalid job payload: data: nested too deeply") from None
        except ValueError as error:
            raise InvalidJob(f"invalid job payload: data: not JSON ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise InvalidJob(f"invalid job payload: data: expected a JSON object, got {type(data).__name__}")
    try:
        return RenderJob.model_validate(data)
    except ValidationError as error:
        raise InvalidJob(_describe(error)) from None
    except RecursionError:
        raise InvalidJob("invalid job payload: data: nested too deeply") from None
