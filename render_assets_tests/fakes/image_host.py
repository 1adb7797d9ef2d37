"""A local HTTPS image host with a CA of its own (made with `cryptography`), for the fetcher.

It serves a certificate for `images.test` only; tests point that name at 127.0.0.1 through an
injected resolver and trust the CA through the fetcher's `ca_bundle`. Routes:

  /photo.jpg, /photo.png  a photo (JPEG, PNG)          /page.html   text/html
  /garbage.png            image/png that is not one    /missing     404
  /busy                   503                          /gzip.png    Content-Encoding: gzip
  /redirect?to=URL        302 to URL                   /declared-big  Content-Length over any cap
  /endless                image/png bytes until the client hangs up (no Content-Length)
  /drip                   image/png, one body byte every 50 ms
  /slow-headers           the status line, then one header byte every 50 ms

Every request is recorded (path, Host header, SNI), and `sent_bytes` counts body bytes written."""

from __future__ import annotations

import contextlib
import datetime
import io
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image

from render_assets_tests.fakes.image_apis import picture

HOST_NAME = "images.test"
PHOTO_COLOUR = (90, 150, 60)


@dataclass(frozen=True)
class Pki:
    ca_bundle: Path
    cert_file: Path
    key_file: Path


def make_pki(folder: Path, host: str = HOST_NAME) -> Pki:
    """A CA and a server certificate for `host`, signed by it, as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "render-assets test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    pki.ca_bundle.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pki


def encoded(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


@dataclass
class ImageHost:
    pki: Pki
    photo: Image.Image = field(default_factory=lambda: picture(640, 480, PHOTO_COLOUR))
    requests: list[dict[str, Any]] = field(default_factory=list)
    # More files by path: (Content-Type, body), e.g. a mask (served before the fixed routes).
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    sent_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.server_names: list[str | None] = []
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.pki.cert_file, self.pki.key_file)
        context.sni_callback = self._record_sni
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ImageHost:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str, host: str = HOST_NAME) -> str:
        return f"https://{host}:{self.port}{path}"

    def _record_sni(self, _socket: Any, server_name: str | None, _context: Any) -> None:
        with self.lock:
            self.server_names.append(server_name)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                with host.lock:
                    host.requests.append({"path": self.path, "host": self.headers.get("host")})
                if parts.path in host.files:
                    content_type, body = host.files[parts.path]
                    return self.reply(200, content_type, body)
                route = {
                    "/photo.jpg": lambda: self.reply(200, "image/jpeg", encoded(host.photo, "JPEG")),
                    "/photo.png": lambda: self.reply(200, "image/png", encoded(host.photo, "PNG")),
                    "/page.html": lambda: self.reply(200, "text/html", b"<html>not an image</html>"),
                    "/garbage.png": lambda: self.reply(200, "image/png", b"\x89PNG but not really" * 50),
                    "/missing": lambda: self.reply(404, "text/plain", b"no such object"),
                    "/busy": lambda: self.reply(503, "text/plain", b"try later"),
                    "/gzip.png": lambda: self.reply(
                        200, "image/png", encoded(host.photo, "PNG"), {"Content-Encoding": "gzip"}
                    ),
                    "/redirect": lambda: self.reply(
                        302, "text/plain", b"", {"Location": parse_qs(parts.query)["to"][0]}
                    ),
                    "/declared-big": lambda: self.reply(200, "image/png", b"", {"Content-Length": str(10**9)}),
                    "/endless": self.endless,
                    "/drip": self.drip,
                    "/slow-headers": self.slow_headers,
                }.get(parts.path)
                if route is None:
                    return self.reply(404, "text/plain", b"no route")
                with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                    route()

            def reply(self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                headers = {"Content-Length": str(len(body)), **(headers or {})}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if headers["Content-Length"] == str(len(body)):
                    self.write(body)

            def write(self, data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()
                with host.lock:
                    host.sent_bytes += len(data)

            def endless(self) -> None:
                self.close_connection = True
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()
                block = b"\x89PNG\r\n\x1a\n" + bytes(64 * 1024 - 8)
                for _ in range(10_000):  # 640 MiB at most, should a client never stop
                    self.write(block)

            def drip(self) -> None:
                self.close_connection = True
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", "5000")
                self.end_headers()
                for _ in range(10_000):
                    self.write(b"\x00")
                    time.sleep(0.05)

            def slow_headers(self) -> None:
                self.close_connection = True
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for byte in b"Content-Type: image/png\r\nX-Padding: " + b"x" * 10_000:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.05)

        return Handler
