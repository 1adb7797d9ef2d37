"""A small HTTP proxy in front of the GCS emulator that answers 503 to chosen requests.

The emulator cannot inject faults; the real google-cloud-storage client, pointed at this proxy
(through `STORAGE_EMULATOR_HOST` or `client_options`), meets real 503 responses and retries them.
It can also hold chosen requests without ever answering (a hung upstream), in front of any HTTP
server, e.g. the fake image APIs.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "proxy-connection"}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    body: bytes
    status: int  # NO_ANSWER: held until the client gave up
    at: float = field(default_factory=time.monotonic)

    def mentions(self, text: str) -> bool:
        """Whether the request's path or body names `text` (object names travel in either)."""
        return text in self.path or text.encode() in self.body


Rule = Callable[[Seen], bool]
NO_ANSWER = 0


@dataclass
class _Fault:
    remaining: int
    when: Rule
    until: float | None = None  # time.monotonic() at which a timed outage ends

    def applies(self, probe: Seen) -> bool:
        if self.until is not None:
            return time.monotonic() < self.until and self.when(probe)
        return self.remaining > 0 and self.when(probe)


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._hangs: list[Rule] = []
        self.seen: list[Seen] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail(self, count: int, when: Rule = lambda seen: True) -> None:
        """Answer 503 to the next `count` requests that match `when`."""
        with self._lock:
            self._faults.append(_Fault(count, when))

    def outage(self, seconds: float, when: Rule = lambda seen: True) -> float:
        """Answer 503 to every request that matches `when` for the next `seconds`; returns the
        time.monotonic() at which the outage ends."""
        until = time.monotonic() + seconds
        with self._lock:
            self._faults.append(_Fault(0, when, until))
        return until

    def hang(self, when: Rule) -> None:
        """Never answer requests that match `when`: hold each until its client gives up, then
        record it with status NO_ANSWER at the time the client closed the connection."""
        with self._lock:
            self._hangs.append(when)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._hangs.clear()

    def statuses(self, when: Rule = lambda seen: True) -> list[int]:
        with self._lock:
            return [seen.status for seen in self.seen if when(seen)]

    def _should_fail(self, probe: Seen) -> bool:
        with self._lock:
            for fault in self._faults:
                if fault.applies(probe):
                    fault.remaining -= 1
                    return True
        return False

    def _should_hang(self, probe: Seen) -> bool:
        with self._lock:
            return any(when(probe) for when in self._hangs)

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def handle(self) -> None:
                with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # the client gave up waiting
                    super().handle()

            def _proxy(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                probe = Seen(self.command, self.path, body, 0)
                if proxy._should_hang(probe):
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        while self.connection.recv(65536):  # until the client closes (EOF) or resets
                            pass
                    proxy._record(Seen(self.command, self.path, body, NO_ANSWER))
                    return
                if proxy._should_fail(probe):
                    proxy._record(Seen(self.command, self.path, body, 503))
                    self._answer(
                        503, json.dumps({"error": {"code": 503, "message": "injected by the fault proxy"}}).encode()
                    )
                    return
                upstream = urlparse(proxy.upstream)
                connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=30)
                headers = {key: value for key, value in self.headers.items() if key.lower() not in HOP_BY_HOP}
                try:
                    connection.request(self.command, self.path, body=body or None, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                except OSError:
                    # The emulator now and then drops a connection; a gateway would say 502 (retryable).
                    proxy._record(Seen(self.command, self.path, body, 502))
                    self._answer(502, b'{"error": {"code": 502, "message": "upstream dropped the connection"}}')
                    return
                finally:
                    connection.close()
                proxy._record(Seen(self.command, self.path, body, response.status))
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() in HOP_BY_HOP:
                        continue
                    if key.lower() == "location":  # resumable sessions come back through the proxy too
                        value = value.replace(proxy.upstream, proxy.url)
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _answer(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _proxy

        return Handler

    def start(self) -> FaultProxy:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()
