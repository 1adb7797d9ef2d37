"""Which render partitions are old enough to drop from Dagster's partition list.

Only the partition goes: the renders row, the ledger, the images and the event log's
materializations stay (an old render stays auditable and its URLs keep working). A render still
in flight or held for review keeps its partition whatever its age, and a key without a renders
row (an operator's own partition) is not ours to judge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

from render_assets.persistence import renders
from render_assets.persistence.database import Database

LOOKUP_CHUNK = 1_000  # keys per IN (...) query: well under every database's parameter limit


def retention_cutoff(now: datetime, retention_days: float) -> datetime:
    if retention_days <= 0:
        raise ValueError(f"RENDER_RETENTION_DAYS must be positive, got {retention_days:g}")
    return now - timedelta(days=retention_days)


def expired_partitions(
    database: Database, partition_keys: Sequence[str], *, now: datetime, retention_days: float, limit: int
) -> list[str]:
    """Up to `limit` keys, in the given order, of settled renders created before the cutoff."""
    cutoff = retention_cutoff(now, retention_days)
    expired: list[str] = []
    for chunk in _chunks(partition_keys, LOOKUP_CHUNK):
        with database.session() as session:
            found = renders.ended_before(session, chunk, cutoff)
        expired += [key for key in chunk if key in found]
        if len(expired) >= limit:
            return expired[:limit]
    return expired


def _chunks(keys: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for key in keys:
        chunk.append(key)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
