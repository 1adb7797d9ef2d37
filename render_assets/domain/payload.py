"""The BullMQ job payload the web app sends, validated strictly.

The model mirrors the web app's `RenderJobData` field for field, so its jobs are accepted as
they are; anything else (unknown fields, wrong types, out-of-range values) is rejected with a
reason that names the field and never echoes the value (it may hold a user's prompt).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
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

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Url = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL_CHARS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PromptText(_Strict):
    system: Annotated[str, StringConstraints(max_length=MAX_SYSTEM_PROMPT_CHARS)]
    user: Annotated[str, StringConstraints(max_length=MAX_USER_PROMPT_CHARS)]


class Annotation(_Strict):
    type: Literal["mask", "assetInstance", "textLabel"]
    data: JsonValue = None


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
        location = ".".join(str(part) for part in item["loc"]) or "payload"
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{location}: {message}")
    return "invalid job payload: " + "; ".join(problems[:10])


def parse_job(data: Any) -> RenderJob:
    """Validate job data as BullMQ hands it over: a JSON string, or already decoded JSON."""
    if isinstance(data, bytes | str):
        size = len(data.encode()) if isinstance(data, str) else len(data)
        if size > MAX_PAYLOAD_BYTES:
            raise InvalidJob(f"invalid job payload: larger than {MAX_PAYLOAD_BYTES} bytes")
        try:
            data = json.loads(data)
        except (ValueError, RecursionError) as error:
            raise InvalidJob(f"invalid job payload: not JSON ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise InvalidJob(f"invalid job payload: expected a JSON object, got {type(data).__name__}")
    try:
        return RenderJob.model_validate(data)
    except ValidationError as error:
        raise InvalidJob(_describe(error)) from None
    except RecursionError:
        raise InvalidJob("invalid job payload: nested too deeply") from None
