"""Whole renders of a customer's site photo with a marked area, through each provider's real SDK
against the wire-format fakes and through the local renderer: outside the mask the delivered
master is the photo, pixel for pixel; inside, it changed; the providers saw the mask. Bad masks
fail at claim or at fetch, named, refunded or uncharged, with no provider called."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from render_assets.domain import masks
from render_assets.domain.payload import parse_job
from render_assets.domain.pricing import render_cost
from render_assets.persistence import renders
from render_assets_tests.bullmq_jobs import bull_job
from render_assets_tests.fakes.image_apis import FakeImageApis
from render_assets_tests.fakes.image_host import HOST_NAME, ImageHost, Pki, encoded, make_pki
from render_assets_tests.fakes.providers import resource
from render_assets_tests.payloads import web_app_job
from render_assets_tests.stack import InProcessStack, in_process_stack
from render_assets_tests.test_remote_images import LoopbackSourceImages, raw_render_metadata

SIZE = (1024, 768)  # the photo's and the output's: the kept pixels are the photo's own
MARKED_BOX = (0.25, 0.4, 0.5, 0.45)  # x, y, width, height: the bed in front of the fence
# route -> (RENDER_PROVIDERS, the job's preferred provider, provider options, the fake's endpoint)
ROUTES: dict[str, tuple[str, str, dict[str, Any], str | None]] = {
    "openai": ("openai", "openai-gpt-image", {}, "openai"),
    "gemini": ("google", "google-imagen", {}, "gemini"),
    "imagen": ("google", "google-imagen", {"google_image_route": "imagen"}, "imagen"),
    "local": ("local", "google-imagen", {}, None),
}


def site_photo() -> Image.Image:
    """A yard with texture everywhere (QA wants detail), smooth enough that the JPEG the providers
    are sent stays within a few levels of it: a house, a lawn with stripes, light across it."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    light = np.stack([80 + x * 100 // SIZE[0], 120 + y * 60 // SIZE[1], 90 + (x + y) * 40 // sum(SIZE)], -1)
    grain = rng.normal(0, 30, size=(SIZE[1], SIZE[0], 1))
    photo = Image.fromarray(np.clip(light + grain, 0, 255).astype(np.uint8), "RGB").filter(
        ImageFilter.GaussianBlur(1.5)
    )
    draw = ImageDraw.Draw(photo)
    draw.rectangle((80, 60, 460, 300), fill=(180, 120, 90))  # the house
    for left in range(0, SIZE[0], 24):
        draw.line((left, 320, left, SIZE[1]), fill=(40, 150, 60), width=8)  # lawn stripes
    return photo


def box_mask() -> Image.Image:
    x, y, width, height = MARKED_BOX
    mask = Image.new("L", SIZE, 0)
    left, top = round(x * SIZE[0]), round(y * SIZE[1])
    ImageDraw.Draw(mask).rectangle(
        (left, top, round((x + width) * SIZE[0]) - 1, round((y + height) * SIZE[1]) - 1), 255
    )
    return mask


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def host(pki: Pki) -> Iterator[ImageHost]:
    with ImageHost(pki, photo=site_photo()) as image_host:
        image_host.files.update(
            {
                "/site.png": ("image/png", encoded(site_photo(), "PNG")),
                "/mask.png": ("image/png", encoded(box_mask(), "PNG")),
                "/half-mask.png": ("image/png", encoded(box_mask().resize((512, 384)), "PNG")),
                "/square-mask.png": ("image/png", encoded(box_mask().resize((768, 768)), "PNG")),
                "/not-an-image.png": ("image/png", b"this is no image" * 64),
                "/huge-mask.png": ("image/png", encoded(Image.new("L", (9000, 6750), 255), "PNG")),
            }
        )
        yield image_host


@pytest.fixture
def fake() -> Iterator[FakeImageApis]:
    with FakeImageApis() as apis:
        yield apis


def providers_for(route: str, fake: FakeImageApis, prefix: str, host: ImageHost, pki: Pki) -> LoopbackSourceImages:
    order, _, options, _ = ROUTES[route]
    settings = resource(fake, prefix, order=order, source_image_hosts=f"{HOST_NAME}:{host.port}", **options)
    return LoopbackSourceImages(**settings.model_dump(), ca_bundle=str(pki.ca_bundle))


def masked_job(route: str, host: ImageHost, *, mask_url: str | None = None, shapes: bool = True) -> dict[str, Any]:
    data = web_app_job(resolution=f"{SIZE[0]}x{SIZE[1]}", image_format="PNG")
    data["sourceImageUrl"] = host.url("/site.png")
    data["settings"]["provider"] = ROUTES[route][1]
    data["annotations"] = [a for a in data["annotations"] if a["type"] != "mask"]
    data.pop("maskImageUrl", None)
    if mask_url is not None:
        data["maskImageUrl"] = mask_url
    elif shapes:
        x, y, width, height = MARKED_BOX
        shape = {"shape": "rectangle", "x": x, "y": y, "width": width, "height": height}
        data["annotations"].append({"type": "mask", "data": shape})
    return data


def delivered_master(stack: InProcessStack, render_id: str) -> Image.Image:
    with stack.database.session() as session:
        url = renders.require(session, render_id).image_url
    assert url is not None
    return Image.open(Path(urlparse(url).path)).convert("RGB")


def provider_calls(fake: FakeImageApis) -> int:
    return fake.calls("openai") + fake.calls("gemini") + fake.calls("imagen")


@pytest.mark.parametrize("source", ["shapes", "maskImageUrl"])
@pytest.mark.parametrize("route", list(ROUTES))
def test_outside_the_mask_the_master_is_the_photo_and_inside_it_changed(
    route: str,
    source: str,
    sqlite_url: str,
    queue_name: str,
    tmp_path: Path,
    fake: FakeImageApis,
    prefix: str,
    host: ImageHost,
    pki: Pki,
) -> None:
    providers = providers_for(route, fake, prefix, host, pki)
    mask_url = host.url("/mask.png") if source == "maskImageUrl" else None
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=providers) as stack:
        data = masked_job(route, host, mask_url=mask_url)
        job_id = stack.enqueue(data)

        [result] = stack.run_all()

        assert result.success, bull_job(queue_name, job_id).failedReason
        master = np.asarray(delivered_master(stack, data["renderId"]))
    photo, marked = np.asarray(site_photo()), np.asarray(box_mask()) == masks.MARKED
    assert np.array_equal(master[~marked], photo[~marked])  # every kept pixel, exactly
    inside = np.abs(master[marked].astype(int) - photo[marked].astype(int)).mean()
    assert inside > 20
    metadata = raw_render_metadata(result)
    assert metadata["mask"] == {"openai": "inpainted", "imagen": "inpainted", "gemini": "instructed"}.get(
        route, "painted"
    )
    assert metadata["outside_mask_difference"] < masks_kept_limit()
    assert metadata["mask_marked_fraction"] == pytest.approx(marked.mean(), abs=0.001)
    endpoint = ROUTES[route][3]
    if endpoint is not None:
        [call] = fake.recorded(endpoint)
        assert _mask_seen(endpoint, call)
    print(f"\n{route} ({source}): outside-mask difference before compositing {metadata['outside_mask_difference']}")


def masks_kept_limit() -> float:
    from render_assets.domain.qa import MASK_KEPT

    return MASK_KEPT[0]


def _mask_seen(endpoint: str, call: dict[str, Any]) -> bool:
    inputs = call["inputs"]
    if endpoint == "openai":
        return bool(inputs["mask"] and inputs["mask"]["size"] == inputs["image"]["size"])
    if endpoint == "gemini":
        photo, mask = inputs["inline"]
        return bool(mask["mime_type"] == "image/png" and mask["size"] == photo["size"])
    references = inputs["references"] if "references" in inputs else call["json"]["instances"][0]["referenceImages"]
    return len(references) == 2


def test_a_provider_that_ignores_the_mask_is_a_qa_signal_and_the_photo_is_still_kept(
    sqlite_url: str, queue_name: str, tmp_path: Path, fake: FakeImageApis, prefix: str, host: ImageHost, pki: Pki
) -> None:
    fake.set_mask_behaviour("ignore")
    providers = providers_for("openai", fake, prefix, host, pki)
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=providers) as stack:
        data = masked_job("openai", host)
        job_id = stack.enqueue(data)

        [result] = stack.run_all()

        assert result.success
        with stack.database.session() as session:
            row = renders.require(session, data["renderId"])
        assert row.status == "in_review"  # held for a person, not delivered as if all were well
        assert bull_job(queue_name, job_id).returnvalue["status"] == "in_review"
    assert raw_render_metadata(result)["outside_mask_difference"] > 40


@pytest.mark.parametrize(
    ("mask_path", "reason"),
    [
        ("/square-mask.png", "maskImageUrl: its aspect 768:768 does not match the photo's 1024:768 (within 1 %)"),
        ("/not-an-image.png", "maskImageUrl: "),
        ("/huge-mask.png", "maskImageUrl: "),
    ],
)
def test_a_bad_mask_image_fails_at_fetch_refunded_with_no_provider_called(
    mask_path: str,
    reason: str,
    sqlite_url: str,
    queue_name: str,
    tmp_path: Path,
    fake: FakeImageApis,
    prefix: str,
    host: ImageHost,
    pki: Pki,
) -> None:
    providers = providers_for("openai", fake, prefix, host, pki)
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=providers) as stack:
        data = masked_job("openai", host, mask_url=host.url(mask_path))
        job_id = stack.enqueue(data)

        [result] = stack.run_all()

        assert not result.success
        assert stack.queue.state(job_id) == "failed"  # permanent: BullMQ does not try again
        failed = bull_job(queue_name, job_id).failedReason
        assert failed.startswith(f"invalid job payload: {reason}"), failed
        cost = render_cost(parse_job(data).settings)
        assert stack.ledger(data["renderId"]) == [("charge", -cost), ("refund", cost)]
    assert provider_calls(fake) == 0


def test_a_mask_of_half_the_size_and_the_same_aspect_is_scaled(
    sqlite_url: str, queue_name: str, tmp_path: Path, fake: FakeImageApis, prefix: str, host: ImageHost, pki: Pki
) -> None:
    providers = providers_for("local", fake, prefix, host, pki)
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=providers) as stack:
        data = masked_job("local", host, mask_url=host.url("/half-mask.png"))
        stack.enqueue(data)

        [result] = stack.run_all()

        assert result.success
        master = np.asarray(delivered_master(stack, data["renderId"]))
    kept = np.asarray(box_mask()) == masks.KEPT
    assert np.array_equal(master[kept], np.asarray(site_photo())[kept])


@pytest.mark.parametrize(
    ("mask_annotation", "with_url", "field"),
    [
        (
            {"shape": "polygon", "points": [{"x": 0.1, "y": 0.1}, {"x": 1.2, "y": 0.1}, {"x": 0.5, "y": 0.9}]},
            False,
            "annotations.0.data.points.1.x",
        ),
        ({"shape": "rectangle", "x": 0.1, "y": 0.1, "width": 0.2, "height": 0.2}, True, "maskImageUrl"),
        ({"shape": "circle", "x": 0.5, "y": 0.5}, False, "annotations.0.data.shape"),
    ],
)
def test_a_bad_mask_in_the_payload_fails_at_claim_uncharged(
    mask_annotation: dict[str, Any],
    with_url: bool,
    field: str,
    sqlite_url: str,
    queue_name: str,
    tmp_path: Path,
    fake: FakeImageApis,
    prefix: str,
    host: ImageHost,
    pki: Pki,
) -> None:
    providers = providers_for("openai", fake, prefix, host, pki)
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=providers) as stack:
        data = masked_job("openai", host, shapes=False, mask_url=host.url("/mask.png") if with_url else None)
        data["annotations"] = [{"type": "mask", "data": mask_annotation}]
        job_id = stack.enqueue(data, web_app=False, attempts=3)  # the web app's options; no parse

        result = stack.tick()

        assert not (result.run_requests or [])
        failed = bull_job(queue_name, job_id).failedReason
        assert failed.startswith("invalid job payload: ") and f"{field}:" in failed, failed
        assert stack.ledger(data["renderId"]) == []
    assert provider_calls(fake) == 0
