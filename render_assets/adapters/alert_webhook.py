"""A Slack-compatible incoming webhook: POST a JSON message, with a short timeout.

The URL is a secret (it is the credential), so no error or log line ever contains it.
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


class AlertWebhook:
    def __init__(self, url: str, *, timeout_s: float = 3.0, source: str = "SLACK_WEBHOOK_URL") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{source} must be an http(s) URL")
        if timeout_s <= 0:
            raise ValueError(f"webhook timeout must be positive, got {timeout_s}")
        self._url = url
        self.timeout_s = timeout_s

    def post(self, message: Mapping[str, Any]) -> None:
        body = json.dumps(message).encode()
        request = urllib.request.Request(
            self._url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as error:
            raise WebhookError(f"alert webhook answered HTTP {error.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            raise WebhookError(f"alert webhook unreachable ({type(error).__name__})") from None

    def __repr__(self) -> str:
        return f"AlertWebhook(host={urlsplit(self._url).hostname!r})"
