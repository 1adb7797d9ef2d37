"""The bundled example images and their reserved origin, `https://examples.render-assets.invalid/`:
the policy accepts it whatever the allowlist and only for bare file names, and the fetcher reads
the bundled files (never the network)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from render_assets.adapters import example_images
from render_assets.adapters.remote_images import FetchLimits, RemoteImageFetcher, examples_only
from render_assets.domain.url_policy import (
    EXAMPLE_IMAGE_ORIGIN,
    HostAllowlist,
    SourceImageRefused,
    check_url,
)
from render_assets_tests import example_photos
from render_assets_tests.test_remote_images import ALLOWED, Resolver

PHOTO_URL = f"{EXAMPLE_IMAGE_ORIGIN}/{example_photos.PHOTO_NAME}"
MASK_URL = f"{EXAMPLE_IMAGE_ORIGIN}/{example_photos.MASK_NAME}"
NO_HOSTS = HostAllowlist()


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
