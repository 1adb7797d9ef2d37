"""The bundled example images and their reserved origin, `https://examples.render-assets.invalid/`:
the policy accepts it whatever the allowlist and only for bare file names, the fetcher reads the
bundled files (never the network), other hosts behave as before with no host allowlisted, and
the example job renders on embedded defaults with the photo kept outside its mask."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from render_assets.adapters import example_images
from render_assets.adapters.remote_images import FetchLimits, RemoteImageFetcher, examples_only
from render_assets.domain import masks
from render_assets.domain.payload import parse_job
from render_assets.domain.qa import MASK_KEPT
from render_assets.domain.url_policy import (
    EXAMPLE_IMAGE_ORIGIN,
    HostAllowlist,
    SourceImageRefused,
    check_url,
    fetches_photo,
    job_url_problems,
)
from render_assets.persistence import renders
from render_assets.services.generation import photo_fetcher
from render_assets_tests import example_photos
from render_assets_tests.bullmq_jobs import bull_job
from render_assets_tests.payloads import EXAMPLES, web_app_job
from render_assets_tests.stack import InProcessStack, in_process_stack
from render_assets_tests.test_remote_images import ALLOWED, Resolver, raw_render_metadata

PHOTO_URL = f"{EXAMPLE_IMAGE_ORIGIN}/{example_photos.PHOTO_NAME}"
MASK_URL = f"{EXAMPLE_IMAGE_ORIGIN}/{example_photos.MASK_NAME}"
NO_HOSTS = HostAllowlist()


def site_job(**changes: Any) -> dict[str, Any]:
    """The bundled example job under a fresh render id (renders are delivered once per id)."""
    data: dict[str, Any] = json.loads((EXAMPLES / "backyard_site_photo.json").read_text())
    data["renderId"] = web_app_job()["renderId"]
    data.update(changes)
    return data


# ---- the bundled files ---------------------------------------------------------------------------


def test_the_bundled_photo_and_mask_are_what_the_script_draws() -> None:
    """`python -m render_assets_tests.example_photos` redraws them; the shipped files are its pixels."""
    photo = Image.open(example_images.EXAMPLE_IMAGES / example_photos.PHOTO_NAME)
    mask = Image.open(example_images.EXAMPLE_IMAGES / example_photos.MASK_NAME)

    assert (photo.format, photo.mode, photo.size) == ("PNG", "RGB", example_photos.SIZE)
    assert (mask.format, mask.mode, mask.size) == ("PNG", "L", example_photos.SIZE)
    assert np.array_equal(np.asarray(photo), np.asarray(example_photos.site_photo()))
    assert np.array_equal(np.asarray(mask), np.asarray(example_photos.site_mask()))
    assert set(np.unique(np.asarray(mask))) == {0, 255}
    assert (example_images.EXAMPLE_IMAGES / example_photos.PHOTO_NAME).stat().st_size < 300 * 1024
    assert example_images.names() == {example_photos.PHOTO_NAME, example_photos.MASK_NAME}


def test_only_well_named_regular_files_of_the_folder_are_read(tmp_path: Path) -> None:
    (tmp_path / "yard.png").write_bytes(b"a photo")
    (tmp_path / "big.jpg").write_bytes(b"x" * 2048)  # the name is all that is checked here
    (tmp_path / "notes.txt").write_bytes(b"not an image name")
    (tmp_path / "two.dots.png").write_bytes(b"a dot too many")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.png").write_bytes(b"in a subfolder")
    outside = tmp_path.parent / f"{tmp_path.name}-secret.png"
    outside.write_bytes(b"outside the folder")
    os.symlink(outside, tmp_path / "link.png")

    assert example_images.names(tmp_path) == {"yard.png", "big.jpg"}
    assert example_images.find("yard.png", tmp_path) == tmp_path / "yard.png"
    for name in ("link.png", "notes.txt", "two.dots.png", "sub/inner.png", "../yard.png", "missing.png", ""):
        assert example_images.find(name, tmp_path) is None, name
    assert example_images.names(tmp_path / "absent") == frozenset()


# ---- the policy (pure) -------------------------------------------------------------------------------


@pytest.mark.parametrize("allowlist", [NO_HOSTS, ALLOWED], ids=["no hosts", "hosts"])
@pytest.mark.parametrize(
    "url",
    [
        PHOTO_URL,
        MASK_URL,
        "HTTPS://Examples.Render-Assets.Invalid./backyard-site.png",
        f"{EXAMPLE_IMAGE_ORIGIN}:443/a_b-9.jpg",
    ],
)
def test_example_urls_are_accepted_whatever_the_allowlist(url: str, allowlist: HostAllowlist) -> None:
    checked = check_url(url, allowlist, "sourceImageUrl")

    assert checked.example_name == urlparse(url).path.removeprefix("/")
    assert check_url("https://images.example.com/a.png", ALLOWED, "sourceImageUrl").example_name is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"{EXAMPLE_IMAGE_ORIGIN}/../backyard-site.png", "no example image"),
        (f"{EXAMPLE_IMAGE_ORIGIN}/%2e%2e/pyproject.png", "no example image"),
        (f"{EXAMPLE_IMAGE_ORIGIN}/..%2Fbackyard-site.png", "no example image"),
        (f"{EXAMPLE_IMAGE_ORIGIN}/sub/backyard-site.png", "no example image"),
        (f"{EXAMPLE_IMAGE_ORIGIN}//backyard-site.png", "no example image"),
        (f"{EXAMPLE_IMAGE_ORIGIN}/backyard-site.gif", "no example image"),
        (f"{EXAMPLE_IMAGE_ORIGIN}/backyard-site.PNG", "no example image"),
        (f"{EXAMPLE_IMAGE_ORIGIN}/.png", "no example image"),
        (f"{EXAMPLE_IMAGE_ORIGIN}/", "no example image"),
        (EXAMPLE_IMAGE_ORIGIN, "no example image"),
        (f"{EXAMPLE_IMAGE_ORIGIN}/backyard-site.png?v=2", "no example image"),
        (f"{EXAMPLE_IMAGE_ORIGIN}/backyard-site.png#top", "no example image"),
        (f"{EXAMPLE_IMAGE_ORIGIN}:8443/backyard-site.png", "no example image"),
        (PHOTO_URL.replace("https:", "http:"), "must be an https URL"),
        (PHOTO_URL.replace("https://", "https://user@"), "must not carry credentials"),
        (PHOTO_URL.replace("examples.", "x.examples."), "not on the source image allowlist"),
    ],
)
def test_example_origin_urls_other_than_a_bare_file_name_are_refused(url: str, problem: str) -> None:
    for allowlist in (NO_HOSTS, ALLOWED):
        with pytest.raises(SourceImageRefused, match=problem):
            check_url(url, allowlist, "sourceImageUrl")


def test_with_no_host_allowlisted_only_a_job_with_an_example_photo_has_its_urls_checked() -> None:
    example = parse_job(site_job())
    foreign_mask = parse_job(site_job(maskImageUrl="https://uploads.example.com/mask.png"))
    bad_name = parse_job(site_job(maskImageUrl=f"{EXAMPLE_IMAGE_ORIGIN}/../mask.png"))
    elsewhere = parse_job(web_app_job())  # https://example.com/uploads/…: text-to-image, as before
    insecure = parse_job({**web_app_job(), "sourceImageUrl": "http://uploads.example.com/yard.jpg"})

    assert fetches_photo(example.sourceImageUrl, NO_HOSTS)
    assert not fetches_photo(elsewhere.sourceImageUrl, NO_HOSTS) and fetches_photo(elsewhere.sourceImageUrl, ALLOWED)
    assert job_url_problems(example, NO_HOSTS) == [] and job_url_problems(example, ALLOWED) == []
    assert job_url_problems(foreign_mask, NO_HOSTS) == [
        "maskImageUrl: host is not on the source image allowlist (RENDER_SOURCE_IMAGE_HOSTS)"
    ]
    assert [problem.split(":")[0] for problem in job_url_problems(bad_name, NO_HOSTS)] == ["maskImageUrl"]
    assert job_url_problems(elsewhere, NO_HOSTS) == [] and job_url_problems(insecure, NO_HOSTS) == []


# ---- the fetcher ---------------------------------------------------------------------------------------


def test_the_fetcher_reads_example_urls_from_the_package_and_never_looks_them_up() -> None:
    resolver = Resolver("93.184.216.34")
    for fetcher in (examples_only(), RemoteImageFetcher(ALLOWED, resolver=resolver)):
        photo = fetcher.fetch(PHOTO_URL)
        mask = fetcher.download(MASK_URL, field="maskImageUrl")

        assert photo.original == (example_images.EXAMPLE_IMAGES / example_photos.PHOTO_NAME).read_bytes()
        assert (photo.source_format, photo.source_size) == ("PNG", example_photos.SIZE)
        assert Image.open(io.BytesIO(photo.data)).format == "JPEG"  # as any photo reaches the providers
        assert mask == (example_images.EXAMPLE_IMAGES / example_photos.MASK_NAME).read_bytes()
    assert resolver.lookups == []


def test_the_fetcher_refuses_unknown_example_names_and_keeps_its_caps() -> None:
    with pytest.raises(SourceImageRefused, match=r"^sourceImageUrl: names no bundled example image$"):
        examples_only().fetch(f"{EXAMPLE_IMAGE_ORIGIN}/nothing-here.png")
    with pytest.raises(SourceImageRefused, match=r"^sourceImageUrl: is larger than the 1 KiB limit$"):
        examples_only(FetchLimits(max_bytes=1024)).fetch(PHOTO_URL)  # over the cap: not read
    with pytest.raises(SourceImageRefused, match="exceeds the 0 MP limit"):  # the decoding guards follow
        examples_only(FetchLimits(max_pixels=1000)).fetch(PHOTO_URL)


def test_with_no_host_allowlisted_other_urls_are_neither_fetched_nor_refused() -> None:
    resolver = Resolver("93.184.216.34")
    configured = RemoteImageFetcher(ALLOWED, resolver=resolver)
    elsewhere = parse_job(web_app_job())

    assert photo_fetcher(elsewhere, None) is None  # text-to-image, as with RENDER_SOURCE_IMAGE_HOSTS unset
    only_examples = photo_fetcher(parse_job(site_job()), None)
    assert only_examples is not None and not only_examples.allowlist
    assert photo_fetcher(elsewhere, configured) is configured
    with pytest.raises(SourceImageRefused, match="not on the source image allowlist"):
        examples_only().download("https://uploads.example.com/yard.jpg", field="sourceImageUrl")


# ---- the pipeline on embedded defaults (no host allowlisted, the local provider) ----------------------


def delivered_master(stack: InProcessStack, render_id: str) -> npt.NDArray[np.uint8]:
    with stack.database.session() as session:
        url = renders.require(session, render_id).image_url
    assert url is not None
    return np.asarray(Image.open(Path(urlparse(url).path)).convert("RGB"))


def test_the_example_job_renders_on_embedded_defaults_with_the_photo_kept_outside_its_mask(
    sqlite_url: str, queue_name: str, tmp_path: Path
) -> None:
    photo = np.asarray(example_photos.site_photo())
    kept = np.asarray(example_photos.site_mask()) == masks.KEPT
    with in_process_stack(sqlite_url, queue_name, tmp_path) as stack:
        # The same photo twice in one organization: alike by design, not a duplicate to fail.
        jobs = [site_job(), site_job()]
        job_ids = [stack.enqueue(data) for data in jobs]

        results = stack.run_all()

        assert [result.success for result in results] == [True, True], [
            bull_job(queue_name, job_id).failedReason for job_id in job_ids
        ]
        masters = [delivered_master(stack, data["renderId"]) for data in jobs]
    for master, result in zip(masters, results, strict=True):
        assert master.shape == (768, 1024, 3)
        assert np.array_equal(master[kept], photo[kept])  # every kept pixel is the photo's own
        assert np.abs(master[~kept].astype(int) - photo[~kept].astype(int)).mean() > 10  # the bed changed
        metadata = raw_render_metadata(result)
        assert (metadata["reference_image"], metadata["mask"]) == ("blended", "painted")
        assert metadata["outside_mask_difference"] < MASK_KEPT[0]
        assert metadata["mask_marked_fraction"] == pytest.approx((~kept).mean(), abs=0.001)


def test_with_no_host_allowlisted_a_bad_example_url_is_rejected_at_claim_uncharged(
    sqlite_url: str, queue_name: str, tmp_path: Path
) -> None:
    with in_process_stack(sqlite_url, queue_name, tmp_path) as stack:
        bad = site_job(maskImageUrl=f"{EXAMPLE_IMAGE_ORIGIN}/sub/mask.png")
        elsewhere = web_app_job()  # a photo on another host: claimed as before, rendered text-to-image
        bad_id, _ = stack.enqueue(bad), stack.enqueue(elsewhere)

        result = stack.tick()

        assert [request.partition_key for request in result.run_requests or []] == [elsewhere["renderId"]]
        assert bull_job(queue_name, bad_id).failedReason.startswith("invalid job payload: maskImageUrl: names the")
        assert stack.ledger(bad["renderId"]) == []
