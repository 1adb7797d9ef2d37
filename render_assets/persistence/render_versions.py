"""The delivered versions of a render (`render_versions`): the first delivery is version 1, and a
re-render that delivered other objects is the next. Every version stays (its objects are
immutable and the web app may link to any of them); the renders row holds the current one.

Object names are content-addressed, so "other objects" means other bytes: a re-render that came
out identical is no new version and tells nobody anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from render_assets.persistence.models import Render, RenderVersion


@dataclass(frozen=True)
class VersionFacts:
    """What made a version, for the record: the provider and model, and the code version of each
    asset (and the prompt rules' data version)."""

    provider: str | None = None
    model: str | None = None
    code_versions: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None


@dataclass(frozen=True)
class DeliveredVersion:
    version: int
    new: bool  # False: the objects are the current version's, so nothing changed
    first: bool  # the render's first delivery (what BullMQ's `completed` carries)


def current(session: Session, render: Render) -> RenderVersion | None:
    if render.current_version is None:
        return None
    return session.execute(
        select(RenderVersion).where(
            RenderVersion.render_id == render.id, RenderVersion.version == render.current_version
        )
    ).scalar_one_or_none()


def current_facts(session: Session, render_id: str) -> dict[str, Any] | None:
    """The code and data versions the render's current version was made from (None: not delivered)."""
    render = session.get(Render, render_id)
    latest = current(session, render) if render is not None else None
    return dict(latest.code_versions or {}) if latest is not None else None


def history(session: Session, render_id: str) -> list[RenderVersion]:
    """Every version of a render, oldest first."""
    return list(
        session.execute(
            select(RenderVersion).where(RenderVersion.render_id == render_id).order_by(RenderVersion.version)
        ).scalars()
    )


def record(
    session: Session,
    render: Render,
    *,
    result: dict[str, Any],
    image_url: str,
    thumbnail_url: str,
    image_key: str,
    prompt_hash: str,
    delivered_via: str,
    facts: VersionFacts,
) -> DeliveredVersion:
    """Record a delivery of `render` (locked by the caller) as its next version, unless its master
    is the current version's. Sets the row's result, URLs and current version; the caller sets
    the status."""
    latest = current(session, render)
    if latest is not None and latest.image_key == image_key:
        return DeliveredVersion(latest.version, new=False, first=False)
    number = (render.current_version or 0) + 1
    session.add(
        RenderVersion(
            render_id=render.id,
            version=number,
            result=result,
            image_url=image_url,
            thumbnail_url=thumbnail_url,
            image_key=image_key,
            prompt_hash=prompt_hash,
            provider=facts.provider,
            model=facts.model,
            code_versions=dict(facts.code_versions),
            run_id=facts.run_id,
            delivered_via=delivered_via,
        )
    )
    render.result = result
    render.image_url = image_url
    render.thumbnail_url = thumbnail_url
    render.prompt_hash = prompt_hash
    render.current_version = number
    session.flush()
    return DeliveredVersion(number, new=True, first=latest is None)
