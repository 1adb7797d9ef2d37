"""A cap on how much of a provider's HTTP reply the SDKs read: response hooks for the openai
client (httpx2 `event_hooks`) and for the Vertex AI REST transport (a `requests` session hook).

A reply declaring a larger Content-Length is refused before its body is read; one without a
length (chunked), or compressed, is read decoded, chunk by chunk, only up to the cap. Both SDKs
would otherwise read any body whole before parsing it. The provider turns `ReplyTooLarge` into a
`malformed` error (a 200 we cannot use: it may have billed)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from render_assets.providers.decoding import MAX_ENCODED_CHARS, MIB

if TYPE_CHECKING:
    import httpx2
    import requests

# The largest base64 image the decoder accepts, and room for the JSON around it.
MAX_REPLY_BYTES = MAX_ENCODED_CHARS + MIB
CHUNK_BYTES = MIB


class ReplyTooLarge(Exception):
    def __init__(self) -> None:
        super().__init__(f"reply of more than {MAX_REPLY_BYTES // MIB} MiB")


def _refuse_declared(headers: Any) -> None:
    declared = str(headers.get("content-length") or "").strip()
    if declared.isdigit() and int(declared) > MAX_REPLY_BYTES:
        raise ReplyTooLarge


def cap_httpx_reply(response: httpx2.Response) -> None:
    """httpx2 response event hook: runs before the client reads the body."""
    _refuse_declared(response.headers)
    # What `Response.read()` stores and then returns: the client reads no further.
    response._content = _read_capped(response.iter_bytes(CHUNK_BYTES), response.close)


def cap_requests_reply(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """requests response hook: runs before the session reads the body (it is not streamed yet)."""
    _refuse_declared(response.headers)
    # What `Response.content` stores and then returns.
    response._content = _read_capped(response.iter_content(CHUNK_BYTES), response.close)


def _read_capped(pieces: Iterable[bytes], close: Callable[[], object]) -> bytes:
    chunks, size = [], 0
    for piece in pieces:
        size += len(piece)
        if size > MAX_REPLY_BYTES:
            close()
            raise ReplyTooLarge
        chunks.append(piece)
    return b"".join(chunks)
