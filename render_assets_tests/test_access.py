"""Nothing a user sends chooses a storage path, a bucket or a URL host, and the progress server's
per-render tokens cannot be forged, stretched or reused for another render.

Object names: hostile ids (`../`, `/`, `%2e`, look-alike letters, NUL, newlines, very long,
empty) are refused by the payload and, on its own, by the key builder; whatever the key builder
accepts stays inside `renders/<org>/<project>/<render>/`. Delivery with a hostile-looking but
valid payload writes only there, in the configured bucket, behind the configured CDN.
Tokens: through a real uvicorn, a token opens its own render only, until it expires; forged,
truncated, re-cased, empty, non-ASCII, stretched or legacy tokens get 401, never a 500; tokens
never reach the access log or /metrics.
"""

from __future__ import annotations

import hmac
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.cloud import storage
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from render_assets.adapters.blob_storage import GcsBlobStore, LocalBlobStore, checked_key
from render_assets.cli import main
from render_assets.domain.object_keys import SAFE_ID, object_key, render_folder
from render_assets.domain.payload import InvalidJob, parse_job
from render_assets.domain.progress import Stage
from render_assets.persistence.database import Database
from render_assets.services import delivery
from render_assets.web import access_log, auth
from render_assets.web.auth import MAX_TTL_S, mint_token, verify_token
from render_assets_tests.payloads import web_app_job
from render_assets_tests.progress_server import Worker, read_sse, serving, unique_prefix
from render_assets_tests.progress_server import web_settings as make_settings

SECRET = "access-test-secret"
ID_FIELDS = ("renderId", "projectId", "organizationId")
HOSTILE_IDS = [
    "",
    "..",
    "../other-org",
    "a/b",
    "/abs",
    "a\\b",
    "%2e%2e",
    "%2F",
    "a.b",
    "render\x00",
    "render\n",
    "\nrender",
    "render ",
    "r\u0435nder",  # Cyrillic e
    "\uff52ender",  # fullwidth r
    "render\u200b",  # zero-width space
    "\u0663",  # Arabic-Indic digit three: \d would take it
    "x" * 65,
    "x" * 10_000,
]
# Everything a path could be made of, and look-alikes of the allowed characters.
HOSTILE_ALPHABET = st.sampled_from(list("abcXYZ019-_./\\%:?#@ \x00\n\t\u2024\u2215\uff0e\u0435\u0430\u0663\u0661"))


# -- object names -------------------------------------------------------------------------------


def _key(org: str, project: str, render: str) -> str:
    return object_key(org, project, render, content=b"pixels", variant="master", extension="png")


@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize("hostile", HOSTILE_IDS, ids=repr)
def test_a_hostile_id_is_refused_by_the_payload_and_by_the_key_builder(field: str, hostile: str) -> None:
    data = web_app_job()
    data[field] = hostile
    with pytest.raises(InvalidJob, match=field):
        parse_job(data)
    ids = {"org": "org-1", "project": "proj-1", "render": "render-1"}
    ids[{"renderId": "render", "projectId": "project", "organizationId": "org"}[field]] = hostile
    with pytest.raises(ValueError, match=field):
        _key(**ids)


@settings(max_examples=300, deadline=None)
@given(
    org=st.text(HOSTILE_ALPHABET, max_size=70) | st.text(max_size=8),
    project=st.text(HOSTILE_ALPHABET, max_size=70),
    render=st.text(HOSTILE_ALPHABET, max_size=70),
)
def test_every_key_stays_in_its_render_folder_and_the_payload_agrees(org: str, project: str, render: str) -> None:
    safe = all(SAFE_ID.fullmatch(value) for value in (org, project, render))
    try:
        key = _key(org, project, render)
    except ValueError:
        assert not safe
    else:
        assert safe
        parts = key.split("/")
        assert parts[:4] == ["renders", org, project, render] and len(parts) == 5
        assert key.startswith(render_folder(org, project, render) + "/")
        assert checked_key(key) == key  # the storage layer's own guard agrees
    data = web_app_job()
    data.update(organizationId=org, projectId=project, renderId=render)
    try:
        parse_job(data)
    except InvalidJob:
        assert not safe
    else:
        assert safe


@pytest.mark.parametrize("key", ["../x", "renders/../../x", "/etc/passwd", "renders//x", "renders/./x", "a\x00b", ""])
def test_the_storage_layer_refuses_keys_that_could_leave_its_root(key: str, tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "storage")
    with pytest.raises(ValueError, match="unsafe storage key"):
        store.put(key, b"x", content_type="image/png")
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob("**/x"))


def _hostile_looking_job(**ids: str) -> dict[str, Any]:
    """Valid, but written to tempt: URLs naming other hosts and buckets, ids that look like paths."""
    data = web_app_job()
    data.update(
        renderId=ids.get("render", "--"),
        projectId=ids.get("project", "_"),
        organizationId=ids.get("org", "evil-example-com"),
        sourceImageUrl="https://evil.example/other-bucket/renders/../x.jpg?bucket=other-bucket&host=evil.example",
        maskImageUrl="gs://other-bucket/renders/victim-org/mask.png",
    )
    data["prompt"]["user"] = "upload to gs://other-bucket/ and https://evil.example/ please, bucket=other-bucket"
    data["annotations"].append({"type": "textLabel", "data": {"text": "bucket other-bucket", "url": "//evil.example"}})
    return data


def _picture() -> Image.Image:
    return Image.frombytes("RGB", (320, 200), random.Random(7).randbytes(320 * 200 * 3))


def test_delivery_of_a_hostile_looking_job_writes_only_where_configuration_says(gcs_emulator: str) -> None:
    job = parse_job(_hostile_looking_job())
    prefix = f"access-{uuid.uuid4().hex[:10]}"
    store = GcsBlobStore(storage.Client(), "renders", prefix, public_base_url="https://cdn.example.com/")
    stored = delivery.store_variants(store, job, _picture(), "ab" * 32)

    folder = f"{prefix}/renders/evil-example-com/_/--/"
    for variant in stored.all:
        assert variant.url.startswith(f"https://cdn.example.com/{folder}")
        assert httpx.URL(variant.url).host == "cdn.example.com"
        assert "evil" not in variant.url.replace("evil-example-com", "") and "other-bucket" not in variant.url
    client = storage.Client()
    assert [bucket.name for bucket in client.list_buckets()] == ["renders"]
    names = [blob.name for blob in client.bucket("renders").list_blobs(prefix=prefix)]
    assert len(names) == 3 and all(name.startswith(folder) for name in names)


def test_local_delivery_of_a_hostile_looking_job_stays_under_the_storage_root(tmp_path: Path) -> None:
    job = parse_job(_hostile_looking_job(org="_", project="-", render="_-"))
    root = tmp_path / "storage"
    store = LocalBlobStore(root, public_base_url="https://cdn.example.com")
    stored = delivery.store_variants(store, job, _picture(), "cd" * 32)
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(files) == 3 and all(path.parent == root / "renders" / "_" / "-" / "_-" for path in files)
    assert all(variant.url.startswith("https://cdn.example.com/renders/_/-/_-/") for variant in stored.all)


# -- tokens: the rules ----------------------------------------------------------------------------

NOW = 1_700_000_000
ARABIC_INDIC_DIGITS = str.maketrans("0123456789", "".join(chr(0x660 + digit) for digit in range(10)))


def _forgeries(render_id: str) -> dict[str, str]:
    good = mint_token(SECRET, render_id, ttl_s=600, now=NOW)
    expires, signature = good.split(".")
    return {
        "empty": "",
        "another render's": mint_token(SECRET, "render-b", ttl_s=600, now=NOW),
        "another secret's": mint_token("other-secret", render_id, ttl_s=600, now=NOW),
        "truncated": good[:-1],
        "extended": good + "0",
        "upper-case hex": f"{expires}.{signature.upper()}",
        "expiry moved": f"{int(expires) + 3600}.{signature}",
        "expiry with a leading zero": f"0{good}",
        "signature only (the old format)": signature,
        "legacy hex HMAC of the id": hmac.new(SECRET.encode(), render_id.encode(), "sha256").hexdigest(),
        "non-ASCII digits": f"{expires.translate(ARABIC_INDIC_DIGITS)}.{signature}",
        "non-ASCII": "ŧøķəñ",
        "negative expiry": f"-{good}",
        "zeros": f"{expires}.{'0' * 64}",
        "huge": "9" * 100_000,
    }


def test_a_token_opens_its_own_render_until_it_expires() -> None:
    token = mint_token(SECRET, "render-a", ttl_s=600, now=NOW)
    assert verify_token(SECRET, "render-a", token, now=NOW)
    assert verify_token(SECRET, "render-a", token, now=NOW + 599)
    assert not verify_token(SECRET, "render-a", token, now=NOW + 600)
    assert not verify_token(SECRET, "render-b", token, now=NOW)


@pytest.mark.parametrize("kind", list(_forgeries("render-a")))
def test_forged_and_altered_tokens_are_refused(kind: str) -> None:
    assert not verify_token(SECRET, "render-a", _forgeries("render-a")[kind], now=NOW)


def test_a_token_stretched_past_the_longest_life_is_refused_even_when_signed() -> None:
    # A web app that signs a ten-year token: the server still bounds its life.
    far = str(NOW + MAX_TTL_S + 1)
    stretched = f"{far}.{hmac.new(SECRET.encode(), f'render-a:{far}'.encode(), 'sha256').hexdigest()}"
    assert not verify_token(SECRET, "render-a", stretched, now=NOW)
    with pytest.raises(ValueError, match="seconds"):
        mint_token(SECRET, "render-a", ttl_s=MAX_TTL_S + 1)


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    constant_time = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return constant_time(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert not verify_token(SECRET, "render-a", _forgeries("render-a")["zeros"], now=NOW)
    assert len(compared) == 1 and len(compared[0][0]) == len(compared[0][1]) == 64


def test_the_cli_mints_tokens_the_server_accepts(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("RENDER_SSE_SECRET", SECRET)
    assert main(["token", "render-a", "--ttl", "120"]) == 0
    token = capsys.readouterr().out.strip()
    assert verify_token(SECRET, "render-a", token) and not verify_token(SECRET, "render-b", token)
    assert time.time() + 110 < int(token.split(".")[0]) <= time.time() + 120
    assert main(["token", "../render-a"]) == 1
    assert main(["token", "render-a", "--ttl", str(MAX_TTL_S + 1)]) == 1
    monkeypatch.delenv("RENDER_SSE_SECRET")
    assert main(["token", "render-a"]) == 1
    assert "RENDER_SSE_SECRET" in capsys.readouterr().err


# -- tokens: through the server -------------------------------------------------------------------


@pytest.fixture
def served(sqlite_url: str) -> Iterator[tuple[str, Worker, Worker]]:
    prefix = unique_prefix()
    database = Database(sqlite_url)
    mine, other = Worker(database, prefix).claim(), Worker(database, prefix).claim()
    mine.stage(Stage.CHARGED)
    mine.complete()
    other.stage(Stage.CHARGED)
    access_log.install()  # as `render-assets serve` does
    with serving(make_settings(sqlite_url, prefix, sse_secret=SECRET), log_level="info") as base:
        yield base, mine, other
    database.dispose()


def test_through_the_server_tokens_cannot_be_forged_or_reused(
    capfd: pytest.CaptureFixture[str], served: tuple[str, Worker, Worker]
) -> None:
    # capfd before the server: its log handler holds on to the stderr it finds when it starts.
    base, mine, other = served
    token = mint_token(SECRET, mine.render_id)
    paths = [f"/renders/{mine.render_id}", f"/renders/{mine.render_id}/events"]
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.get(f"{paths[0]}?token={token}").json()["status"] == "completed"
        assert client.get(paths[0], headers={"Authorization": f"Bearer {token}"}).status_code == 200
        read = read_sse(f"{base}{paths[1]}?tok%65n={token}")  # percent-encoded name: still `token`
        assert read.status == 200 and read.events[-1].event == "completed"
        # Mine opens nothing else, and theirs does not open mine.
        assert client.get(f"/renders/{other.render_id}?token={token}").status_code == 401
        theirs = mint_token(SECRET, other.render_id)
        assert client.get(f"{paths[0]}?token={theirs}").status_code == 401
        expired = mint_token(SECRET, mine.render_id, ttl_s=1, now=time.time() - 10)
        refused = {"expired": expired, **_forgeries(mine.render_id)}
        refused.pop("huge")  # beyond any URL limit; the rules test covers it
        for kind, forged in refused.items():
            for path in paths:
                by_query = client.get(path, params={"token": forged})
                by_header = client.get(path, headers={b"Authorization": f"Bearer {forged}".strip().encode()})
                assert (by_query.status_code, by_header.status_code) == (401, 401), kind
        raw = client.get(paths[0], headers={b"Authorization": b"Bearer \xff\xfe garbage"})
        assert raw.status_code in (400, 401)
        # An id with a trailing newline is not an id (`$` would have let it by).
        newline = client.get(f"/renders/{mine.render_id}%0A?token={token}")
        assert newline.status_code == 404 and "render ids are" in newline.json()["error"]
        metrics = client.get("/metrics").text
    logged = capfd.readouterr()
    written = logged.out + logged.err
    signature = token.split(".")[1]
    assert "token=REDACTED" in written and "tok%65n=REDACTED" in written
    assert signature not in written and signature not in metrics and theirs.split(".")[1] not in written


def test_the_access_log_redacts_every_spelling_of_the_token_parameter() -> None:
    line = '127.0.0.1:5 - "GET /renders/r1/events?lastEventId=1-0&tok%65n=abc&TOKEN=def&token+=ghi HTTP/1.1" 200'
    redacted = access_log.redact(line)
    assert not any(value in redacted for value in ("abc", "def", "ghi"))
    assert "lastEventId=1-0" in redacted and redacted.endswith('HTTP/1.1" 200')
    assert access_log.redact("/renders/r1?tokens=abc&atoken=x") == "/renders/r1?tokens=abc&atoken=x"
