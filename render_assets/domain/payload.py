"""The BullMQ job payload the web app sends, validated strictly.

The model mirrors the web app's `RenderJobData` field for field, so its jobs are accepted as
they are; anything else (unknown fields, wrong types, out-of-range values) is rejected with a
reason that names the field and never echoes the value (it may hold a user's prompt).

Annotations hold any storable JSON as `data`, except masks, whose `data` is exactly one of:

- `{"maskId": "m1"}`: a reference to the uploaded mask image, `maskImageUrl` (what the web app
  sends today);
- `{"shape": "rectangle", "x": .., "y": .., "width": .., "height": ..}`: width and height above
  0, x + width and y + height at most 1;
- `{"shape": "polygon", "points": [{"x": .., "y": ..}, ...]}`: 3 to 256 points, filled as
  Pillow fills polygons (a self-crossing outline by the even-odd rule).

Coordinates are finite fractions of the photo's width (x) and height (y), 0 to 1 inclusive,
from its top-left corner; a shape may also carry a `maskId`. The mask is the union of the
shapes, or the image: a job with `maskImageUrl` and shapes is refused, since neither could win
without silently dropping what the customer drew. A `{"maskId"}` annotation without
`maskImageUrl` refers to nothing and marks nothing.
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
    PrivateAttr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_ANNOTATIONS = 500
MAX_USER_PROMPT_CHARS = 2_000
MAX_SYSTEM_PROMPT_CHARS = 4_000
MAX_URL_CHARS = 2_048
MIN_SIDE, MAX_SIDE = 256, 4096
MAX_ANNOTATION_DEPTH = 64  # nested arrays/objects in one annotation's data
MIN_POLYGON_POINTS, MAX_POLYGON_POINTS = 3, 256
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


def _refusal(location: tuple[str | int, ...], message: str) -> ValidationError:
    """A refusal at `location` (relative to where it is raised), for checks pydantic cannot place."""
    error = InitErrorDetails(type=PydanticCustomError("refused", message), loc=location, input=None)
    return ValidationError.from_exception_data("RenderJob", [error])


def _fraction(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


# A fraction of the photo's width or height; strict floats take JSON integers (0, 1), not booleans.
Fraction = Annotated[float, AfterValidator(_fraction)]


class MaskReference(_Strict):
    """The uploaded mask image (`maskImageUrl`), by the id the web app gave it."""

    maskId: Identifier


class Point(_Strict):
    x: Fraction
    y: Fraction


class RectangleMask(_Strict):
    shape: Literal["rectangle"]
    x: Fraction
    y: Fraction
    width: Fraction
    height: Fraction
    maskId: Identifier | None = None

    @field_validator("width", "height")
    @classmethod
    def _not_empty(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be above 0")
        return value

    def contains(self, x: float, y: float) -> bool:
        return self.x <= x <= self.x + self.width and self.y <= y <= self.y + self.height

    @model_validator(mode="after")
    def _inside_the_photo(self) -> RectangleMask:
        # Not clipped: a shape past the edge is a client bug, and clipping would hide it.
        if self.x + self.width > 1:
            raise _refusal(("width",), "x + width must be at most 1")
        if self.y + self.height > 1:
            raise _refusal(("height",), "y + height must be at most 1")
        return self


class PolygonMask(_Strict):
    shape: Literal["polygon"]
    points: Annotated[list[Point], Field(min_length=MIN_POLYGON_POINTS, max_length=MAX_POLYGON_POINTS)]
    maskId: Identifier | None = None

    def contains(self, x: float, y: float) -> bool:
        """Even-odd rule, as the mask is drawn (`domain/masks.py`)."""
        inside = False
        for a, b in zip(self.points, [*self.points[1:], self.points[0]], strict=True):
            if (a.y > y) != (b.y > y) and x < a.x + (y - a.y) * (b.x - a.x) / (b.y - a.y):
                inside = not inside
        return inside


MaskShape = RectangleMask | PolygonMask
MaskData = MaskReference | MaskShape
_SHAPES: dict[str, TypeAdapter[Any]] = {
    "rectangle": TypeAdapter(RectangleMask),
    "polygon": TypeAdapter(PolygonMask),
}
_REFERENCE = TypeAdapter(MaskReference)


def _mask_data(value: Any) -> MaskData:
    """A mask annotation's data as its model; ValidationError locates the problem inside `data`.

    Dispatched by hand rather than as a tagged union, whose errors would carry the tag in their
    location (`data.rectangle.x`)."""
    if value is None:
        raise ValueError('a mask needs data: {"maskId"}, a rectangle or a polygon')
    if not isinstance(value, dict):
        raise ValueError('must be an object: {"maskId"}, a rectangle or a polygon')
    if "shape" not in value:
        return _REFERENCE.validate_python(value)
    shape = value["shape"]
    if not isinstance(shape, str) or shape not in _SHAPES:
        raise _refusal(("shape",), 'must be "rectangle" or "polygon"')
    return _SHAPES[shape].validate_python(value)


def _annotation_data(value: Any, info: ValidationInfo) -> Any:
    if info.data.get("type") == "mask":
        _mask_data(value)  # its bounded models need none of the generic depth and storability checks
        return value
    return _storable_json(value)


class Annotation(_Strict):
    type: Literal["mask", "assetInstance", "textLabel"]
    # validate_default: a mask without data is refused, not left as None.
    data: Annotated[JsonValue, BeforeValidator(_annotation_data)] = Field(default=None, validate_default=True)
    _mask: MaskData | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _keep_the_mask(self) -> Annotation:
        # `data` stays the JSON it came as (dumps compare equal to the input); the typed mask rides along.
        if self.type == "mask":
            self._mask = _mask_data(self.data)
        return self

    @property
    def mask(self) -> MaskData | None:
        """A mask annotation's data, typed; None for other annotations."""
        return self._mask


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

    @model_validator(mode="after")
    def _one_mask_source(self) -> RenderJob:
        if self.maskImageUrl is not None and self.mask_shapes():
            raise _refusal(
                ("maskImageUrl",), "give the mask as maskImageUrl or as mask shapes in annotations, not both"
            )
        return self

    def mask_shapes(self) -> tuple[MaskShape, ...]:
        """The shapes drawn in mask annotations, in order; their union is the area to redesign."""
        return tuple(
            mask for annotation in self.annotations if isinstance(mask := annotation.mask, RectangleMask | PolygonMask)
        )

    def has_mask(self) -> bool:
        """Whether the job limits the redesign to a marked area (an uploaded mask or drawn shapes)."""
        return self.maskImageUrl is not None or bool(self.mask_shapes())


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
