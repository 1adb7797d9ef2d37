"""A webhook: POST a JSON body with a short timeout (Slack-compatible alerts, the web app's
render events).

The URL is a secret (for Slack it is the credential), so no error or log line ever contains it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


class WebhookError(Exception):
    pass


class JsonWebhook:
    def __init__(self, url: str, *, timeout_s: float = 3.0, source: str = "SLACK_WEBHOOK_URL") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{source} must be an http(s) URL")
        if timeout_s <= 0:
            raise ValueError(f"webhook timeout must be positive, got {timeout_s}")
        self._url = url
        self.source = source
        self.timeout_s = timeout_s

    def post(self, message: Mapping[str, Any]) -> None:
        self.post_bytes(json.dumps(message).encode())

    def post_bytes(self, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        """POST JSON text as it is (a signature covers these exact bytes); any 2xx is success."""
        request = urllib.request.Request(
            self._url, data=body, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as error:
            raise WebhookError(f"{self.source} answered HTTP {error.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise WebhookError(f"{self.source} unreachable ({type(error).__name__})") from None

    def __repr__(self) -> str:
        return f"JsonWebhook(host={urlsplit(self._url).hostname!r})"
