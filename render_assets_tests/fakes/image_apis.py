"""A local fake of the Vertex AI prediction REST API (Imagen `:predict`, the Imagen upscaler and
Gemini `:generateContent`) and of the OpenAI Images API (generations; edits as multipart/form-data,
whose files are recorded), for the real SDK clients.

Replies use the documented JSON shapes with base64 image payloads. Faults are injected per
endpoint (`openai`, `gemini`, `imagen`, `upscale`): 429 storms with Retry-After, 500/503, slow
replies, content refusals (OpenAI 400 moderation_blocked, Imagen's fully filtered HTTP 200 `{}`,
Gemini's finishReason IMAGE_SAFETY), malformed bodies, rejected credentials, invalid requests,
poisoned images (`fail(endpoint, "poison", poison=name)`, names from `poisons.py`).
Every request is recorded; calls and billed generations are counted per endpoint.

Edits are checked as the APIs check them and recorded as read (`inputs` of a recorded request,
see `edit_inputs.py`): OpenAI's `/images/edits` mask must be a PNG with an alpha channel of the
image's size (else 400); Gemini's inline images are listed (MIME type, size) in order; an Imagen
`:predict` with `referenceImages` (the capability models' edit) needs a raw image and a
user-provided mask of its size (else 400). `mask_behaviour` ("respect", the default, or "ignore")
decides whether an edit repaints only the marked area or everything.

Each endpoint draws its own recognisable picture (colour blocks over a gradient), so a test can
tell which provider's image was delivered and that it is not blank."""

from __future__ import annotations

import base64
import contextlib
import email.policy
import functools
import gzip
import io
import json
import math
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

from render_assets.providers.reply_size import MAX_REPLY_BYTES
from render_assets_tests.fakes import edit_inputs
from render_assets_tests.fakes.edit_inputs import decode, describe
from render_assets_tests.fakes.poisons import oversize_image_b64, poison

ENDPOINTS = ("openai", "gemini", "imagen", "upscale")
COLOURS = {"openai": (40, 120, 200), "gemini": (200, 80, 40), "imagen": (60, 160, 70)}
IMAGEN_1K = {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896), "9:16": (768, 1408), "16:9": (1408, 768)}
GEMINI_ASPECTS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
GEMINI_TIERS = {"1K": 1024, "2K": 2048, "4K": 4096}
OPENAI_MAX_PIXELS = 3840 * 2160
# Imagen capability edit modes (the REST reference's EditMode enum).
IMAGEN_EDIT_MODES = (
    "EDIT_MODE_DEFAULT",
    "EDIT_MODE_INPAINT_REMOVAL",
    "EDIT_MODE_INPAINT_INSERTION",
    "EDIT_MODE_OUTPAINT",
    "EDIT_MODE_CONTROLLED_EDITING",
    "EDIT_MODE_STYLE",
    "EDIT_MODE_BGSWAP",
    "EDIT_MODE_PRODUCT_IMAGE",
)
IMAGEN_FILTERED = (
    "Unable to show generated images. All images were filtered out because they violated Vertex AI's usage "
    "guidelines. You will not be charged for blocked images. Try rephrasing the prompt. Support codes: 29310472"
)
_ROUTE = re.compile(r"^/(v1|v1beta1)/projects/[^/]+/locations/[^/]+/publishers/google/models/([^/:?]+):(\w+)")


@dataclass
class Fault:
    # rate_limit | quota | server_error | slow | refuse | filtered | filtered_reason | malformed | malformed_image
    # | auth | invalid | echo (a 400 quoting the prompt and the key back)
    kind: str
    status: int | None = None
    retry_after: str | None = None
    delay_s: float = 0.0
    times: int | None = None  # None: every call from now on
    poison: str = ""  # kind "poison": a billed 200 carrying fakes/poisons.py's `poison(name)`


def picture(width: int, height: int, colour: tuple[int, int, int], variant: int = 0) -> Image.Image:
    """A gradient in `colour` with four contrasting blocks, a disc and a paving texture: never
    blank, detailed enough for QA, easy to compare. `variant` moves the blocks, so successive
    generations differ (QA refuses near-duplicates of an organization's earlier renders).

    Drawn at most 512 px wide and enlarged, so a 4K picture costs milliseconds."""
    scale = min(1.0, 512 / max(width, height))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    xs = np.arange(w, dtype=np.float32)[None, :] / w
    ys = np.arange(h, dtype=np.float32)[:, None] / h
    shade = (0.55 + 0.45 * xs) * (0.7 + 0.3 * ys)
    arr = shade[..., None] * np.array(colour, np.float32)
    # Paving in the lower half: 4 px cells at the 512 px scale QA measures on.
    cells = ((np.arange(w)[None, :] // 4 + np.arange(h)[:, None] // 4) % 2).astype(np.float32)
    arr += ((cells - 0.5) * 50 * (ys > 0.5))[..., None]
    rng = np.random.default_rng(variant)
    for i in range(4):
        fx, fy = rng.uniform(0.02, 0.7, size=2) if variant else ((0.1, 0.1), (0.6, 0.15), (0.15, 0.6), (0.65, 0.65))[i]
        x0, y0 = int(fx * w), int(fy * h)
        arr[y0 : y0 + h // 4, x0 : x0 + w // 4] = [(colour[(i + k) % 3] + 90 * k) % 256 for k in range(3)]
    disc = (xs - 0.5) ** 2 * w**2 + (ys - 0.5) ** 2 * h**2 < (min(w, h) / 6) ** 2
    arr[disc] = [250, 245, 235]
    small = Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")
    return small if (w, h) == (width, height) else small.resize((width, height), Image.Resampling.BILINEAR)


def form_data(content_type: str, raw: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A multipart/form-data body as (text fields, file fields), read with the stdlib's MIME parser."""
    message = BytesParser(policy=email.policy.HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_content() if part.get_filename() is None else part.get_payload(decode=True)
        if isinstance(payload, bytes):
            files[str(name)] = payload
        else:
            fields[str(name)] = str(payload)
    return fields, files


def png_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode()


@functools.lru_cache(maxsize=16)
def encoded_picture(width: int, height: int, colour: tuple[int, int, int], variant: int) -> tuple[Image.Image, str]:
    """The picture and its base64 PNG, cached: a 4K PNG takes a second to encode."""
    image = picture(width, height, colour, variant)
    return image, png_b64(image)


def poison_reply(endpoint: str, name: str) -> bytes:
    """A 200 body of `endpoint` carrying poison `name`, in that endpoint's JSON shape."""
    item = poison(name)
    if name == "oversize_image":
        data = oversize_image_b64().encode()  # past the decoder's cap, within the HTTP cap
    elif name.startswith("oversize_reply"):
        data = b"A" * (MAX_REPLY_BYTES + 1024)  # past the HTTP cap
    else:
        data = base64.b64encode(item.data)
    if endpoint == "openai":  # no type per image: the reply echoes the output_format asked for
        fmt = item.mime_type.removeprefix("image/")
        envelope: dict[str, Any] = {"created": 1, "output_format": fmt, "data": [{"b64_json": "@"}]}
    elif endpoint == "gemini":
        part = {"inlineData": {"mimeType": item.mime_type, "data": "@"}}
        envelope = {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP"}]}
    else:
        envelope = {"predictions": [{"mimeType": item.mime_type, "bytesBase64Encoded": "@"}]}
    # Spliced rather than serialized: json.dumps of 90 MB of base64 takes a while.
    before, after = json.dumps(envelope).encode().split(b'"@"')
    return before + b'"' + data + b'"' + after


@functools.lru_cache(maxsize=4)
def gzipped_poison_reply(endpoint: str) -> bytes:
    """An oversize reply gzip-compressed to 0.4 MB (compressing it takes 0.7 s: built once)."""
    return gzip.compress(poison_reply(endpoint, "oversize_reply_gzip"), 1)


def openai_edit_inputs(files: dict[str, bytes]) -> dict[str, Any]:
    image, mask = decode(files.get("image") or files.get("image[]")), decode(files.get("mask"))
    inputs: dict[str, Any] = {"image": describe(image), "mask": None}
    if "mask" in files:
        inputs["mask"] = describe(mask)
        if mask is not None:
            inputs["mask"]["marked"] = edit_inputs.marked_share(edit_inputs.marked_by_alpha(mask))
    return inputs


def gemini_inputs(body: dict[str, Any]) -> dict[str, Any]:
    inline = [
        {"mime_type": part["inlineData"].get("mimeType"), **describe(decode(part["inlineData"].get("data")))}
        for content in body.get("contents") or []
        for part in content.get("parts") or []
        if isinstance(part, dict) and isinstance(part.get("inlineData"), dict)
    ]
    texts = [
        part["text"]
        for content in body.get("contents") or []
        for part in content.get("parts") or []
        if isinstance(part, dict) and "text" in part
    ]
    return {"inline": inline, "texts": texts}


def imagen_references(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The `referenceImages` of an Imagen edit as read (None: not an edit)."""
    instances = body.get("instances") or [{}]
    references = instances[0].get("referenceImages") if isinstance(instances[0], dict) else None
    if not isinstance(references, list):
        return None
    read = []
    for reference in references:
        image = decode((reference.get("referenceImage") or {}).get("bytesBase64Encoded"))
        entry = {
            "type": reference.get("referenceType"),
            "id": reference.get("referenceId"),
            "mask_config": reference.get("maskImageConfig"),
            **describe(image),
        }
        if image is not None and entry["type"] == "REFERENCE_TYPE_MASK":
            entry["marked"] = edit_inputs.marked_share(edit_inputs.marked_by_value(image))
        read.append(entry)
    return read


def gemini_size(aspect: str, tier: str) -> tuple[int, int]:
    aw, ah = (int(side) for side in aspect.split(":"))
    width = math.sqrt(GEMINI_TIERS[tier] ** 2 * aw / ah)
    return round(width / 16) * 16, round(width * ah / aw / 16) * 16


def openai_mask_problem(photo: Image.Image | None, mask: Image.Image | None) -> str | None:
    """Why OpenAI would refuse this mask for this image (the API reference: a PNG with an alpha
    channel, of the image's dimensions), or None."""
    if photo is None:
        return "Invalid image file."
    if mask is None or mask.format != "PNG":
        return "Invalid mask image: it must be a valid PNG file."
    if not describe(mask)["alpha"]:
        return "Invalid mask image: it must have an alpha channel (transparent where the image is edited)."
    if mask.size != photo.size:
        return (
            f"Invalid mask image: the mask ({mask.width}x{mask.height}) and the image ({photo.width}x{photo.height}) "
            "must have the same dimensions."
        )
    return None


class FakeImageApis:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.call_counts: Counter[str] = Counter()
        self.billed_counts: Counter[str] = Counter()
        self.faults: dict[str, list[Fault]] = {endpoint: [] for endpoint in ENDPOINTS}
        self.sent: dict[str, Image.Image] = {}  # the last image each endpoint returned
        self.reply_encoding = ""  # how 200s are sent: "" (Content-Length), "gzip", "chunked", "gzip+chunked"
        self.mask_behaviour = "respect"  # edits repaint only the marked area ("ignore": everything)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        # A short poll: shutdown() waits up to one poll interval (the default 0.5 s, per test).
        self.thread = threading.Thread(target=functools.partial(self.server.serve_forever, 0.05), daemon=True)

    # ---- control ---------------------------------------------------------------------------------

    def __enter__(self) -> FakeImageApis:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail(self, endpoint: str, kind: str, **options: Any) -> None:
        """From now on, `endpoint` answers with fault `kind` (for `times` calls, or always)."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        with self.lock:
            self.faults[endpoint].append(Fault(kind, **options))

    def set_mask_behaviour(self, behaviour: str) -> None:
        """ "respect": edits repaint only inside the mask; "ignore": they repaint everything."""
        if behaviour not in edit_inputs.MASK_BEHAVIOURS:
            raise ValueError(f"mask behaviour is one of {edit_inputs.MASK_BEHAVIOURS}, not {behaviour!r}")
        with self.lock:
            self.mask_behaviour = behaviour

    def heal(self, endpoint: str) -> None:
        with self.lock:
            self.faults[endpoint].clear()

    def calls(self, endpoint: str) -> int:
        with self.lock:
            return self.call_counts[endpoint]

    def billed(self, endpoint: str) -> int:
        """Generations the provider would charge for: every image it made, delivered or not."""
        with self.lock:
            return self.billed_counts[endpoint]

    def recorded(self, endpoint: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["endpoint"] == endpoint]

    def _next_fault(self, endpoint: str) -> Fault | None:
        with self.lock:
            queue = self.faults[endpoint]
            if not queue:
                return None
            fault = queue[0]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    queue.pop(0)
            return fault

    # ---- HTTP ------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                if code == 200 and "gzip" in fake.reply_encoding:
                    raw, headers = gzip.compress(raw, 1), {**(headers or {}), "content-encoding": "gzip"}
                if code == 200 and "chunked" in fake.reply_encoding:
                    return self.send_chunked(raw, headers)
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    self.wfile.write(raw)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                files: dict[str, bytes] = {}
                content_type = self.headers.get("content-type") or ""
                if content_type.startswith("multipart/form-data"):  # OpenAI /images/edits
                    body, files = form_data(content_type, raw)
                else:
                    try:
                        body = json.loads(raw or b"{}")
                    except ValueError:
                        body = None
                path = self.path
                if path.split("?")[0].rstrip("/").endswith(("/images/generations", "/images/edits")):
                    endpoint = "openai"
                else:
                    match = _ROUTE.match(path)
                    method = match.group(3) if match else ""
                    if method == "generateContent":
                        endpoint = "gemini"
                    elif method == "predict":
                        params = (body or {}).get("parameters") or {}
                        endpoint = "upscale" if params.get("mode") == "upscale" else "imagen"
                    else:
                        return self.send(
                            404, {"error": {"code": 404, "message": f"no route {path}", "status": "NOT_FOUND"}}
                        )
                headers = {key.lower(): value for key, value in self.headers.items()}
                edit = endpoint == "openai" and path.split("?")[0].rstrip("/").endswith("/images/edits")
                inputs = self.inputs(endpoint, body, files, edit)
                with fake.lock:
                    fake.requests.append(
                        {
                            "endpoint": endpoint,
                            "path": path,
                            "headers": headers,
                            "json": body,
                            "files": files,  # multipart file fields (an edit's image), by name
                            "inputs": inputs,  # the edit's images as read (edit_inputs.describe)
                            "at": time.time(),
                        }
                    )
                    fake.call_counts[endpoint] += 1
                if not isinstance(body, dict):
                    return self.send(
                        400, {"error": {"code": 400, "message": "body is not JSON", "status": "INVALID_ARGUMENT"}}
                    )
                fault = fake._next_fault(endpoint)
                if fault is not None and fault.kind == "slow":
                    time.sleep(fault.delay_s)
                    fault = None  # then it answers normally, and bills
                if endpoint == "openai":
                    if edit and not (files.get("image") or files.get("image[]")):
                        return self.openai_invalid("An image to edit is required.", "image")
                    return self.openai(body, fault, files if edit else None)
                return self.google(endpoint, body, fault)

            def inputs(self, endpoint: str, body: Any, files: dict[str, bytes], edit: bool) -> dict[str, Any]:
                if not isinstance(body, dict):
                    return {}
                if edit:
                    return openai_edit_inputs(files)
                if endpoint == "gemini":
                    return gemini_inputs(body)
                references = imagen_references(body) if endpoint == "imagen" else None
                return {} if references is None else {"references": references}

            # -- shared faults --
            def google_error(self, code: int, status: str, message: str, headers: dict[str, str] | None = None) -> None:
                self.send(code, {"error": {"code": code, "message": message, "status": status}}, headers)

            def variant(self, endpoint: str) -> int:
                """Each generation of an endpoint draws a different picture."""
                with fake.lock:
                    return fake.billed_counts[endpoint] + 1

            def bill(self, endpoint: str, image: Image.Image) -> None:
                with fake.lock:
                    fake.billed_counts[endpoint] += 1
                    fake.sent[endpoint] = image

            # -- poisoned images (fakes/poisons.py) --
            def poisoned(self, endpoint: str, name: str, headers: dict[str, str] | None = None) -> None:
                self.bill(endpoint, picture(64, 64, (0, 0, 0)))
                self.close_connection = True  # the client may hang up mid-body
                if name == "oversize_reply_gzip":
                    encoded = {**(headers or {}), "content-encoding": "gzip"}
                    return self.send(200, gzipped_poison_reply(endpoint), encoded)
                if name == "oversize_reply_chunked":
                    return self.send_chunked(poison_reply(endpoint, name), headers)
                return self.send(200, poison_reply(endpoint, name), headers)

            def send_chunked(self, body: bytes, headers: dict[str, str] | None = None) -> None:
                """A 200 without a Content-Length: the client only learns the size by reading."""
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("transfer-encoding", "chunked")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                step = 1024 * 1024
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    for start in range(0, len(body), step):
                        piece = body[start : start + step]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")

            # -- OpenAI --
            def openai(self, body: dict[str, Any], fault: Fault | None, files: dict[str, bytes] | None) -> None:
                if not (self.headers.get("authorization") or "").startswith("Bearer "):
                    return self.send(
                        401, {"error": {"message": "Missing bearer", "type": "invalid_request_error", "code": None}}
                    )
                headers = {"x-request-id": "req_fake"}
                if fault is not None:
                    return self.openai_fault(body, fault, headers)
                size = str(body.get("size") or "1024x1024")
                try:
                    width, height = (int(side) for side in size.split("x"))
                except ValueError:
                    return self.openai_invalid(f"Invalid size '{size}'.", "size")
                if (
                    width % 16
                    or height % 16
                    or not (1 / 3 <= width / height <= 3)
                    or width * height > OPENAI_MAX_PIXELS
                    or max(width, height) > 3840
                ):
                    return self.openai_invalid(f"Invalid size '{size}'.", "size")
                if body.get("quality") not in (None, "auto", "low", "medium", "high"):
                    return self.openai_invalid("Invalid quality.", "quality")
                image, encoded = encoded_picture(width, height, COLOURS["openai"], self.variant("openai"))
                if files is not None and "mask" in files:
                    photo, mask = decode(files.get("image") or files.get("image[]")), decode(files["mask"])
                    problem = openai_mask_problem(photo, mask)
                    if problem:
                        return self.openai_invalid(problem, "mask")
                    assert mask is not None
                    image = edit_inputs.edited(image, photo, edit_inputs.marked_by_alpha(mask), fake.mask_behaviour)
                    encoded = png_b64(image)
                self.bill("openai", image)
                self.send(
                    200,
                    {
                        "created": int(time.time()),
                        "background": "opaque",
                        "output_format": body.get("output_format", "png"),
                        "quality": body.get("quality") or "high",
                        "size": f"{width}x{height}",
                        "data": [{"b64_json": encoded}],
                        "usage": {
                            "input_tokens": 12,
                            "input_tokens_details": {"text_tokens": 12, "image_tokens": 0},
                            "output_tokens": 6240,
                            "total_tokens": 6252,
                        },
                    },
                    headers,
                )

            def openai_invalid(self, message: str, param: str) -> None:
                error = {"message": message, "type": "invalid_request_error", "param": param, "code": "invalid_value"}
                self.send(400, {"error": error}, {"x-request-id": "req_fake"})

            def openai_fault(self, body: dict[str, Any], fault: Fault, headers: dict[str, str]) -> None:
                kind = fault.kind
                if kind in ("rate_limit", "quota"):
                    code = "rate_limit_exceeded" if kind == "rate_limit" else "insufficient_quota"
                    message = "Rate limit exceeded for images per minute in organization org-fake."
                    if fault.retry_after is not None:
                        headers["retry-after"] = fault.retry_after
                    error: dict[str, Any] = {"message": message, "type": "requests", "param": None, "code": code}
                    return self.send(429, {"error": error}, headers)
                if kind == "server_error":
                    error = {"message": "The server had an error processing your request.", "type": "server_error"}
                    if fault.retry_after is not None:
                        headers["retry-after"] = fault.retry_after
                    return self.send(fault.status or 500, {"error": {**error, "param": None, "code": None}}, headers)
                if kind in ("refuse", "filtered", "filtered_reason"):
                    error = {
                        "message": "Your request was rejected by the safety system. If you believe this is an "
                        "error, contact us at help.openai.com and include the request ID req_fake. "
                        "safety_violations=[violence].",
                        "type": "image_generation_user_error",
                        "param": None,
                        "code": "moderation_blocked",
                        "moderation_details": {"moderation_stage": "output", "categories": ["violence"]},
                    }
                    return self.send(400, {"error": error}, headers)
                if kind == "auth":
                    key = (self.headers.get("authorization") or "")[7:]
                    error = {
                        "message": f"Incorrect API key provided: {key}. You can find your API key at the dashboard.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                    return self.send(401, {"error": error}, headers)
                if kind == "invalid":
                    return self.openai_invalid("Invalid value for 'size'.", "size")
                if kind == "echo":
                    # Some API errors quote the request back: the prompt, and the key it came with.
                    key = (self.headers.get("authorization") or "")[7:]
                    quoted = str(body.get("prompt") or "")
                    return self.openai_invalid(f"Invalid prompt '{quoted}' (request by key {key}).", "prompt")
                if kind == "malformed":
                    self.bill("openai", picture(64, 64, COLOURS["openai"]))
                    return self.send(200, b'{"created": 1, "data": [{"b64_json": "iVBOR', headers)
                if kind == "poison":
                    return self.poisoned("openai", fault.poison, headers)
                if kind == "malformed_image":
                    self.bill("openai", picture(64, 64, COLOURS["openai"]))
                    return self.send(200, {"created": 1, "data": [{"b64_json": "bm90IGFuIGltYWdl"}]}, headers)
                raise ValueError(f"unknown fault {kind!r}")

            # -- Vertex AI --
            def google(self, endpoint: str, body: dict[str, Any], fault: Fault | None) -> None:
                if fault is not None:
                    return self.google_fault(endpoint, body, fault)
                if endpoint == "gemini":
                    return self.gemini(body)
                if endpoint == "upscale":
                    return self.upscale(body)
                return self.imagen(body)

            def google_fault(self, endpoint: str, body: dict[str, Any], fault: Fault) -> None:
                kind = fault.kind
                if kind in ("rate_limit", "quota"):
                    headers = {"retry-after": fault.retry_after} if fault.retry_after is not None else None
                    message = (
                        "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model "
                        "with base model: imagen-4.0-generate. Please submit a quota increase request."
                    )
                    return self.google_error(429, "RESOURCE_EXHAUSTED", message, headers)
                if kind == "server_error":
                    status = fault.status or 503
                    name = "UNAVAILABLE" if status == 503 else "INTERNAL"
                    retry = {"retry-after": fault.retry_after} if fault.retry_after is not None else None
                    return self.google_error(status, name, "The service is currently unavailable.", retry)
                if kind == "auth":
                    return self.google_error(
                        403, "PERMISSION_DENIED", "Permission 'aiplatform.endpoints.predict' denied on resource."
                    )
                if kind == "invalid":
                    return self.google_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
                if kind == "refuse" and endpoint != "gemini":
                    # Imagen's prompt pre-filter: a 400 that says why.
                    message = (
                        "Image generation failed with the following error: The prompt could not be submitted. "
                        "This prompt contains sensitive words that violate Google's Responsible AI practices. "
                        "Try rephrasing the prompt. Support codes: 42876398"
                    )
                    return self.google_error(400, "INVALID_ARGUMENT", message)
                if kind in ("refuse", "filtered", "filtered_reason") and endpoint == "gemini":
                    candidate: dict[str, Any] = {
                        "finishReason": "IMAGE_SAFETY",
                        "finishMessage": "Unable to show the generated image.",
                    }
                    return self.send(200, {"candidates": [candidate], "usageMetadata": {"promptTokenCount": 9}})
                if kind == "filtered_reason" and (body.get("parameters") or {}).get("includeRaiReason"):
                    return self.send(200, {"predictions": [{"raiFilteredReason": IMAGEN_FILTERED}]})
                if kind in ("filtered", "filtered_reason"):
                    return self.send(200, {})  # every image filtered: HTTP 200 and no predictions at all
                if kind == "malformed":
                    self.bill(endpoint, picture(64, 64, (0, 0, 0)))
                    return self.send(200, b'{"predictions": [{"bytesBase64Encoded": "iVBOR')
                if kind == "poison":
                    return self.poisoned(endpoint, fault.poison)
                if kind == "malformed_image":
                    self.bill(endpoint, picture(64, 64, (0, 0, 0)))
                    junk = base64.b64encode(b"not an image").decode()
                    if endpoint == "gemini":
                        part = {"inlineData": {"mimeType": "image/png", "data": junk}}
                        candidate = {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP"}
                        return self.send(200, {"candidates": [candidate]})
                    return self.send(200, {"predictions": [{"mimeType": "image/png", "bytesBase64Encoded": junk}]})
                raise ValueError(f"unknown fault {kind!r}")

            def gemini(self, body: dict[str, Any]) -> None:
                config = body.get("generationConfig") or {}
                image_config = config.get("imageConfig") or {}
                aspect, tier = image_config.get("aspectRatio", "1:1"), image_config.get("imageSize", "1K")
                modalities = config.get("responseModalities") or []
                if aspect not in GEMINI_ASPECTS or tier not in GEMINI_TIERS or not modalities:
                    return self.google_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
                image, data = encoded_picture(*gemini_size(aspect, tier), COLOURS["gemini"], self.variant("gemini"))
                inline = [
                    decode(part["inlineData"].get("data"))
                    for content in body.get("contents") or []
                    for part in content.get("parts") or []
                    if isinstance(part, dict) and isinstance(part.get("inlineData"), dict)
                ]
                if len(inline) >= 2 and inline[0] is not None and inline[1] is not None:
                    # Photo, then mask: a model that follows the instruction keeps the black area.
                    marked = edit_inputs.marked_by_value(inline[1], threshold=128)
                    image = edit_inputs.edited(image, inline[0], marked, fake.mask_behaviour)
                    data = png_b64(image)
                self.bill("gemini", image)
                candidate = {
                    "content": {"role": "model", "parts": [{"inlineData": {"mimeType": "image/png", "data": data}}]},
                    "finishReason": "STOP",
                }
                usage = {"promptTokenCount": 9, "candidatesTokenCount": 1290, "totalTokenCount": 1299}
                self.send(200, {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "fake"})

            def imagen(self, body: dict[str, Any]) -> None:
                params = body.get("parameters") or {}
                if imagen_references(body) is not None:
                    return self.imagen_edit(body)
                aspect, size = params.get("aspectRatio", "1:1"), str(params.get("sampleImageSize", "1K")).upper()
                if (
                    aspect not in IMAGEN_1K
                    or size not in ("1K", "2K")
                    or not 1 <= float(params.get("sampleCount", 1)) <= 4
                ):
                    return self.google_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
                width, height = IMAGEN_1K[aspect]
                scale = 2 if size == "2K" else 1
                image, encoded = encoded_picture(
                    width * scale, height * scale, COLOURS["imagen"], self.variant("imagen")
                )
                self.bill("imagen", image)
                prediction = {"mimeType": "image/png", "bytesBase64Encoded": encoded}
                self.send(200, {"predictions": [prediction], "deployedModelId": "", "modelVersionId": "1"})

            def imagen_edit(self, body: dict[str, Any]) -> None:
                """A capability model's edit: a raw image and a user-provided mask of its size."""
                params = body.get("parameters") or {}
                references = body["instances"][0]["referenceImages"]
                raw = [r for r in references if r.get("referenceType") == "REFERENCE_TYPE_RAW"]
                masks = [r for r in references if r.get("referenceType") == "REFERENCE_TYPE_MASK"]
                if params.get("editMode") not in IMAGEN_EDIT_MODES or len(raw) != 1 or len(masks) != 1:
                    return self.google_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
                config = masks[0].get("maskImageConfig") or {}
                if config.get("maskMode") != "MASK_MODE_USER_PROVIDED":
                    return self.google_error(400, "INVALID_ARGUMENT", "Mask mode must be MASK_MODE_USER_PROVIDED.")
                photo = decode((raw[0].get("referenceImage") or {}).get("bytesBase64Encoded"))
                mask = decode((masks[0].get("referenceImage") or {}).get("bytesBase64Encoded"))
                if photo is None or mask is None:
                    return self.google_error(400, "INVALID_ARGUMENT", "Reference image is missing or unreadable.")
                if mask.size != photo.size:
                    sizes = f"({mask.width}x{mask.height}, raw image {photo.width}x{photo.height})"
                    message = f"The mask must have the same dimensions as the raw image {sizes}."
                    return self.google_error(400, "INVALID_ARGUMENT", message)
                drawn = picture(*photo.size, COLOURS["imagen"], self.variant("imagen"))
                marked = edit_inputs.marked_by_value(mask)
                image = edit_inputs.edited(drawn, photo, marked, fake.mask_behaviour)
                self.bill("imagen", image)
                prediction = {"mimeType": "image/png", "bytesBase64Encoded": png_b64(image)}
                self.send(200, {"predictions": [prediction], "deployedModelId": "", "modelVersionId": "1"})

            def upscale(self, body: dict[str, Any]) -> None:
                params = body.get("parameters") or {}
                factor = {"x2": 2, "x3": 3, "x4": 4}.get((params.get("upscaleConfig") or {}).get("upscaleFactor", ""))
                try:
                    encoded = body["instances"][0]["image"]["bytesBase64Encoded"]
                    source = Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")
                except (KeyError, IndexError, TypeError, ValueError, OSError):
                    return self.google_error(400, "INVALID_ARGUMENT", "Image is missing or unreadable.")
                if factor is None or source.width * factor * source.height * factor > 17_000_000:
                    return self.google_error(400, "INVALID_ARGUMENT", "Upscaled image would exceed 17 megapixels.")
                image = source.resize((source.width * factor, source.height * factor), Image.Resampling.BICUBIC)
                self.bill("upscale", image)
                prediction = {"mimeType": "image/png", "bytesBase64Encoded": png_b64(image)}
                self.send(200, {"predictions": [prediction]})

        return Handler
