"""Source photos: the URL policy, the pinned HTTPS fetcher against a local TLS host, the photo as
providers get it, and the pipeline (rejected at claim, refused at run time and refunded, the
photo reaching Gemini as inlineData and OpenAI as an edit)."""

from __future__ import annotations

import base64
import dataclasses
import io
import ipaddress
import random
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, ExecuteInProcessResult
from PIL import Image

from render_assets.adapters.remote_images import (
    FetchLimits,
    RemoteImageFetcher,
    SourceImageUnavailable,
)
from render_assets.domain.payload import parse_job
from render_assets.domain.pricing import render_cost
from render_assets.domain.source_photos import media_type_problem, prepare
from render_assets.domain.url_policy import (
    DEFAULT_BLOCKED_NETWORKS,
    HostAllowlist,
    IPAddress,
    IPNetwork,
    SourceImageRefused,
    address_problem,
    check_url,
    job_url_problems,
    unwrapped,
)
from render_assets.orchestration.resources import ProvidersResource
from render_assets.persistence import renders
from render_assets.providers.base import GeneratedImage, GenerationRequest
from render_assets.providers.local import LocalProvider
from render_assets.services.failures import RenderFailed
from render_assets.services.generation import source_photo
from render_assets_tests.bullmq_jobs import bull_job
from render_assets_tests.fakes import poisons
from render_assets_tests.fakes.image_apis import FakeImageApis
from render_assets_tests.fakes.image_host import HOST_NAME, ImageHost, Pki, encoded, make_pki
from render_assets_tests.fakes.providers import difference, google, openai, resource
from render_assets_tests.payloads import web_app_job
from render_assets_tests.stack import in_process_stack

TOKEN = "sig-7f3a9c1e55"  # a signed-URL token: no message may repeat it
ALLOWED = HostAllowlist.parse("images.example.com, *.cdn.example.net, uploads.example.org:8443")
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
# The defaults, except that 127.0.0.1 (and only it) is reachable: the local image host.
LOOPBACK_HOST_PERMITTED = (
    *(network for network in DEFAULT_BLOCKED_NETWORKS if network != LOOPBACK),
    *LOOPBACK.address_exclude(ipaddress.IPv4Network("127.0.0.1/32")),
)


# ---- the URL policy (pure) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"http://images.example.com/a.jpg?t={TOKEN}", "must be an https URL"),
        (f"ftp://images.example.com/a.jpg?t={TOKEN}", "must be an https URL"),
        (f"https://other.example.com/a.jpg?t={TOKEN}", "not on the source image allowlist"),
        (f"https://images.example.com.evil.test/a.jpg?t={TOKEN}", "not on the source image allowlist"),
        (f"https://images.example.com@evil.test/a.jpg?t={TOKEN}", "must not carry credentials"),
        (f"https://evil.test#@images.example.com/a.jpg?t={TOKEN}", "not on the source image allowlist"),
        (f"https://evil.test\\@images.example.com/a.jpg?t={TOKEN}", "not a well-formed URL"),
        (f"https://images.example.com/a b.jpg?t={TOKEN}", "not a well-formed URL"),
        (f"https://images.example.com:8443/a.jpg?t={TOKEN}", "not on the source image allowlist"),
        (f"https://images.example.com:99999/a.jpg?t={TOKEN}", "invalid port"),
        (f"https://cdn.example.net/a.jpg?t={TOKEN}", "not on the source image allowlist"),  # *. means below
        (f"https://metadata.google.internal/computeMetadata/v1/?t={TOKEN}", "cloud metadata service"),
        (f"https://169.254.169.254/latest/meta-data/?t={TOKEN}", "not on the source image allowlist"),
        (f"https:///a.jpg?t={TOKEN}", "no valid host name"),
        (f"https://bad_host!/a.jpg?t={TOKEN}", "no valid host name"),
    ],
)
def test_urls_the_policy_refuses_name_the_field_and_never_the_url(url: str, problem: str) -> None:
    with pytest.raises(SourceImageRefused) as refused:
        check_url(url, ALLOWED, "sourceImageUrl")

    message = str(refused.value)
    assert message.startswith("sourceImageUrl: ") and problem in message
    assert TOKEN not in message and "evil" not in message and "example" not in message


@pytest.mark.parametrize(
    ("url", "host", "port", "target"),
    [
        ("https://images.example.com/a.jpg?X-Goog-Signature=a", "images.example.com", 443, "/a.jpg?X-Goog-Signature=a"),
        ("HTTPS://IMAGES.example.com./a.jpg#frag", "images.example.com", 443, "/a.jpg"),
        ("https://a.cdn.example.net/x/y.png", "a.cdn.example.net", 443, "/x/y.png"),
        ("https://deep.a.cdn.example.net", "deep.a.cdn.example.net", 443, "/"),
        ("https://uploads.example.org:8443/p.webp", "uploads.example.org", 8443, "/p.webp"),
    ],
)  # fmt: skip
def test_urls_the_policy_accepts(url: str, host: str, port: int, target: str) -> None:
    checked = check_url(url, ALLOWED, "sourceImageUrl")

    assert (checked.host, checked.port, checked.target) == (host, port, target)
    assert checked.host_header == (host if port == 443 else f"{host}:{port}")


def test_the_allowlist_parses_hosts_ports_and_domains_and_refuses_anything_else() -> None:
    parsed = HostAllowlist.parse(" Images.Example.com ,*.cdn.example.net:8443, [::1]:9000,, 203.0.113.9")

    assert parsed.permits("images.example.com", 443)
    assert not parsed.permits("images.example.com", 8443)
    assert parsed.permits("x.cdn.example.net", 8443) and not parsed.permits("cdn.example.net", 8443)
    assert not parsed.permits("xcdn.example.net", 8443)
    assert parsed.permits("::1", 9000) and parsed.permits("203.0.113.9", 443)
    assert not HostAllowlist.parse("") and not HostAllowlist.parse(None) and not HostAllowlist.parse(" , ")
    for bad in ("images.example.com/path", "user@images.example.com", "*.203.0.113.9", "host:port", "a b"):
        with pytest.raises(ValueError, match="source image host entry"):
            HostAllowlist.parse(bad)


def test_job_url_problems_cover_the_source_and_the_mask_url() -> None:
    data = web_app_job()
    data["sourceImageUrl"] = f"https://images.example.com/yard.jpg?t={TOKEN}"
    data["maskImageUrl"] = f"http://images.example.com/mask.png?t={TOKEN}"
    job = parse_job(data)

    assert job_url_problems(job, ALLOWED) == ["maskImageUrl: must be an https URL"]
    assert job_url_problems(job.model_copy(update={"maskImageUrl": None}), ALLOWED) == []


BLOCKED_SAMPLES = [
    "127.0.0.1", "127.255.255.254", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "169.254.169.254", "169.254.0.1", "100.64.0.1", "100.127.255.254", "0.0.0.0", "224.0.0.1",
    "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.18.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1", "2001:db8::1", "2002:7f00:1::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a00:1", "::127.0.0.1",
]  # fmt: skip
PUBLIC_SAMPLES = [
    "8.8.8.8",
    "1.1.1.1",
    "142.250.74.78",
    "2606:4700:4700::1111",
    "2a00:1450:4001::200e",
    "::ffff:8.8.8.8",
]


@pytest.mark.parametrize("address", BLOCKED_SAMPLES)
def test_non_public_addresses_are_refused(address: str) -> None:
    problem = address_problem(ipaddress.ip_address(address))

    assert problem is not None and problem.startswith("resolves to a")


@pytest.mark.parametrize("address", PUBLIC_SAMPLES)
def test_public_addresses_are_accepted(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_metadata_addresses_are_refused_even_when_the_blocked_list_permits_them() -> None:
    for address in ("169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"):
        assert address_problem(ipaddress.ip_address(address), blocked=()) == "resolves to a cloud metadata address"


def around(network: IPNetwork) -> list[IPAddress]:
    """The first and last address of a block, and its neighbours outside it."""
    kind = ipaddress.IPv4Address if network.version == 4 else ipaddress.IPv6Address
    first, last = int(network.network_address), int(network.broadcast_address)
    return [kind(n) for n in (first - 1, first, last, last + 1) if 0 <= n < 2**network.max_prefixlen]


def test_every_address_the_policy_accepts_is_globally_reachable() -> None:
    """Against the standard library's registry of special-purpose blocks: the edges of every
    block either list knows, and a seeded sample of the whole address space."""
    known = map(ipaddress.ip_network, ("100.64.0.0/10", "192.0.0.0/29", "2001:10::/28", "::ffff:0:0/96"))
    candidates = [address for network in (*DEFAULT_BLOCKED_NETWORKS, *known) for address in around(network)]
    rng = random.Random(10)
    candidates += [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(3000)]
    candidates += [ipaddress.IPv6Address(rng.getrandbits(128)) for _ in range(1000)]
    candidates += [ipaddress.IPv6Address((0xFFFF << 32) | rng.getrandbits(32)) for _ in range(500)]  # IPv4-mapped

    accepted = [address for address in candidates if address_problem(address) is None]

    assert len(accepted) > 1000  # the policy does let the internet through
    assert [str(address) for address in accepted if not unwrapped(address).is_global] == []


# ---- the photo as providers get it (pure) ----------------------------------------------------------


def test_a_photo_is_turned_upright_stripped_of_metadata_and_bounded() -> None:
    photo = Image.new("RGB", (3000, 1500), (30, 120, 40))
    photo.paste((250, 10, 10), (0, 0, 300, 300))  # a red corner, top left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    exif[0x8825] = {2: (52.0, 31.0, 0.0)}  # GPS latitude: where the customer lives
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", exif=exif)

    prepared = prepare(buffer.getvalue(), "sourceImageUrl")

    out = Image.open(io.BytesIO(prepared.data))
    assert out.format == "JPEG" and out.mode == "RGB"
    assert out.size == (prepared.width, prepared.height) == (1024, 2048)  # upright, long side 2048
    assert (prepared.source_format, prepared.source_size) == ("JPEG", (3000, 1500))
    assert not out.getexif() and "icc_profile" not in out.info
    red = out.getpixel((out.width - 20, 20))  # the red corner is now top right
    assert isinstance(red, tuple) and red[0] > 200 and red[1] < 60


def test_transparency_becomes_white_and_webp_is_read() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (64, 48), (0, 0, 0, 0)).save(buffer, "WEBP", lossless=True)

    prepared = prepare(buffer.getvalue(), "sourceImageUrl")

    assert prepared.source_format == "WEBP"
    assert Image.open(io.BytesIO(prepared.data)).getpixel((10, 10)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"<html>not an image</html>", "not a PNG, JPEG or WebP file"),
        (encoded(Image.effect_noise((64, 64), 60), "PNG")[:1000], "image does not decode"),
        (encoded(Image.new("RGB", (64, 64)), "GIF"), "not a PNG, JPEG or WebP file"),
        (encoded(Image.new("1", (8000, 7000)), "PNG"), "image of 8000x7000 exceeds the 50 MP limit"),
        # The checks Pillow cannot make in time: a WebP's canvas, a JPEG's EXIF segments.
        (poisons.bomb_webp(), "image of 12000x10000 exceeds the 50 MP limit"),
        (poisons.huge_exif_jpeg(), "image metadata exceeds 8 MiB"),
    ],
)
def test_what_is_not_a_usable_image_is_refused(data: bytes, problem: str) -> None:
    with pytest.raises(SourceImageRefused, match=problem):
        prepare(data, "sourceImageUrl")


def test_only_image_content_types_pass() -> None:
    assert media_type_problem("image/jpeg") is None and media_type_problem("IMAGE/PNG; charset=binary") is None
    for content_type in ("text/html", "application/octet-stream", "image/svg+xml", "image/gif", "", None):
        assert media_type_problem(content_type) == "is not an image (its Content-Type is not PNG, JPEG or WEBP)"


# ---- the fetcher against a local HTTPS host ----------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def host(pki: Pki) -> Iterator[ImageHost]:
    with ImageHost(pki) as image_host:
        yield image_host


class Resolver:
    """Answers with fixed addresses and counts lookups; `then` answers every later lookup."""

    def __init__(self, *addresses: str, then: Sequence[str] | None = None, delay_s: float = 0.0) -> None:
        self.addresses, self.then, self.delay_s = list(addresses), then, delay_s
        self.lookups: list[tuple[str, int]] = []

    def __call__(self, name: str, port: int) -> list[str]:
        self.lookups.append((name, port))
        time.sleep(self.delay_s)
        if len(self.lookups) > 1 and self.then is not None:
            return list(self.then)
        return self.addresses


def loopback_fetcher(
    host: ImageHost, pki: Pki, resolver: Resolver | None = None, hosts: str | None = None, **limits: Any
) -> RemoteImageFetcher:
    """A fetcher that may reach the local host at 127.0.0.1 (and nothing else non-public)."""
    return RemoteImageFetcher(
        HostAllowlist.parse(hosts or f"{HOST_NAME}:{host.port}"),
        limits=FetchLimits(**limits),
        blocked_networks=LOOPBACK_HOST_PERMITTED,
        resolver=resolver or Resolver("127.0.0.1"),
        ca_bundle=str(pki.ca_bundle),
    )


def requests_to(host: ImageHost, path: str) -> int:
    with host.lock:
        return sum(1 for request in host.requests if request["path"].split("?")[0] == path)


@pytest.mark.parametrize("path", ["/photo.jpg", "/photo.png"])
def test_a_good_image_is_fetched_from_the_pinned_address_with_the_names_tls(
    host: ImageHost, pki: Pki, path: str
) -> None:
    resolver = Resolver("127.0.0.1", then=["10.0.0.9"])  # a rebinding answer, were anyone to ask again
    fetcher = loopback_fetcher(host, pki, resolver)

    photo = fetcher.fetch(host.url(f"{path}?X-Goog-Signature={TOKEN}"))

    assert resolver.lookups == [(HOST_NAME, host.port)]  # one lookup: the connection used its answer
    assert (photo.width, photo.height) == host.photo.size
    assert difference(Image.open(io.BytesIO(photo.data)), host.photo) < 4
    with host.lock:
        assert host.requests[-1] == {"path": f"{path}?X-Goog-Signature={TOKEN}", "host": f"{HOST_NAME}:{host.port}"}
        assert host.server_names[-1] == HOST_NAME  # SNI: the name, not the address


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["10.0.0.7"], ["169.254.169.254"], ["::1"], ["::ffff:127.0.0.1"], ["100.64.3.4"],
     ["fd00:ec2::254"], ["93.184.215.14", "127.0.0.1"], ["not-an-address"], []],
)  # fmt: skip
def test_an_allowlisted_name_that_resolves_to_a_non_public_address_is_refused_before_connecting(
    host: ImageHost, addresses: list[str]
) -> None:
    before = requests_to(host, "/photo.jpg")
    fetcher = RemoteImageFetcher(HostAllowlist.parse(f"{HOST_NAME}:{host.port}"), resolver=Resolver(*addresses))

    with pytest.raises(SourceImageRefused) as refused:
        fetcher.fetch(host.url(f"/photo.jpg?t={TOKEN}"))

    message = str(refused.value)
    assert message.startswith("sourceImageUrl: host ") and TOKEN not in message
    assert "non-public" in message or "metadata" in message or "address" in message
    assert requests_to(host, "/photo.jpg") == before


def test_urls_off_the_policy_are_refused_without_a_lookup(host: ImageHost) -> None:
    resolver = Resolver("127.0.0.1")
    fetcher = RemoteImageFetcher(
        HostAllowlist.parse(f"{HOST_NAME}:{host.port},metadata.google.internal"), resolver=resolver
    )
    cases = {
        f"http://{HOST_NAME}:{host.port}/photo.jpg?t={TOKEN}": "must be an https URL",
        f"https://elsewhere.test:{host.port}/photo.jpg?t={TOKEN}": "not on the source image allowlist",
        f"https://metadata.google.internal/computeMetadata/v1/?t={TOKEN}": "cloud metadata service",
    }
    for url, problem in cases.items():
        with pytest.raises(SourceImageRefused, match=problem):
            fetcher.fetch(url)
    assert resolver.lookups == []


@pytest.mark.parametrize("to", ["https://127.0.0.1:{port}/photo.jpg", "https://images.test:{port}/photo.jpg"])
def test_a_redirect_is_refused_and_not_followed(host: ImageHost, pki: Pki, to: str) -> None:
    before = requests_to(host, "/photo.jpg")

    with pytest.raises(SourceImageRefused, match=r"a redirect was refused \(HTTP 302\)"):
        loopback_fetcher(host, pki).fetch(host.url("/redirect?to=" + to.format(port=host.port)))

    assert requests_to(host, "/photo.jpg") == before


def test_an_endless_body_is_cut_off_at_the_cap(host: ImageHost, pki: Pki) -> None:
    start = time.monotonic()

    with pytest.raises(SourceImageRefused, match="is larger than the 256 KiB limit"):
        loopback_fetcher(host, pki, max_bytes=256 * 1024).fetch(host.url("/endless"))

    assert time.monotonic() - start < 2.0
    with pytest.raises(SourceImageRefused, match="is larger than the 20 MiB limit"):  # the declared length suffices
        loopback_fetcher(host, pki).fetch(host.url("/declared-big"))


@pytest.mark.parametrize("path", ["/drip", "/slow-headers"])
def test_a_server_that_drips_bytes_times_out_at_the_deadline(host: ImageHost, pki: Pki, path: str) -> None:
    start = time.monotonic()

    with pytest.raises(SourceImageUnavailable, match=r"the image download took longer than 0\.6 s"):
        loopback_fetcher(host, pki, timeout_s=0.6).fetch(host.url(path))

    assert 0.55 <= time.monotonic() - start < 1.5  # a drip would otherwise last minutes


def test_a_hanging_lookup_times_out_at_the_deadline(host: ImageHost, pki: Pki) -> None:
    start = time.monotonic()

    with pytest.raises(SourceImageUnavailable, match=r"took longer than 0\.3 s"):
        loopback_fetcher(host, pki, Resolver("127.0.0.1", delay_s=3.0), timeout_s=0.3).fetch(host.url("/photo.jpg"))

    assert time.monotonic() - start < 1.5


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/page.html", "is not an image"),
        ("/garbage.png", "image does not decode"),
        ("/gzip.png", "is served with a Content-Encoding"),
        ("/missing", r"could not be downloaded \(HTTP 404\)"),
    ],
)
def test_what_is_not_an_image_is_refused(host: ImageHost, pki: Pki, path: str, problem: str) -> None:
    with pytest.raises(SourceImageRefused, match=problem):
        loopback_fetcher(host, pki).fetch(host.url(f"{path}?t={TOKEN}"))


def test_trouble_that_may_pass_is_unavailable_not_refused(host: ImageHost, pki: Pki) -> None:
    with pytest.raises(SourceImageUnavailable, match="answered HTTP 503"):
        loopback_fetcher(host, pki).fetch(host.url("/busy"))
    port = closed_port()
    with pytest.raises(SourceImageUnavailable, match="could not connect"):
        loopback_fetcher(host, pki, hosts=f"{HOST_NAME}:{port}").fetch(f"https://{HOST_NAME}:{port}/photo.jpg")


def test_tls_is_verified_against_the_name_not_the_pinned_address(host: ImageHost, pki: Pki) -> None:
    # The host's certificate is for images.test: another allowlisted name on the same address fails.
    other = loopback_fetcher(host, pki, hosts=f"other.test:{host.port}")
    with pytest.raises(SourceImageRefused, match="TLS certificate is not valid"):
        other.fetch(f"https://other.test:{host.port}/photo.jpg")
    # And without our CA (the public roots only) the certificate is not trusted at all.
    untrusted = RemoteImageFetcher(
        HostAllowlist.parse(f"{HOST_NAME}:{host.port}"),
        blocked_networks=LOOPBACK_HOST_PERMITTED,
        resolver=Resolver("127.0.0.1"),
    )
    with pytest.raises(SourceImageRefused, match="TLS certificate is not valid"):
        untrusted.fetch(host.url("/photo.jpg"))


def closed_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---- the providers with a reference photo (real SDK clients against the fakes) ---------------------


@pytest.fixture
def fake() -> Iterator[FakeImageApis]:
    with FakeImageApis() as apis:
        yield apis


def site_photo() -> tuple[Image.Image, bytes]:
    image = Image.new("RGB", (640, 480), (200, 60, 160))
    image.paste((20, 200, 220), (0, 240, 640, 480))
    return image, encoded(image, "JPEG")


def request_with(reference: bytes | None) -> GenerationRequest:
    return GenerationRequest(
        prompt="a calm back garden", negative_prompt="", width=1024, height=1024, seed=7, reference_image=reference
    )


def test_openai_edits_the_photo_through_the_edits_endpoint(fake: FakeImageApis) -> None:
    image, photo = site_photo()

    generated = openai(fake).generate(request_with(photo))

    [call] = fake.recorded("openai")
    assert call["path"].endswith("/images/edits")
    assert difference(Image.open(io.BytesIO(call["files"]["image"])), image) < 2
    assert call["json"]["model"] == "gpt-image-2" and call["json"]["size"] == "1024x1024"
    assert call["json"]["prompt"].startswith("Redesign the garden in the attached photo")
    assert generated.facts["reference_image"] == "edited"
    assert difference(generated.image, fake.sent["openai"]) < 6


def test_without_a_photo_openai_generates_as_before(fake: FakeImageApis) -> None:
    generated = openai(fake).generate(request_with(None))

    [call] = fake.recorded("openai")
    assert call["path"].endswith("/images/generations") and call["files"] == {}
    assert generated.facts["reference_image"] == "none"


def test_gemini_gets_the_photo_as_inline_data_before_the_text(fake: FakeImageApis) -> None:
    _, photo = site_photo()

    generated = google(fake).generate(request_with(photo))

    [call] = fake.recorded("gemini")
    first, second = call["json"]["contents"][0]["parts"]
    assert first["inlineData"]["mimeType"] == "image/jpeg"
    assert base64.b64decode(first["inlineData"]["data"]) == photo
    assert second["text"].startswith("Redesign the garden in the attached photo")
    assert generated.facts["reference_image"] == "edited"


def test_imagen_ignores_the_photo_and_says_so(fake: FakeImageApis) -> None:
    _, photo = site_photo()

    generated = google(fake, route="imagen").generate(request_with(photo))

    [call] = fake.recorded("imagen")
    assert "image" not in call["json"]["instances"][0]
    assert generated.facts["reference_image"] == "ignored"


def test_the_local_provider_paints_the_design_over_the_photo() -> None:
    image, photo = site_photo()

    with_photo = LocalProvider().generate(request_with(photo))
    without = LocalProvider().generate(request_with(None))

    assert with_photo.facts["reference_image"] == "blended" and without.facts["reference_image"] == "none"
    assert difference(with_photo.image, image) < 40 < difference(without.image, image)


# ---- the pipeline -------------------------------------------------------------------------------------


class LoopbackSourceImages(ProvidersResource):
    """The providers resource, with a fetcher that may reach the local image host (tests only)."""

    ca_bundle: str = ""

    def source_images(self) -> RemoteImageFetcher | None:
        return RemoteImageFetcher(
            self.source_hosts(),
            blocked_networks=LOOPBACK_HOST_PERMITTED,
            resolver=Resolver("127.0.0.1"),
            ca_bundle=self.ca_bundle,
        )


def raw_render_metadata(result: ExecuteInProcessResult) -> dict[str, Any]:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey("raw_render")]
    return {key: value.value for key, value in event.step_materialization_data.materialization.metadata.items()}


def job_with(source: str, mask: str | None = None, provider: str = "google-imagen") -> dict[str, Any]:
    data = web_app_job(resolution="1024x1024")
    data["sourceImageUrl"] = source
    if mask is None:
        data.pop("maskImageUrl", None)
    else:
        data["maskImageUrl"] = mask
    data["settings"]["provider"] = provider
    return data


def test_with_the_allowlist_set_a_job_with_an_off_list_url_is_rejected_at_claim_and_not_charged(
    sqlite_url: str, queue_name: str, tmp_path: Path, fake: FakeImageApis, prefix: str
) -> None:
    providers = resource(fake, prefix, source_image_hosts="images.example.com")
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=providers) as stack:
        off_list = job_with(f"https://uploads.elsewhere.test/yard.jpg?t={TOKEN}")
        bad_mask = job_with("https://images.example.com/yard.jpg", mask=f"http://images.example.com/m.png?t={TOKEN}")
        good = job_with("https://images.example.com/yard.jpg")
        ids = [stack.enqueue(data) for data in (off_list, bad_mask, good)]

        result = stack.tick()

        assert [request.partition_key for request in result.run_requests or []] == [good["renderId"]]
        reasons = [bull_job(queue_name, job_id).failedReason for job_id in ids[:2]]
        assert reasons == [
            "invalid job payload: sourceImageUrl: host is not on the source image allowlist"
            " (RENDER_SOURCE_IMAGE_HOSTS)",
            "invalid job payload: maskImageUrl: must be an https URL",
        ]
        assert [stack.queue.state(job_id) for job_id in ids[:2]] == ["failed", "failed"]  # attempts left: not retried
        with stack.database.session() as session:
            assert [renders.get(session, data["renderId"]) for data in (off_list, bad_mask)] == [None, None]
        assert stack.ledger(off_list["renderId"]) == [] and stack.ledger(bad_mask["renderId"]) == []


def test_without_the_allowlist_nothing_is_fetched_and_the_limits_come_from_the_resource() -> None:
    assert ProvidersResource().source_images() is None and not ProvidersResource().source_hosts()

    fetcher = ProvidersResource(
        source_image_hosts="images.example.com", source_image_max_bytes=1024, source_image_timeout_s=2.5
    ).source_images()

    assert fetcher is not None and fetcher.allowlist == HostAllowlist.parse("images.example.com")
    assert (fetcher.limits.max_bytes, fetcher.limits.timeout_s) == (1024, 2.5)
    assert fetcher.blocked_networks == DEFAULT_BLOCKED_NETWORKS


def test_generation_fails_a_refused_photo_for_good_and_retries_one_that_may_pass(host: ImageHost, pki: Pki) -> None:
    fetcher = loopback_fetcher(host, pki)
    busy, not_an_image = (parse_job(job_with(host.url(path))) for path in ("/busy", f"/page.html?t={TOKEN}"))

    with pytest.raises(RenderFailed) as transient:
        source_photo(busy, fetcher)
    with pytest.raises(RenderFailed) as refused:
        source_photo(not_an_image, fetcher)

    assert (transient.value.permanent, transient.value.retry_step) == (False, True)
    assert transient.value.reason == (
        "the source image (sourceImageUrl) could not be fetched, the image host answered HTTP 503"
    )
    assert (refused.value.permanent, refused.value.retry_step) == (True, False)
    assert refused.value.reason == (
        "invalid job payload: sourceImageUrl: is not an image (its Content-Type is not PNG, JPEG or WEBP)"
    )
    assert source_photo(not_an_image, None) is None  # source images off: nothing fetched


def test_a_fetch_refused_at_run_time_fails_for_good_refunds_and_calls_no_provider(
    sqlite_url: str, queue_name: str, tmp_path: Path, fake: FakeImageApis, prefix: str, host: ImageHost
) -> None:
    # Allowlisted and https, so the claim admits it; the fetch then finds a loopback address.
    providers = resource(fake, prefix, source_image_hosts=f"127.0.0.1:{host.port}")
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=providers) as stack:
        data = job_with(f"https://127.0.0.1:{host.port}/photo.jpg?t={TOKEN}")
        job_id = stack.enqueue(data)  # the web app's options: 3 attempts
        before = requests_to(host, "/photo.jpg")

        [result] = stack.run_all()

        assert not result.success
        assert stack.queue.state(job_id) == "failed"  # permanent: BullMQ does not try again
        reason = bull_job(queue_name, job_id).failedReason
        assert reason == "invalid job payload: sourceImageUrl: host resolves to a non-public address (loopback)"
        assert (fake.calls("gemini"), fake.calls("openai")) == (0, 0)
        assert requests_to(host, "/photo.jpg") == before
        cost = render_cost(parse_job(data).settings)
        assert stack.ledger(data["renderId"]) == [("charge", -cost), ("refund", cost)]


def test_a_good_source_photo_reaches_gemini_as_inline_data_in_a_whole_render(
    sqlite_url: str, queue_name: str, tmp_path: Path, fake: FakeImageApis, prefix: str, host: ImageHost, pki: Pki
) -> None:
    settings = resource(fake, prefix, source_image_hosts=f"{HOST_NAME}:{host.port}").model_dump()
    providers = LoopbackSourceImages(**settings, ca_bundle=str(pki.ca_bundle))
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=providers) as stack:
        data = job_with(host.url(f"/photo.jpg?t={TOKEN}"))
        job_id = stack.enqueue(data)

        [result] = stack.run_all()

        assert result.success, bull_job(queue_name, job_id).failedReason
        assert stack.queue.state(job_id) == "completed"
        [call] = fake.recorded("gemini")
        part = call["json"]["contents"][0]["parts"][0]["inlineData"]
        assert difference(Image.open(io.BytesIO(base64.b64decode(part["data"]))), host.photo) < 4
        assert raw_render_metadata(result)["reference_image"] == "edited"
        assert fake.calls("openai") == 0


class OneDesignPerPhoto(LoopbackSourceImages):
    """The local renderer with one seed for every render: two renders of one photo come out alike."""

    def get(self) -> list[Any]:
        return [FixedSeedProvider()]


class FixedSeedProvider:
    name = "local"

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        return LocalProvider().generate(dataclasses.replace(request, seed=424242))


def test_renders_of_the_same_yard_photo_are_not_refused_as_duplicates_of_each_other(
    sqlite_url: str, queue_name: str, tmp_path: Path, fake: FakeImageApis, prefix: str, host: ImageHost, pki: Pki
) -> None:
    settings = resource(fake, prefix, source_image_hosts=f"{HOST_NAME}:{host.port}").model_dump()
    providers = OneDesignPerPhoto(**settings, ca_bundle=str(pki.ca_bundle))
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=providers) as stack:
        jobs = [job_with(host.url("/photo.jpg")) for _ in range(2)]
        job_ids = [stack.enqueue(data) for data in jobs]

        results = stack.run_all()

        # Without source images, the second would fail QA: "image duplicates render ... (pHash distance 0)".
        assert [result.success for result in results] == [True, True]
        assert [stack.queue.state(job_id) for job_id in job_ids] == ["completed", "completed"]
        assert [raw_render_metadata(result)["reference_image"] for result in results] == ["blended", "blended"]
