"""The duplicate store on SQLite and PostgreSQL: near-duplicates of the same organization's
earlier renders are found; other scenes, other organizations, the render itself and failed
renders are not."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageEnhance

from render_assets.domain import failure_images, phash
from render_assets.persistence import perceptual_hashes
from render_assets.persistence.database import Database
from render_assets.persistence.models import PerceptualHash, Render, RenderStatus, utcnow
from render_assets_tests.test_quality_checks import scene


def hash_of(image: Image.Image) -> int:
    return failure_images.hash_of(image)


def record(database: Database, render_id: str, organization_id: str, image: Image.Image) -> int:
    value = hash_of(image)
    with database.session() as session:
        perceptual_hashes.record(session, render_id=render_id, organization_id=organization_id, value=value)
    return value


def lookup(database: Database, organization_id: str, image: Image.Image, render_id: str = "render-new") -> object:
    with database.session() as session:
        return perceptual_hashes.find_similar(
            session, organization_id=organization_id, value=hash_of(image), exclude_render_id=render_id
        )


def reencoded(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_a_near_duplicate_of_the_organizations_render_is_found(database: Database) -> None:
    original = scene(seed=31, size=(768, 768))
    record(database, "render-a", "org-1", original)
    for other_seed in range(40, 46):
        record(database, f"render-other-{other_seed}", "org-1", scene(seed=other_seed, size=(768, 768)))

    for copy in (reencoded(original), original.resize((740, 740)), ImageEnhance.Color(original).enhance(1.12)):
        found = lookup(database, "org-1", copy)
        assert isinstance(found, perceptual_hashes.Duplicate)
        assert found.render_id == "render-a" and found.distance <= 3


def test_a_different_scene_is_not_found(database: Database) -> None:
    for seed in range(50, 60):
        record(database, f"render-{seed}", "org-1", scene(seed=seed))
    assert lookup(database, "org-1", scene(seed=7, elements=())) is None


def test_another_organizations_identical_render_is_not_found(database: Database) -> None:
    image = scene(seed=61)
    record(database, "render-theirs", "org-2", image)
    assert lookup(database, "org-1", image) is None
    assert lookup(database, "org-2", image) == perceptual_hashes.Duplicate("render-theirs", 0)


def test_the_render_itself_is_never_its_own_duplicate(database: Database) -> None:
    image = scene(seed=62)
    record(database, "render-self", "org-1", image)
    assert lookup(database, "org-1", image, render_id="render-self") is None


def test_a_failed_render_is_not_a_duplicate_but_a_held_or_delivered_one_is(database: Database) -> None:
    image = scene(seed=63)
    with database.session() as session:
        for render_id, status in (("render-failed", RenderStatus.FAILED), ("render-held", "in_review")):
            session.add(
                Render(
                    id=render_id,
                    organization_id="org-1",
                    project_id="p",
                    user_id="u",
                    status=status,
                    stage="failed",
                    progress=80,
                    payload={},
                    credit_cost=1,
                    created_at=utcnow(),
                )
            )
    record(database, "render-failed", "org-1", image)
    assert lookup(database, "org-1", image) is None
    record(database, "render-held", "org-1", image)
    assert lookup(database, "org-1", image) == perceptual_hashes.Duplicate("render-held", 0)


def test_recording_again_replaces_the_renders_hash_and_keeps_its_bands(database: Database) -> None:
    first, second = scene(seed=64), scene(seed=65, elements=())
    record(database, "render-r", "org-1", first)
    value = record(database, "render-r", "org-1", second)
    with database.session() as session:
        [row] = session.query(PerceptualHash).filter_by(render_id="render-r").all()
        assert phash.to_unsigned(row.hash) == value
        assert (row.band_0, row.band_1, row.band_2, row.band_3) == phash.bands(value)
    assert lookup(database, "org-1", first) is None


def test_extreme_hashes_survive_the_signed_column(database: Database) -> None:
    for index, value in enumerate((0, 2**63 - 1, 2**63, 2**64 - 1)):
        with database.session() as session:
            perceptual_hashes.record(session, render_id=f"render-x{index}", organization_id="org-x", value=value)
        with database.session() as session:
            found = perceptual_hashes.find_similar(
                session, organization_id="org-x", value=value ^ 0b101, exclude_render_id="render-new"
            )
        assert found == perceptual_hashes.Duplicate(f"render-x{index}", 2)


def test_a_threshold_beyond_the_band_guarantee_is_refused(database: Database) -> None:
    with database.session() as session, pytest.raises(ValueError, match="distances up to 3, not 4"):
        perceptual_hashes.find_similar(
            session, organization_id="org-1", value=0, exclude_render_id="render-new", max_distance=4
        )
