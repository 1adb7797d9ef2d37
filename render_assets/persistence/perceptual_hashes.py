"""The `perceptual_hashes` table: one pHash per render, and the duplicate lookup over it.

A lookup reads only the organization's rows that share at least one 16-bit band with the hash
(four index range scans, OR-ed), then measures the exact Hamming distance on those candidates.
With up to 3 differing bits some band is identical, so nothing within the threshold is missed.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from render_assets.domain import phash
from render_assets.domain.qa import DUPLICATE_MAX_DISTANCE, Duplicate
from render_assets.persistence.models import PerceptualHash, Render, RenderStatus

BAND_COLUMNS = (PerceptualHash.band_0, PerceptualHash.band_1, PerceptualHash.band_2, PerceptualHash.band_3)


def row_values(render_id: str, organization_id: str, value: int) -> dict[str, object]:
    """The column values of one stored hash (also what the benchmark bulk-loads)."""
    band_values = phash.bands(value)
    return {
        "render_id": render_id,
        "organization_id": organization_id,
        "hash": phash.to_signed(value),
        **{f"band_{index}": band for index, band in enumerate(band_values)},
    }


def record(session: Session, *, render_id: str, organization_id: str, value: int) -> None:
    """Store the render's hash; a re-run of the render replaces it."""
    values = row_values(render_id, organization_id, value)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(PerceptualHash).values(**values)
    updated = {key: statement.excluded[key] for key in values if key != "render_id"}
    session.execute(statement.on_conflict_do_update(index_elements=["render_id"], set_=updated))


def candidates(session: Session, *, organization_id: str, value: int, exclude_render_id: str) -> list[tuple[str, int]]:
    """(render_id, unsigned hash) of the organization's other renders sharing a band with `value`."""
    band_values = phash.bands(value)
    rows = session.execute(
        select(PerceptualHash.render_id, PerceptualHash.hash).where(
            PerceptualHash.organization_id == organization_id,
            PerceptualHash.render_id != exclude_render_id,
            or_(*(column == band for column, band in zip(BAND_COLUMNS, band_values, strict=True))),
        )
    )
    return [(render_id, phash.to_unsigned(stored)) for render_id, stored in rows]


def find_similar(
    session: Session,
    *,
    organization_id: str,
    value: int,
    exclude_render_id: str,
    max_distance: int = DUPLICATE_MAX_DISTANCE,
) -> Duplicate | None:
    """The nearest earlier render of the organization within `max_distance`, never the render
    itself and never a render that failed (its image reached nobody)."""
    if max_distance >= phash.BAND_COUNT:
        raise ValueError(f"the band index finds distances up to {phash.BAND_COUNT - 1}, not {max_distance}")
    near = sorted(
        (phash.hamming(stored, value), render_id)
        for render_id, stored in candidates(
            session, organization_id=organization_id, value=value, exclude_render_id=exclude_render_id
        )
        if phash.hamming(stored, value) <= max_distance
    )
    if not near:
        return None
    failed = set(
        session.execute(
            select(Render.id).where(
                Render.id.in_([render_id for _, render_id in near]), Render.status == RenderStatus.FAILED
            )
        ).scalars()
    )
    for distance, render_id in near:
        if render_id not in failed:
            return Duplicate(render_id=render_id, distance=distance)
    return None
