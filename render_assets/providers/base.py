"""The provider interface: what every image generator takes and gives back."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

# Re-exported for providers/local.py only: raw_render's code version digests that module's source,
# imports included, so importing it from its new home would mark every local render stale.
from render_assets.domain.scene import SceneElement as SceneElement


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    negative_prompt: str
    width: int
    height: int
    seed: int
    quality: int | None = None
    elements: tuple[SceneElement, ...] = ()
    # time.monotonic() by which the call must have returned: the job's deadline, set by the
    # failover. Each provider waits at most its own timeout, and never past this.
    deadline: float | None = None
    # The customer's photo of the site (JPEG or PNG bytes): providers that edit images redesign
    # it; the others record that they ignored it.
    reference_image: bytes | None = field(default=None, repr=False)
    # The area of the photo to redesign: a PNG, mode "L", exactly the size of `reference_image`;
    # white (255) = redesign, black (0) = keep (values of 128 and above count as white). Set only
    # together with `reference_image`. Providers with a mask route edit inside it only
    # (`facts["mask"]` says how: inpainted, instructed, painted, ignored or none).
    mask: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mask is not None and self.reference_image is None:
            raise ValueError("a mask marks an area of the photo: it needs reference_image")


# Put before the design prompt when the provider edits the customer's photo.
EDIT_INSTRUCTION = (
    "Redesign the garden in the attached photo of the customer's property. Keep the viewpoint, "
    "the buildings, the boundaries and the lighting of the photo; change only the landscaping, "
    "as described below."
)


def edit_prompt(prompt: str, *, area: str | None = None) -> str:
    """The design prompt behind the edit instruction; `area` says, in the provider's own terms,
    which part of the photo to change (a mask)."""
    instruction = f"{EDIT_INSTRUCTION} {area}" if area else EDIT_INSTRUCTION
    return f"{instruction}\n\n{prompt}"


def image_media_type(data: bytes) -> str:
    """The media type of PNG, JPEG or WEBP bytes, from their signature."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"


@dataclass
class GeneratedImage:
    """An image of exactly the requested size, and how it was made."""

    image: Image.Image
    provider: str
    model: str
    latency_s: float
    cost_estimate_usd: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None  # the seed the provider honoured; None when it takes none
    native_size: tuple[int, int] | None = None  # what the provider returned, before crop and resample
    upscale_method: str = "none"  # how the native image became the requested size
    attempts: int = 1  # provider calls this job made, failed ones included
    failovers: int = 0  # times the job moved on to another provider


class ErrorKind(enum.Enum):
    """What a failure means for the next step."""

    TRANSIENT = "transient"  # rate limit, 5xx, timeout, connection, malformed reply: retry or fail over
    REFUSED = "refused"  # content refusal or fully filtered output: the other provider once, then fail
    INVALID = "invalid"  # the request itself is wrong (or the model is gone): fail fast
    AUTH = "auth"  # credentials rejected: fail fast and alert


class ProviderError(Exception):
    """A provider could not deliver. `transient` says whether a retry may help.

    `kind` refines that; `may_have_billed` marks failures after which the provider may have
    generated (and billed) an image anyway (a read timeout, a malformed 200 reply), so the same
    job must not call that provider again. `retry_after_s` is the provider's own hint.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        transient: bool | None = None,
        kind: ErrorKind | None = None,
        retry_after_s: float | None = None,
        may_have_billed: bool = False,
        filtered_reason: str | None = None,
    ) -> None:
        super().__init__(message)
        if kind is None:
            kind = ErrorKind.TRANSIENT if transient else ErrorKind.INVALID
        self.provider = provider
        self.kind = kind
        self.transient = kind is ErrorKind.TRANSIENT
        self.retry_after_s = retry_after_s
        self.may_have_billed = may_have_billed
        self.filtered_reason = filtered_reason


class ImageProvider(Protocol):
    name: str

    def generate(self, request: GenerationRequest) -> GeneratedImage: ...
