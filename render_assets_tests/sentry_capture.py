"""Catching what Sentry would send, in-process, through the SDK's own `Transport` interface."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from render_assets.observability.sentry import init_sentry, shutdown_sentry


class CollectingTransport(Transport):
    """Keeps every envelope the SDK would send."""

    def __init__(self) -> None:
        super().__init__(None)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def items(self, kind: str) -> list[dict[str, Any]]:
        return [
            item.payload.json
            for envelope in self.envelopes
            for item in envelope.items
            if item.type == kind and item.payload.json is not None
        ]

    def events(self) -> list[dict[str, Any]]:
        return self.items("event")

    def transactions(self) -> list[dict[str, Any]]:
        return self.items("transaction")

    def serialized(self) -> str:
        return b"".join(envelope.serialize() for envelope in self.envelopes).decode("utf-8", "replace")


@contextmanager
def captured_sentry() -> Iterator[CollectingTransport]:
    """Sentry on, for the block, with every envelope kept (re-initialised each time)."""
    transport = CollectingTransport()
    init_sentry("https://public@sentry.invalid/1", transport=transport, traces_sample_rate=1.0, force=True)
    try:
        yield transport
    finally:
        shutdown_sentry()
