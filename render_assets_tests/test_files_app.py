"""The local store's delivered images over HTTP (`files_app`), and nothing else of the folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from render_assets.adapters.blob_storage import LocalBlobStore
from render_assets.web.files import files_app

KEY = "renders/org/proj/render-1/0123456789abcdef-master.png"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    store = LocalBlobStore(tmp_path / "storage")
    store.put(KEY, b"\x89PNG master", content_type="image/png")
    store.put("renders/org/proj/render-1/0123456789abcdef-thumbnail.webp", b"RIFF thumb", content_type="image/webp")
    store.put("renders/org/proj/render-1/notes.txt", b"text", content_type="text/plain")
    store.put("dagster/render_prompt/render-1.json", b'{"prompt": "a private garden"}', content_type="application/json")
    store.put("dagster/raw_render/render-1.png", b"\x89PNG raw", content_type="image/png")
    (tmp_path / "outside.png").write_bytes(b"outside the store")
    (tmp_path / "storage" / "renders" / "escape.png").symlink_to(tmp_path / "outside.png")
    return tmp_path / "storage"


@pytest.fixture
def client(root: Path) -> TestClient:
    # Mounted as the progress server mounts it.
    return TestClient(Starlette(routes=[Mount("/files", app=files_app(root))]))


def test_delivered_images_are_served_with_their_type_and_immutable_caching(client: TestClient) -> None:
    response = client.get(f"/files/{KEY}")
    assert response.status_code == 200
    assert response.content == b"\x89PNG master"
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["x-content-type-options"] == "nosniff"
    thumb = client.get("/files/renders/org/proj/render-1/0123456789abcdef-thumbnail.webp")
    assert (thumb.status_code, thumb.headers["content-type"]) == (200, "image/webp")
    head = client.head(f"/files/{KEY}")
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "11", b"")


@pytest.mark.parametrize(
    "path",
    [
        "/files/dagster/render_prompt/render-1.json",  # asset values hold user prompts
        "/files/dagster/raw_render/render-1.png",  # an image, but not a delivered one
        "/files/renders/org/proj/render-1/notes.txt",  # not an image type
        "/files/renders/org/proj/render-1/missing-master.png",
        "/files/renders/escape.png",  # a symlink out of the store
        "/files/renders/../dagster/raw_render/render-1.png",
        "/files/renders/%2e%2e/dagster/raw_render/render-1.png",
        "/files/renders/org/proj/render-1/..%2F..%2F..%2F..%2Foutside.png",
        "/files/renders//org/proj/render-1/0123456789abcdef-master.png",
        "/files/",
    ],
)
def test_everything_else_is_not_found(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert b"private garden" not in response.content and b"outside" not in response.content


def test_writes_are_not_allowed(client: TestClient) -> None:
    assert client.put(f"/files/{KEY}", content=b"x").status_code == 405
    assert client.delete(f"/files/{KEY}").status_code == 405
