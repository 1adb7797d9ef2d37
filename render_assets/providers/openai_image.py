"""OpenAI Images (`POST /v1/images/generations`, or `/v1/images/edits` with the customer's
photo, and the customer's mask when there is one) through the official `openai` client.

GPT image models take any WxH with sides divisible by 16, aspect 1:3 to 3:1, at most
3840x2160, and always answer base64. The SDK's own retries are off: a retry after a read
timeout can bill twice, so retries are the failover's decision. Imported on first use."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Literal

from render_assets.providers import costs, edit_masks, errors
from render_assets.providers.base import (
    GeneratedImage,
    GenerationRequest,
    ProviderError,
    edit_prompt,
    image_media_type,
)
from render_assets.providers.decoding import decode_image
from render_assets.providers.fitting import fit_exact
from render_assets.providers.reply_size import ReplyTooLarge, cap_httpx_reply

if TYPE_CHECKING:
    from openai import OpenAI

NAME = "openai"
MAX_PIXELS = 3840 * 2160
MAX_EDGE = 3840
MIN_PIXELS = 1024 * 1024  # smaller requests are generated at about 1 MP and scaled down
MAX_ASPECT = 3.0
CONNECT_TIMEOUT_S = 5.0


def native_size(width: int, height: int) -> tuple[int, int]:
    """The size to ask for: the request's aspect (clamped to 1:3..3:1), within the pixel and
    edge limits, sides in multiples of 16."""
    aspect = min(max(width / height, 1 / MAX_ASPECT), MAX_ASPECT)
    pixels = min(max(width * height, MIN_PIXELS), MAX_PIXELS)
    w = math.sqrt(pixels * aspect)
    h = w / aspect
    scale = min(1.0, MAX_EDGE / max(w, h))
    side_w, side_h = max(16, int(w * scale // 16) * 16), max(16, int(h * scale // 16) * 16)
    # Rounding each side down on its own can push a 3:1 request past the limit: trim the long side.
    side_w = min(side_w, int(side_h * MAX_ASPECT // 16) * 16)
    side_h = min(side_h, int(side_w * MAX_ASPECT // 16) * 16)
    return side_w, side_h


Quality = Literal["low", "medium", "high"]


def quality_tier(quality: int | None) -> Quality:
    """The job's 1-100 quality as the API's low | medium | high."""
    if quality is None:
        return "medium"
    return "low" if quality <= 40 else "medium" if quality <= 75 else "high"


OPENAI_API_URL = "https://api.openai.com/v1"  # the SDK's default base URL
# With a mask: images.edit edits where the mask is fully transparent (the SDK's docstring for
# `mask`: "fully transparent areas (e.g. where alpha is zero) indicate where `image` should be
# edited"), and the prompt says so too.
MASK_INSTRUCTION = (
    "Change only the area the mask leaves transparent, which the customer marked; everything the "
    "mask covers must stay exactly as in the photo. Match the photo's light and perspective."
)


class OpenAIImageProvider:
    """OpenAI image generation; `generate` returns exactly the requested size."""

    name = NAME

    def __init__(self, *, api_key: str, model: str, base_url: str | None = None, timeout_s: float = 90.0) -> None:
        if not api_key:
            raise ValueError("the openai provider needs OPENAI_API_KEY")
        if not model:
            raise ValueError("the openai provider needs OPENAI_IMAGE_MODEL")
        self._api_key = api_key
        self.model = model
        self.base_url = base_url or None
        self.timeout_s = timeout_s
        self._client: OpenAI | None = None

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIImageProvider(model={self.model!r}, base_url={self.base_url!r})"

    def client(self) -> OpenAI:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                api_key=self._api_key,
                # Explicit: given None the SDK reads OPENAI_BASE_URL itself, and a deployment that
                # sets every variable (empty meaning "the default", deploy/docker) sets it to "".
                base_url=self.base_url or OPENAI_API_URL,
                max_retries=0,
                timeout=self.timeout_s,
                # The SDK's own defaults, plus a hook that stops reading a reply at our cap.
                http_client=openai.DefaultHttpxClient(event_hooks={"response": [cap_httpx_reply]}),
            )
        return self._client

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        start = time.monotonic()
        mask = edit_masks.read_mask(NAME, request)  # a wrong mask fails before anything else
        self.client()  # the SDK's first import takes a moment: before the clock matters
        timeout = self.timeout_s
        if request.deadline is not None:  # never wait past the job's deadline
            timeout = min(timeout, request.deadline - time.monotonic())
        if timeout <= 0:
            raise errors.timed_out(NAME, after_send=False)
        canvas = (request.width, request.height)
        if mask is not None:  # ask at the photo's aspect, so the edit lies on the photo
            canvas = edit_masks.edit_canvas(mask.size, request.width, request.height)
        width, height = native_size(*canvas)
        quality = quality_tier(request.quality)
        prompt = request.prompt
        if request.negative_prompt:  # no negative-prompt field: the exclusions go into the text
            prompt = f"{prompt}\n\nAvoid: {request.negative_prompt}"
        reference = request.reference_image
        if reference is not None:
            # Image editing: GPT image models redesign the customer's photo (/v1/images/edits).
            # They take it as PNG, WEBP or JPEG; only the mask must be a PNG, of the photo's size.
            media_type = image_media_type(reference)
            photo = (f"site.{media_type.removeprefix('image/')}", reference, media_type)
            masked: dict[str, Any] = {}
            if mask is not None:
                masked["mask"] = ("mask.png", edit_masks.transparent_where_marked(mask), "image/png")
            area = MASK_INSTRUCTION if mask is not None else None
            response = self._call(
                lambda: self.client().images.edit(
                    model=self.model,
                    image=photo,
                    prompt=edit_prompt(prompt, area=area),
                    **masked,
                    n=1,
                    size=f"{width}x{height}",
                    quality=quality,
                    output_format="png",
                    timeout=self._timeout(timeout),
                )
            )
        else:
            response = self._call(
                lambda: self.client().images.generate(
                    model=self.model,
                    prompt=prompt,
                    n=1,
                    size=f"{width}x{height}",
                    quality=quality,
                    output_format="png",
                    timeout=self._timeout(timeout),
                )
            )
        data = getattr(response, "data", None) or []
        encoded = getattr(data[0], "b64_json", None) if data else None
        if not encoded:
            raise errors.malformed(NAME, "no image in data[]")
        native = decode_image(NAME, encoded, mime_type="image/png")  # the output_format asked for
        fitted = fit_exact(native, request.width, request.height)
        facts: dict[str, Any] = {"size": f"{width}x{height}", "quality": quality, **fitted.facts}
        facts["reference_image"] = "none" if reference is None else "edited"
        facts["mask"] = "none" if mask is None else "inpainted"
        usage = getattr(response, "usage", None)
        if usage is not None and getattr(usage, "total_tokens", None) is not None:
            facts["total_tokens"] = usage.total_tokens
        return GeneratedImage(
            image=fitted.image,
            provider=self.name,
            model=self.model,
            latency_s=time.monotonic() - start,
            cost_estimate_usd=costs.openai_image(quality, width, height),
            facts=facts,
            seed=None,  # the Images API takes no seed
            native_size=fitted.native_size,
            upscale_method=fitted.method,
        )

    def _timeout(self, seconds: float) -> Any:
        import openai

        return openai.Timeout(seconds, connect=min(CONNECT_TIMEOUT_S, seconds))

    def _call(self, call: Any) -> Any:
        """Run one SDK call; every failure comes out as a classified ProviderError."""
        import openai

        try:
            return call()
        except ReplyTooLarge as error:  # a 200 we cannot use: it may have billed
            raise errors.malformed(NAME, str(error)) from None
        except openai.APITimeoutError as error:
            connect = type(error.__cause__).__name__ in {"ConnectTimeout", "PoolTimeout"}
            raise errors.timed_out(NAME, after_send=not connect) from None
        except openai.APIConnectionError as error:
            raise errors.unreachable(NAME, error) from None
        except openai.APIStatusError as error:
            raise _from_status_error(error, self._api_key) from None
        except openai.APIResponseValidationError:
            raise errors.malformed(NAME, "the reply does not match the Images API schema") from None
        except ValueError as error:  # a 200 whose body is not JSON
            raise errors.malformed(NAME, type(error).__name__) from None


def _from_status_error(error: Any, api_key: str) -> ProviderError:
    body = error.body if isinstance(error.body, dict) else {}
    detail = body.get("error", body) if isinstance(body.get("error", body), dict) else {}
    message = str(detail.get("message") or error.message or "")
    headers = dict(error.response.headers) if getattr(error, "response", None) is not None else None
    return errors.from_http(
        NAME,
        error.status_code,
        code=error.code or detail.get("code"),
        message=message,
        headers=headers,
        secrets=(api_key,),
    )
