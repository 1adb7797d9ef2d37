"""Google image generation on Vertex AI through the GAPIC `PredictionServiceClient` (REST).

Two routes, chosen by configuration: Gemini image models through `generateContent` (the
default; native 1K/2K/4K), and Imagen `:predict` (legacy: every Imagen generate model is being
shut down). An optional Imagen upscaler enlarges what the model could not make natively.
With the customer's mask, Gemini gets it as a second image with an instruction, and the Imagen
route calls its edit model (`imagen_edit.py`) instead of the generate model.
Model ids come from configuration only. The SDK is imported on first use, so importing this
module costs nothing."""

from __future__ import annotations

import base64
import io
import math
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from PIL import Image

from render_assets.providers import costs, edit_masks, errors, imagen_edit
from render_assets.providers.base import (
    ErrorKind,
    GeneratedImage,
    GenerationRequest,
    ProviderError,
    edit_prompt,
    image_media_type,
)
from render_assets.providers.decoding import decode_image
from render_assets.providers.fitting import covers, fit_exact, nearest_aspect
from render_assets.providers.reply_size import ReplyTooLarge, cap_requests_reply

if TYPE_CHECKING:
    from google.cloud.aiplatform_v1 import PredictionServiceClient

NAME = "google"
ROUTES = ("gemini", "imagen")
GEMINI_ASPECTS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
GEMINI_TIERS = {"1K": 1024, "2K": 2048, "4K": 4096}
IMAGEN_ASPECTS = ("1:1", "3:4", "4:3", "9:16", "16:9")
IMAGEN_1K = {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896), "9:16": (768, 1408), "16:9": (1408, 768)}
# With a mask, Gemini gets the photo, then the mask, then the text: the text names them so.
GEMINI_MASK_INSTRUCTION = (
    "The second image is a mask of the photo: it marks in white the only area to redesign. "
    "Everything in black must stay exactly as in the photo. Match the photo's light and perspective."
)
UPSCALER_MAX_PIXELS = 17_000_000  # the Imagen upscaler's documented output limit
MIN_UPSCALE_TIMEOUT_S = 1.0
MAX_SEED = 2**31 - 1  # both APIs take a signed 32-bit seed
# Finish reasons that mean "blocked" rather than "done" (names; unknown ones arrive as numbers).
BLOCKED_FINISH = frozenset(
    {"SAFETY", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "RECITATION", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT"}
)


class Native(NamedTuple):
    """What a route returns."""

    image: Image.Image
    facts: dict[str, Any]
    cost: float
    model: str  # the model that made it (the edit model, for an Imagen edit)


def gemini_native(aspect: str, tier: str) -> tuple[int, int]:
    """Expected output of a Gemini image model: about tier² pixels at the aspect, sides in 16s."""
    aw, ah = (int(side) for side in aspect.split(":"))
    area = GEMINI_TIERS[tier] ** 2
    width = math.sqrt(area * aw / ah)
    return round(width / 16) * 16, round(width * ah / aw / 16) * 16


def gemini_plan(width: int, height: int) -> tuple[str, str]:
    """(aspectRatio, imageSize): the nearest aspect, at the smallest tier that covers the request."""
    aspect = nearest_aspect(width, height, GEMINI_ASPECTS)
    tier = next((t for t in GEMINI_TIERS if covers(gemini_native(aspect, t), width, height)), "4K")
    return aspect, tier


def imagen_plan(width: int, height: int) -> tuple[str, str, tuple[int, int]]:
    """(aspectRatio, sampleImageSize, expected native size) for Imagen 4 (1K or 2K)."""
    aspect = nearest_aspect(width, height, IMAGEN_ASPECTS)
    one_k = IMAGEN_1K[aspect]
    if covers(one_k, width, height):
        return aspect, "1K", one_k
    return aspect, "2K", (one_k[0] * 2, one_k[1] * 2)


def endpoint_for(region: str) -> str:
    return "aiplatform.googleapis.com" if region == "global" else f"{region}-aiplatform.googleapis.com"


def _with_negative(request: GenerationRequest) -> str:
    # Neither route has a working negative-prompt field, so the exclusions go into the text.
    if not request.negative_prompt:
        return request.prompt
    return f"{request.prompt}\n\nAvoid: {request.negative_prompt}"


class GoogleImageProvider:
    """Vertex AI image generation; `generate` returns exactly the requested size."""

    name = NAME

    def __init__(
        self,
        *,
        project: str,
        region: str,
        model: str,
        route: str = "gemini",
        upscale_model: str | None = None,
        edit_model: str = "imagen-3.0-capability-001",
        api_endpoint: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        if not project:
            raise ValueError("the google provider needs GOOGLE_CLOUD_PROJECT")
        if not region:
            raise ValueError("the google provider needs GOOGLE_CLOUD_REGION")
        if not model:
            raise ValueError("the google provider needs GOOGLE_IMAGE_MODEL")
        if route not in ROUTES:
            raise ValueError(f"GOOGLE_IMAGE_ROUTE={route!r} is not one of {', '.join(ROUTES)}")
        self.project, self.region, self.model, self.route = project, region, model, route
        self.upscale_model = upscale_model or None
        self.edit_model = edit_model
        self.api_endpoint = api_endpoint or endpoint_for(region)
        self.timeout_s = timeout_s
        self._client: PredictionServiceClient | None = None

    def _model_path(self, model: str) -> str:
        return f"projects/{self.project}/locations/{self.region}/publishers/google/models/{model}"

    def client(self) -> PredictionServiceClient:
        if self._client is None:
            from google.cloud.aiplatform_v1 import PredictionServiceClient

            credentials = None  # the standard sources: GOOGLE_APPLICATION_CREDENTIALS, workload identity
            if self.api_endpoint.startswith("http://"):
                # A plain-HTTP endpoint is a local fake or emulator: nothing to authenticate to.
                from google.auth.credentials import AnonymousCredentials

                credentials = AnonymousCredentials()
            self._client = PredictionServiceClient(
                transport="rest",  # plain HTTPS/JSON: no gRPC channel to keep, and fakes can speak it
                client_options={"api_endpoint": self.api_endpoint},
                credentials=credentials,
            )
            # The REST transport reads every reply whole; this hook stops it at our cap (its
            # requests session is reachable no other way).
            session = self._client.transport._session  # type: ignore[attr-defined]
            session.hooks["response"].append(cap_requests_reply)
        return self._client

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        start = time.monotonic()
        mask = edit_masks.read_mask(NAME, request)  # a wrong mask fails before anything else
        self._call(self.client)  # the SDK's first import takes a moment: before our timeout starts
        # The whole call, upscaler included, ends within our timeout and the job's deadline.
        deadline = time.monotonic() + self.timeout_s
        if request.deadline is not None:
            deadline = min(deadline, request.deadline)
        seed = request.seed % MAX_SEED
        if self.route == "gemini":
            native = self._gemini(request, mask, seed, _time_left(deadline))
        elif mask is not None:
            native = self._imagen_edit(request, mask, seed, _time_left(deadline))
        else:
            native = self._imagen(request, seed, _time_left(deadline))
        cost = native.cost
        upscaler = None
        if self.upscale_model:

            def upscaler(image: Image.Image, factor: int) -> Image.Image:
                return self._upscale(image, factor, deadline)

        fitted = fit_exact(
            native.image,
            request.width,
            request.height,
            upscaler=upscaler,
            upscaler_name=f"google:{self.upscale_model}",
            upscaler_max_pixels=UPSCALER_MAX_PIXELS,
        )
        if fitted.method.startswith("google:"):
            cost += costs.IMAGEN_UPSCALE
        return GeneratedImage(
            image=fitted.image,
            provider=self.name,
            model=native.model,
            latency_s=time.monotonic() - start,
            cost_estimate_usd=round(cost, 4),
            facts={"route": self.route, **native.facts, **fitted.facts},
            seed=seed,
            native_size=fitted.native_size,
            upscale_method=fitted.method,
        )

    # ---- the routes ---------------------------------------------------------------------------------

    def _gemini(self, request: GenerationRequest, mask: Image.Image | None, seed: int, timeout: float) -> Native:
        from google.cloud.aiplatform_v1 import types

        canvas = (request.width, request.height)
        if mask is not None:  # ask at the photo's aspect, so the edit lies on the photo
            canvas = edit_masks.edit_canvas(mask.size, request.width, request.height)
        aspect, tier = gemini_plan(*canvas)
        parts = [types.Part(text=_with_negative(request))]
        if request.reference_image is not None:
            # Image editing: the customer's photo first (then the mask), then what to make of it.
            photo = types.Blob(mime_type=image_media_type(request.reference_image), data=request.reference_image)
            parts = [types.Part(inline_data=photo)]
            area = None
            if mask is not None:
                parts.append(types.Part(inline_data=types.Blob(mime_type="image/png", data=edit_masks.png(mask))))
                area = GEMINI_MASK_INSTRUCTION
            parts.append(types.Part(text=edit_prompt(_with_negative(request), area=area)))
        call = types.GenerateContentRequest(
            model=self._model_path(self.model),
            contents=[types.Content(role="user", parts=parts)],
            generation_config=types.GenerationConfig(
                response_modalities=[types.GenerationConfig.Modality.IMAGE],
                candidate_count=1,
                seed=seed,
                image_config=types.ImageConfig(aspect_ratio=aspect, image_size=tier),
            ),
        )
        response = self._call(lambda: self.client().generate_content(request=call, timeout=timeout, retry=None))
        image_bytes, mime_type = None, None
        reasons: list[str] = []
        block = response.prompt_feedback.block_reason if "prompt_feedback" in response else 0
        if block:
            reasons.append(f"prompt blocked ({_enum_name(block)}) {response.prompt_feedback.block_reason_message}")
        for candidate in response.candidates:
            for part in candidate.content.parts:
                if "inline_data" in part and part.inline_data.data:
                    image_bytes, mime_type = part.inline_data.data, part.inline_data.mime_type or None
                    break
            if image_bytes is not None:
                break
            finish = _enum_name(candidate.finish_reason)
            done = finish in ("STOP", "FINISH_REASON_UNSPECIFIED") and not candidate.finish_message
            if finish in BLOCKED_FINISH or not done:
                # A reason newer than the installed SDK arrives as UNSPECIFIED (or a bare number).
                label = "blocked" if finish == "FINISH_REASON_UNSPECIFIED" else finish
                reasons.append(f"{label}: {candidate.finish_message or 'no image'}")
        if image_bytes is None:
            if reasons or response.candidates:
                raise errors.refused(NAME, errors.short("; ".join(reasons) or "the model returned no image"))
            raise errors.malformed(NAME, "no candidates")
        image = decode_image(NAME, image_bytes, mime_type=mime_type)
        facts = {
            "aspect_ratio": aspect,
            "image_size": tier,
            "reference_image": _reference_use(request, "edited"),
            "mask": "none" if mask is None else "instructed",  # no mask field: the model reads the instruction
        }
        return Native(image, facts, costs.gemini_image(self.model, tier), self.model)

    def _imagen(self, request: GenerationRequest, seed: int, timeout: float) -> Native:
        aspect, size, _ = imagen_plan(request.width, request.height)
        parameters = {
            "sampleCount": 1,
            "aspectRatio": aspect,
            "sampleImageSize": size,
            "seed": seed,
            "addWatermark": False,  # a seed is only honoured without the watermark
            "includeRaiReason": True,
            "outputOptions": {"mimeType": "image/png"},
        }
        predictions = self._predict(self.model, [{"prompt": _with_negative(request)}], parameters, timeout)
        image = _predicted_image(predictions)
        # Imagen generate models take no input image: the render is text-to-image.
        facts = {
            "aspect_ratio": aspect,
            "image_size": size,
            "reference_image": _reference_use(request, "ignored"),
            "mask": "none",
        }
        return Native(image, facts, costs.imagen(self.model), self.model)

    def _imagen_edit(self, request: GenerationRequest, mask: Image.Image, seed: int, timeout: float) -> Native:
        """The edit model inpaints the photo inside the mask; its output has the photo's size."""
        assert request.reference_image is not None  # read_mask refuses a mask without its photo
        instances = imagen_edit.instances(request.prompt, request.reference_image, edit_masks.png(mask))
        parameters = imagen_edit.parameters(seed, request.negative_prompt)
        image = _predicted_image(self._predict(self.edit_model, instances, parameters, timeout))
        facts = {"edit_mode": imagen_edit.EDIT_MODE, "reference_image": "edited", "mask": "inpainted"}
        return Native(image, facts, costs.imagen(self.edit_model), self.edit_model)

    def _upscale(self, image: Image.Image, factor: int, deadline: float) -> Image.Image:
        remaining = deadline - time.monotonic()
        if remaining < MIN_UPSCALE_TIMEOUT_S:
            raise TimeoutError("no time left for the upscaler")
        assert self.upscale_model is not None
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=95)  # the upscaler takes at most 10 MB of input
        instance = {"prompt": "", "image": {"bytesBase64Encoded": base64.b64encode(buffer.getvalue()).decode()}}
        parameters = {
            "mode": "upscale",
            "upscaleConfig": {"upscaleFactor": f"x{factor}"},
            "sampleCount": 1,
            "addWatermark": False,
            "outputOptions": {"mimeType": "image/png"},
        }
        predictions = self._predict(self.upscale_model, [instance], parameters, remaining)
        found = next((p for p in predictions if p.get("bytesBase64Encoded")), None)
        if found is None:
            raise errors.malformed(NAME, "the upscaler returned no image")
        return decode_image(NAME, found["bytesBase64Encoded"], mime_type=str(found.get("mimeType") or "image/png"))

    def _predict(
        self, model: str, instances: list[dict[str, Any]], parameters: dict[str, Any], timeout: float
    ) -> list[dict[str, Any]]:
        from google.protobuf import json_format

        response = self._call(
            lambda: self.client().predict(
                endpoint=self._model_path(model),
                instances=instances,
                parameters=parameters,
                timeout=timeout,
                retry=None,  # predict has no default retry; ours (failover + budget) is the only one
            )
        )
        body = json_format.MessageToDict(response._pb)
        predictions = body.get("predictions") or []
        if not isinstance(predictions, list):
            raise errors.malformed(NAME, "predictions is not a list")
        return [p for p in predictions if isinstance(p, dict)]

    def _call(self, call: Any) -> Any:
        """Run one SDK call; every failure comes out as a classified ProviderError."""
        import requests
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exceptions
        from google.protobuf import json_format

        try:
            return call()
        except auth_exceptions.GoogleAuthError as error:  # no usable credentials in this environment
            raise ProviderError(
                f"credentials unavailable ({type(error).__name__})", provider=NAME, kind=ErrorKind.AUTH
            ) from None
        except gexc.GoogleAPICallError as error:
            raise _from_api_error(error) from None
        except ReplyTooLarge as error:  # a 200 we cannot use: it may have billed
            raise errors.malformed(NAME, str(error)) from None
        except requests.exceptions.ConnectTimeout:
            raise errors.timed_out(NAME, after_send=False) from None
        except requests.exceptions.Timeout:
            raise errors.timed_out(NAME, after_send=True) from None
        except requests.exceptions.ConnectionError as error:
            raise errors.unreachable(NAME, error) from None
        except (json_format.ParseError, ValueError) as error:
            # A 200 whose body is not the documented JSON.
            raise errors.malformed(NAME, type(error).__name__) from None


def _predicted_image(predictions: list[dict[str, Any]]) -> Image.Image:
    """The first image of a `:predict` reply; refused when every image was filtered out."""
    filtered = []
    for prediction in predictions:
        if prediction.get("bytesBase64Encoded"):
            declared = str(prediction.get("mimeType") or "image/png")  # else what outputOptions asked
            return decode_image(NAME, prediction["bytesBase64Encoded"], mime_type=declared)
        if prediction.get("raiFilteredReason"):
            filtered.append(str(prediction["raiFilteredReason"]))
    # A fully filtered reply is HTTP 200 with no predictions (or only reasons), not an error.
    raise errors.refused(NAME, errors.short("; ".join(filtered) or "every image was filtered out"))


def _reference_use(request: GenerationRequest, use: str) -> str:
    return "none" if request.reference_image is None else use


def _time_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise errors.timed_out(NAME, after_send=False)
    return left


def _enum_name(value: Any) -> str:
    return getattr(value, "name", None) or str(value)


def _from_api_error(error: Any) -> ProviderError:
    response = getattr(error, "response", None)
    status_text, message = None, str(getattr(error, "message", "") or "")
    headers = dict(response.headers) if response is not None and hasattr(response, "headers") else None
    if response is not None:
        try:
            payload = response.json().get("error", {})
            status_text, message = payload.get("status"), str(payload.get("message") or message)
        except (ValueError, AttributeError):
            pass
    return errors.from_http(NAME, getattr(error, "code", None), code=status_text, message=message, headers=headers)
