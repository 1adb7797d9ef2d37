"""A local webhook receiver that keeps every request posted to it (body and headers) and answers
with the statuses a test scripts (200 once they run out)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    body: str
    headers: dict[str, str]


class WebhookInbox:
    def __init__(self, statuses: Iterable[int] = ()) -> None:
        self.received: list[Received] = []
        self.statuses = list(statuses)
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                inbox.received.append(Received(body, {key.lower(): value for key, value in self.headers.items()}))
                self.send_response(inbox.statuses.pop(0) if inbox.statuses else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @property
    def bodies(self) -> list[str]:
        return [request.body for request in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
