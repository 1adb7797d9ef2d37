"""Fetching a customer's image URL without letting it reach anything but an allowlisted host.

The URL must pass `domain/url_policy.py` (https, allowlisted host and port). The host name is
resolved once, every address is vetted, and the connection goes to a vetted address with TLS
verified against the original name (SNI, certificate check and Host header all use it), so a
DNS answer that changes between the check and the connect cannot redirect the request.
Redirects are refused, the body is read to a byte cap at most, and one deadline covers the
lookup, the connect, the headers and the body. What arrives must be a PNG, JPEG or WEBP image
within the pixel cap (`domain/source_photos.py`).

The reserved example origin (`https://examples.render-assets.invalid/<name>`) is never looked up:
its URLs are read from the bundled files (`example_images.py`), whatever the allowlist, and the
same decoding guards follow. `examples_only()` is the fetcher for when no host is allowlisted.

Two outcomes besides a photo: `SourceImageRefused` (the URL or what it served breaks the
policy; the customer's input, retrying cannot help) and `SourceImageUnavailable` (timeout,
connection trouble, a 5xx: it may pass). Messages name the field, never the URL.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import certifi
import urllib3
from urllib3.connection import HTTPSConnection
from urllib3.util.ssl_match_hostname import CertificateError

from render_assets.adapters import example_images
from render_assets.domain import source_photos
from render_assets.domain.source_photos import SourcePhoto
from render_assets.domain.url_policy import (
    DEFAULT_BLOCKED_NETWORKS,
    HostAllowlist,
    ImageUrl,
    IPAddress,
    IPNetwork,
    SourceImageRefused,
    check_url,
    vetted_addresses,
)

MiB = 1024 * 1024
DEFAULT_MAX_BYTES = 20 * MiB  # a 48 MP phone JPEG is 8-15 MB
DEFAULT_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0  # per address; the overall deadline still applies
CHUNK_BYTES = 64 * 1024
USER_AGENT = "render-assets (source image fetch)"
# getaddrinfo has no timeout of its own: lookups run here so the deadline can stop waiting.
_LOOKUPS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="source-image-dns")

Resolver = Callable[[str, int], Sequence[str]]


class SourceImageUnavailable(Exception):
    """The image could not be fetched for a reason that may pass: try again later."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for the host, in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout_s: float = DEFAULT_TIMEOUT_S  # lookup, connect, headers and body together
    max_pixels: int = source_photos.MAX_PIXELS


class RemoteImageFetcher:
    """Fetches image URLs under the allowlist. `blocked_networks`, `resolver` and `ca_bundle`
    exist for tests (a local server on loopback with its own CA); the defaults are the policy."""

    def __init__(
        self,
        allowlist: HostAllowlist,
        *,
        limits: FetchLimits | None = None,
        blocked_networks: Iterable[IPNetwork] = DEFAULT_BLOCKED_NETWORKS,
        resolver: Resolver = system_resolver,
        ca_bundle: str | None = None,
    ) -> None:
        self.allowlist = allowlist
        self.limits = limits or FetchLimits()
        self.blocked_networks = tuple(blocked_networks)
        self.resolver = resolver
        self._tls = ssl.create_default_context(cafile=ca_bundle or certifi.where())

    def fetch(self, url: str, *, field: str = "sourceImageUrl") -> SourcePhoto:
        """The image at `url`, prepared for the providers."""
        return source_photos.prepare(self.download(url, field=field), field, max_pixels=self.limits.max_pixels)

    def download(self, url: str, *, field: str) -> bytes:
        """The bytes at `url`, not yet decoded, under every rule of the fetch (allowlist, public
        addresses, size cap, one deadline): for an image that is read as it is, such as a mask."""
        deadline = time.monotonic() + self.limits.timeout_s
        target = check_url(url, self.allowlist, field)
        if target.example_name is not None:
            return self._bundled(target.example_name, field)
        addresses = vetted_addresses(self._resolve(target, field, deadline), field, self.blocked_networks)
        return self._download(target, addresses, field, deadline)

    # ---- steps -----------------------------------------------------------------------------------

    def _bundled(self, name: str, field: str) -> bytes:
        path = example_images.find(name)
        if path is None:
            raise SourceImageRefused(field, "names no bundled example image")
        if path.stat().st_size > self.limits.max_bytes:  # the cap holds for bundled files too
            raise SourceImageRefused(field, f"is larger than the {_size(self.limits.max_bytes)} limit")
        return path.read_bytes()

    def _resolve(self, target: ImageUrl, field: str, deadline: float) -> Sequence[str]:
        if target.is_ip_literal:
            return [target.host]
        lookup = _LOOKUPS.submit(self.resolver, target.host, target.port)
        try:
            return lookup.result(timeout=self._remaining(deadline, field))
        except FutureTimeout:
            raise self._timed_out(field) from None
        except OSError:
            raise SourceImageUnavailable(field, "the image host name does not resolve") from None

    def _download(self, target: ImageUrl, addresses: Sequence[IPAddress], field: str, deadline: float) -> bytes:
        for address in addresses:
            connection = HTTPSConnection(
                str(address),
                target.port,
                timeout=min(CONNECT_TIMEOUT_S, self._remaining(deadline, field)),
                server_hostname=target.host,  # SNI of the name, not of the pinned address
                assert_hostname=target.host,  # and the certificate must be the name's
                ssl_context=self._tls,
            )
            try:
                self._connect(connection, field)
            except OSError:
                connection.close()
                continue  # the next vetted address, if the name has one
            return self._get(connection, target, field, deadline)
        if time.monotonic() >= deadline:
            raise self._timed_out(field)
        raise SourceImageUnavailable(field, "could not connect to the image host")

    def _connect(self, connection: HTTPSConnection, field: str) -> None:
        try:
            connection.connect()
        except (CertificateError, ssl.SSLCertVerificationError):
            connection.close()
            raise SourceImageRefused(field, "the image host's TLS certificate is not valid for its name") from None
        except ssl.SSLError:
            connection.close()
            raise SourceImageUnavailable(field, "the TLS handshake with the image host failed") from None
        except urllib3.exceptions.HTTPError as error:  # connect timeout, refused: urllib3 wraps OSError
            raise OSError(str(error)) from None

    def _get(self, connection: HTTPSConnection, target: ImageUrl, field: str, deadline: float) -> bytes:
        # One watchdog for the rest: a server that drips bytes never lets a single read time out.
        expired = threading.Event()
        sock = connection.sock

        def expire() -> None:
            expired.set()
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            if sock is not None:
                sock.settimeout(self._remaining(deadline, field))
            connection.request(
                "GET",
                target.target,
                headers={
                    "Host": target.host_header,
                    "User-Agent": USER_AGENT,
                    "Accept": "image/png, image/jpeg, image/webp",
                    "Accept-Encoding": "identity",  # the byte cap counts what we decode
                    "Connection": "close",
                },
                preload_content=False,
                decode_content=False,
            )
            response = connection.getresponse()
            if expired.is_set():  # the watchdog cut the headers short: what arrived means nothing
                raise self._timed_out(field)
            body = self._body(response, field, deadline, expired)
        except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as error:
            if expired.is_set() or time.monotonic() >= deadline:
                raise self._timed_out(field) from None
            raise SourceImageUnavailable(field, f"the download failed ({type(error).__name__})") from None
        finally:
            watchdog.cancel()
            connection.close()
        if expired.is_set():  # the watchdog's shutdown can look like the end of the body
            raise self._timed_out(field)
        return body

    def _body(self, response: urllib3.BaseHTTPResponse, field: str, deadline: float, expired: threading.Event) -> bytes:
        status = response.status
        if 300 <= status < 400:
            raise SourceImageRefused(field, f"a redirect was refused (HTTP {status}): the URL must serve the image")
        if status in (408, 425, 429) or status >= 500:
            raise SourceImageUnavailable(field, f"the image host answered HTTP {status}")
        if status != 200:
            raise SourceImageRefused(field, f"the image could not be downloaded (HTTP {status})")
        problem = source_photos.media_type_problem(response.headers.get("content-type"))
        if problem is not None:
            raise SourceImageRefused(field, problem)
        if response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
            raise SourceImageRefused(field, "is served with a Content-Encoding; images must be sent as they are")
        cap = self.limits.max_bytes
        too_big = SourceImageRefused(field, f"is larger than the {_size(cap)} limit")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        while True:
            if expired.is_set() or time.monotonic() >= deadline:
                raise self._timed_out(field)
            chunk = response.read1(CHUNK_BYTES)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > cap:
                raise too_big
            chunks.append(chunk)

    def _remaining(self, deadline: float, field: str) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._timed_out(field)
        return left

    def _timed_out(self, field: str) -> SourceImageUnavailable:
        return SourceImageUnavailable(field, f"the image download took longer than {self.limits.timeout_s:g} s")


def examples_only(limits: FetchLimits | None = None) -> RemoteImageFetcher:
    """The fetcher when no host is allowlisted: it serves the bundled example images and refuses
    every other URL (`check_url`), so it never opens a connection."""
    return RemoteImageFetcher(HostAllowlist(), limits=limits)


def _size(limit: int) -> str:
    return f"{limit / MiB:g} MiB" if limit >= MiB else f"{limit / 1024:g} KiB"
