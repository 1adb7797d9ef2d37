"""One behaviour suite for both blob stores: a local folder and GCS (the real client against the emulator)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse
from urllib.request import url2pathname, urlopen

import pytest
from google.api_core.exceptions import NotFound
from google.cloud import storage

from render_assets.adapters.blob_storage import BlobStore, GcsBlobStore, LocalBlobStore, open_blob_store
from render_assets.orchestration.resources import BlobStorageResource
from render_assets_tests.service_account import SIGNER_EMAIL, throwaway_credentials

UNSAFE_KEYS = ["../x", "/abs", "a//b", "a/./b", "a b", "a/../../b", "", "a/", "..", "a\\b", "é.png"]


@dataclass
class Backend:
    store: BlobStore
    stored_names: Callable[[], list[str]]  # everything the backend holds, to prove nothing was written


@pytest.fixture
def gcs_client(gcs_emulator: str) -> storage.Client:
    return storage.Client()


@pytest.fixture(params=["local", "gcs"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return Backend(
            LocalBlobStore(tmp_path / "root"),
            lambda: sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file()),
        )
    client: storage.Client = request.getfixturevalue("gcs_client")
    prefix = f"prefix-{uuid.uuid4().hex[:12]}"
    return Backend(
        GcsBlobStore(client, "renders", prefix),
        lambda: sorted(blob.name for blob in client.list_blobs("renders", prefix=prefix)),
    )


def test_put_get_round_trip(backend: Backend) -> None:
    store = backend.store
    data = bytes(range(256)) * 40
    stored = store.put("renders/r1/image.png", data, content_type="image/png")
    assert (stored.key, stored.size, stored.created) == ("renders/r1/image.png", len(data), True)
    assert store.get("renders/r1/image.png") == data
    assert store.put("renders/r1/image.png", b"second", content_type="image/png").size == 6
    assert store.get("renders/r1/image.png") == b"second"
    assert len(backend.stored_names()) == 1


def test_exists_and_delete(backend: Backend) -> None:
    store = backend.store
    assert not store.exists("a/b.json")
    store.put("a/b.json", b"{}", content_type="application/json")
    store.put("a/c.json", b"[]", content_type="application/json")
    assert store.exists("a/b.json")
    store.delete("a/b.json")
    assert not store.exists("a/b.json")
    assert store.get("a/c.json") == b"[]"
    store.delete("a/b.json")  # already gone: fine
    store.delete("never/there.bin")
    assert len(backend.stored_names()) == 1


def test_get_of_a_missing_key_raises(backend: Backend) -> None:
    with pytest.raises((FileNotFoundError, NotFound)):
        backend.store.get("missing/key.png")


@pytest.mark.parametrize("key", UNSAFE_KEYS)
def test_unsafe_keys_are_refused_before_touching_storage(backend: Backend, key: str) -> None:
    store = backend.store
    operations: list[Callable[[], object]] = [
        lambda: store.put(key, b"x", content_type="text/plain"),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.keys_under(key),
        lambda: store.url(key),
    ]
    for operation in operations:
        with pytest.raises(ValueError, match="unsafe storage key"):
            operation()
    assert backend.stored_names() == []


@pytest.mark.parametrize("key", ["a\n", "renders/..\n"])
def test_trailing_newline_key_is_refused(backend: Backend, key: str) -> None:
    with pytest.raises(ValueError, match="unsafe storage key"):
        backend.store.put(key, b"x", content_type="text/plain")


def test_gcs_object_carries_content_type_cache_control_and_metadata(gcs_client: storage.Client) -> None:
    prefix = f"prefix-{uuid.uuid4().hex[:12]}"
    store = GcsBlobStore(gcs_client, "renders", prefix + "/")
    store.put(
        "r1/image.jpg",
        b"\xff\xd8jpeg",
        content_type="image/jpeg",
        cache_control="public, max-age=31536000, immutable",
        metadata={"renderId": "r1", "promptHash": "abc"},
    )
    store.put("r1/plain.txt", b"hi", content_type="text/plain")
    bucket = gcs_client.bucket("renders")
    blob = bucket.get_blob(f"{prefix}/r1/image.jpg")
    assert blob is not None
    assert blob.content_type == "image/jpeg"
    assert blob.cache_control == "public, max-age=31536000, immutable"
    assert blob.metadata == {"renderId": "r1", "promptHash": "abc"}
    plain = bucket.get_blob(f"{prefix}/r1/plain.txt")
    assert plain is not None and plain.content_type == "text/plain"
    assert not plain.metadata and plain.cache_control is None


def test_local_url_without_base_is_an_existing_file_uri(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "root")
    store.put("r1/image.png", b"png", content_type="image/png")
    parsed = urlparse(store.url("r1/image.png"))
    assert parsed.scheme == "file"
    path = Path(url2pathname(parsed.path))
    assert path == (tmp_path / "root" / "r1" / "image.png").resolve()
    assert path.read_bytes() == b"png"
    assert [p.name for p in path.parent.iterdir()] == ["image.png"]  # no temporary file left behind


@pytest.mark.parametrize("base", ["https://cdn.example.com/media", "https://cdn.example.com/media/"])
def test_local_url_with_public_base(tmp_path: Path, base: str) -> None:
    store = LocalBlobStore(tmp_path, public_base_url=base)
    assert store.url("r1/image.png") == "https://cdn.example.com/media/r1/image.png"
    assert store.url("r1/a=b.png") == "https://cdn.example.com/media/r1/a%3Db.png"


def test_gcs_url_with_public_base_includes_the_prefix(gcs_client: storage.Client) -> None:
    store = GcsBlobStore(gcs_client, "renders", "/deliveries/v1/", public_base_url="https://cdn.example.com/")
    assert store.url("r1/image.png") == "https://cdn.example.com/deliveries/v1/r1/image.png"


def test_gcs_url_without_base_is_the_public_object_url(gcs_client: storage.Client, gcs_emulator: str) -> None:
    store = GcsBlobStore(gcs_client, "renders", "pre")
    assert store.url("r1/image.png") == f"{gcs_emulator}/renders/pre/r1/image.png"
    assert GcsBlobStore(gcs_client, "renders").url("r1/image.png") == f"{gcs_emulator}/renders/r1/image.png"


def _no_gcs() -> storage.Client:
    raise AssertionError("the GCS client must not be created for this URL")


def test_open_blob_store_file_url(tmp_path: Path) -> None:
    store = open_blob_store(f"file://{tmp_path}/blobs", public_base_url=None, gcs_client=_no_gcs)
    assert isinstance(store, LocalBlobStore)
    assert store.root == tmp_path / "blobs"
    store.put("k/v.txt", b"v", content_type="text/plain")
    assert (tmp_path / "blobs" / "k" / "v.txt").read_bytes() == b"v"


def test_open_blob_store_gs_url(gcs_client: storage.Client) -> None:
    prefix = f"opened-{uuid.uuid4().hex[:12]}"
    store = open_blob_store(
        f"gs://renders/{prefix}/v1", public_base_url="https://cdn.example.com", gcs_client=lambda: gcs_client
    )
    assert isinstance(store, GcsBlobStore)
    assert (store.bucket.name, store.prefix) == ("renders", f"{prefix}/v1")
    store.put("k/v.txt", b"v", content_type="text/plain")
    assert store.url("k/v.txt") == f"https://cdn.example.com/{prefix}/v1/k/v.txt"
    assert gcs_client.bucket("renders").blob(f"{prefix}/v1/k/v.txt").download_as_bytes() == b"v"


@pytest.mark.parametrize(
    "url",
    ["gs://", "gs:///prefix", "http://example.com/renders", "s3://bucket/prefix", "/var/renders", ""],
)
def test_open_blob_store_rejects_other_urls(url: str) -> None:
    with pytest.raises(ValueError, match="RENDER_STORAGE_URL"):
        open_blob_store(url, public_base_url=None, gcs_client=_no_gcs)


def test_open_blob_store_rejects_a_file_url_with_a_host() -> None:
    with pytest.raises(ValueError, match="RENDER_STORAGE_URL"):
        open_blob_store("file://renders/out", public_base_url=None, gcs_client=_no_gcs)


def test_put_if_absent_keeps_the_first_object(backend: Backend) -> None:
    store = backend.store
    first = store.put("renders/o/p/r/abc-master.png", b"first", content_type="image/png", if_absent=True)
    again = store.put("renders/o/p/r/abc-master.png", b"other", content_type="image/png", if_absent=True)
    assert (first.created, again.created) == (True, False)
    assert store.get("renders/o/p/r/abc-master.png") == b"first"
    assert len(backend.stored_names()) == 1


def test_keys_under_lists_a_folder_and_nothing_beside_it(backend: Backend) -> None:
    store = backend.store
    for key in ["renders/o/p/r1/b.png", "renders/o/p/r1/a.webp", "renders/o/p/r1/deep/c.png", "renders/o/p/r10/x.png"]:
        store.put(key, b"x", content_type="image/png")
    assert store.keys_under("renders/o/p/r1") == [
        "renders/o/p/r1/a.webp",
        "renders/o/p/r1/b.png",
        "renders/o/p/r1/deep/c.png",
    ]
    assert store.keys_under("renders/o/p/none") == []


def test_concurrent_local_creates_have_exactly_one_winner(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    barrier = threading.Barrier(8)

    def write(index: int) -> bool:
        barrier.wait()
        return store.put("r/k.png", f"writer {index}".encode(), content_type="image/png", if_absent=True).created

    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(write, range(8)))
    assert created.count(True) == 1
    assert store.get("r/k.png") == f"writer {created.index(True)}".encode()
    assert [path.name for path in (tmp_path / "r").iterdir()] == ["k.png"]  # no temporary file left behind


def test_private_bucket_urls_are_v4_signed_and_served(gcs_client: storage.Client, gcs_emulator: str) -> None:
    prefix = f"private-{uuid.uuid4().hex[:12]}"
    store = GcsBlobStore(
        gcs_client,
        "renders",
        prefix,
        private=True,
        signed_url_ttl_s=900,
        signing_credentials=throwaway_credentials(),
    )
    store.put("r1/image.png", b"png bytes", content_type="image/png")
    url = store.url("r1/image.png")
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    assert f"{parsed.scheme}://{parsed.netloc}{parsed.path}" == f"{gcs_emulator}/renders/{prefix}/r1/image.png"
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    assert query["X-Goog-Expires"] == ["900"]
    assert query["X-Goog-Credential"][0].startswith(SIGNER_EMAIL + "/")
    assert len(query["X-Goog-Signature"][0]) == 512  # hex of a 2048-bit RSA signature
    with urlopen(url) as response:
        assert response.read() == b"png bytes"


def test_private_bucket_without_signing_credentials_is_a_clear_error(gcs_client: storage.Client) -> None:
    store = GcsBlobStore(gcs_client, "renders", "p", private=True)  # the emulator client is anonymous
    with pytest.raises(ValueError, match="RENDER_STORAGE_PRIVATE=true needs credentials that can sign"):
        store.url("r1/image.png")


@pytest.mark.parametrize(
    ("url", "options", "problem"),
    [
        ("gs://renders/p", {"public_base_url": "https://cdn.example.com", "private": True}, "exclude each other"),
        ("gs://renders/p", {"signed_url_ttl_s": 0}, "RENDER_SIGNED_URL_TTL_S must be between 1 and 604800"),
        ("gs://renders/p", {"signed_url_ttl_s": 604_801}, "RENDER_SIGNED_URL_TTL_S must be between 1 and 604800"),
        ("file:///tmp/renders", {"private": True}, "applies to gs:// storage"),
    ],
)
def test_contradictory_url_options_are_refused(url: str, options: dict[str, Any], problem: str) -> None:
    opened: dict[str, Any] = {"public_base_url": None, **options}
    with pytest.raises(ValueError, match=problem):
        open_blob_store(url, gcs_client=_no_gcs, **opened)


def test_local_urls_use_the_files_server_unless_a_cdn_is_set(tmp_path: Path) -> None:
    served = open_blob_store(
        tmp_path.as_uri(), public_base_url=None, files_base_url="http://127.0.0.1:8000/files/", gcs_client=_no_gcs
    )
    assert served.url("renders/o/p/r/a-web.webp") == "http://127.0.0.1:8000/files/renders/o/p/r/a-web.webp"
    cdn = open_blob_store(
        tmp_path.as_uri(),
        public_base_url="https://cdn.example.com",
        files_base_url="http://127.0.0.1:8000/files",
        gcs_client=_no_gcs,
    )
    assert cdn.url("renders/o/p/r/a-web.webp") == "https://cdn.example.com/renders/o/p/r/a-web.webp"


def test_the_files_server_is_for_local_storage_only(gcs_client: storage.Client, gcs_emulator: str) -> None:
    store = open_blob_store(
        "gs://renders/p",
        public_base_url=None,
        files_base_url="http://127.0.0.1:8000/files",
        gcs_client=lambda: gcs_client,
    )
    assert store.url("k.png") == f"{gcs_emulator}/renders/p/k.png"


def test_the_storage_resource_refuses_contradictions_when_it_is_built() -> None:
    with pytest.raises(ValueError, match="CDN_BASE_URL and RENDER_STORAGE_PRIVATE=true exclude each other"):
        BlobStorageResource(url="gs://renders/p", public_base_url="https://cdn.example.com", private=True)
    with pytest.raises(ValueError, match="RENDER_SIGNED_URL_TTL_S must be between 1 and 604800"):
        BlobStorageResource(url="gs://renders/p", private=True, signed_url_ttl_s=700_000)
    assert BlobStorageResource(url="gs://renders/p", private=True).signed_url_ttl_s == 86_400
