"""Storage retries through the real google-cloud-storage client: a fault proxy in front of the
emulator answers 503, and the storage layer rides it out (or gives up after its time budget)."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from google.api_core.exceptions import NotFound, RetryError
from google.cloud import storage

from render_assets.adapters.blob_storage import GcsBlobStore, RetrySettings
from render_assets_tests.fault_proxy import FaultProxy

FAST = RetrySettings(timeout_s=10.0, initial_delay_s=0.01, max_delay_s=0.05)


@pytest.fixture
def store(proxy: FaultProxy) -> GcsBlobStore:
    return GcsBlobStore(storage.Client(), "renders", f"retries-{uuid.uuid4().hex[:12]}", retry=FAST)


def test_every_operation_rides_out_injected_503s(proxy: FaultProxy, store: GcsBlobStore) -> None:
    proxy.fail(2)
    stored = store.put("a/plain.png", b"plain", content_type="image/png")
    proxy.fail(2)
    created = store.put("a/created.png", b"created", content_type="image/png", if_absent=True)
    proxy.fail(2)
    assert store.get("a/plain.png") == b"plain"
    proxy.fail(2)
    assert store.exists("a/created.png")
    proxy.fail(2)
    assert store.keys_under("a") == ["a/created.png", "a/plain.png"]
    # Scoped to the DELETE, so the check below is about the delete alone (CI once saw one of two
    # unscoped faults met by another request).
    proxy.fail(2, lambda seen: seen.method == "DELETE")
    store.delete("a/plain.png")

    assert stored.created and created.created
    assert not store.exists("a/plain.png")
    assert proxy.statuses().count(503) == 12  # every injected failure was met and retried
    deletes = proxy.statuses(lambda seen: seen.method == "DELETE")
    assert deletes[:2] == [503, 503] and deletes[2] < 300


def test_a_resumable_upload_resumes_after_503s(proxy: FaultProxy, store: GcsBlobStore) -> None:
    # Above 8 MiB the client switches to a resumable upload: a session POST, then the bytes in a PUT.
    data = os.urandom(9 * 1024 * 1024)
    proxy.fail(1, lambda seen: seen.method == "POST" and "uploadType=resumable" in seen.path)
    proxy.fail(2, lambda seen: seen.method == "PUT")
    stored = store.put("big/master.png", data, content_type="image/png", if_absent=True)

    assert stored.created
    assert store.get("big/master.png") == data
    assert proxy.statuses(lambda seen: seen.method == "PUT") == [503, 503, 200]


def test_retries_stop_at_the_time_budget(proxy: FaultProxy) -> None:
    budget = RetrySettings(timeout_s=0.4, initial_delay_s=0.01, max_delay_s=0.05)
    store = GcsBlobStore(storage.Client(), "renders", f"budget-{uuid.uuid4().hex[:12]}", retry=budget)
    proxy.fail(10_000)
    started = time.monotonic()
    with pytest.raises(RetryError, match="503"):
        store.put("a/never.png", b"x", content_type="image/png")
    elapsed = time.monotonic() - started
    proxy.clear()

    assert proxy.statuses().count(503) >= 3  # it did retry, with backoff, until the budget ran out
    assert elapsed < 5
    assert not store.exists("a/never.png")


def test_a_missing_object_is_not_retried(proxy: FaultProxy, store: GcsBlobStore) -> None:
    with pytest.raises(NotFound):
        store.get("missing/object.png")
    assert proxy.statuses(lambda seen: seen.mentions("missing")) == [404]
