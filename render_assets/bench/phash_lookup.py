"""Duplicate lookup latency at 10k, 100k and 1M stored perceptual hashes, on PostgreSQL.

    python -m render_assets.bench.phash_lookup [--postgres-url URL] [--sizes 10000,100000,1000000]
    make bench-phash

Creates a scratch database on the server (the machine's PostgreSQL by default), migrates it with
the project's migrations, and bulk-loads random 64-bit hashes with COPY (the band indexes are
rebuilt after each load; 90% of the rows belong to the organization looked up, the rest to 99
others). It then times `perceptual_hashes.find_similar`, the production lookup, one session per
call as in a run: half the probes are near-duplicates of stored hashes (0-3 bits flipped), half
are random. For contrast it also times the same question answered by scanning the organization
(Hamming distance in SQL, no band index). The scratch database is dropped at the end. Random
hashes are the benchmark's assumption: real pHashes of garden scenes cluster more, which the bit
layout of the bands (domain/phash.py) counters. The load average is printed: the figures are
wall times and rise on a busy machine.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from render_assets.domain import phash
from render_assets.migrations import scratch_database
from render_assets.persistence import perceptual_hashes
from render_assets.persistence.database import Database

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_ORG = "org-bench"
OTHER_ORGS = [f"org-{n:02d}" for n in range(99)]
PROBES = 400
SCAN_PROBES = 20


def load(database: Database, rng: random.Random, start: int, count: int) -> tuple[list[int], float]:
    """COPY `count` rows; returns the target organization's hashes and the seconds it took."""
    buffer = io.StringIO()
    target: list[int] = []
    for index in range(start, start + count):
        value = rng.getrandbits(64)
        organization = TARGET_ORG if rng.random() < 0.9 else rng.choice(OTHER_ORGS)
        if organization == TARGET_ORG:
            target.append(value)
        row = perceptual_hashes.row_values(f"r{index}", organization, value)
        bands = "\t".join(str(row[f"band_{band}"]) for band in range(phash.BAND_COUNT))
        buffer.write(f"r{index}\t{organization}\t{row['hash']}\t{bands}\t2026-01-01T00:00:00Z\n")
    buffer.seek(0)
    started = time.perf_counter()
    raw = database.engine.raw_connection()
    try:
        cursor: Any = raw.cursor()  # psycopg2's cursor: copy_expert is not in the DBAPI protocol
        # As a bulk load should: the band indexes are built once after the rows are in.
        cursor.execute("SET maintenance_work_mem = '256MB'")
        for band in range(phash.BAND_COUNT):
            cursor.execute(f"DROP INDEX ix_perceptual_hashes_org_band_{band}")
        columns = "render_id, organization_id, hash, band_0, band_1, band_2, band_3, created_at"
        cursor.copy_expert(f"COPY perceptual_hashes ({columns}) FROM STDIN", buffer)
        for band in range(phash.BAND_COUNT):
            cursor.execute(
                f"CREATE INDEX ix_perceptual_hashes_org_band_{band} ON perceptual_hashes (organization_id, band_{band})"
            )
        cursor.execute("ANALYZE perceptual_hashes")
        cursor.close()
        raw.commit()
    finally:
        raw.close()
    return target, time.perf_counter() - started


def probes(rng: random.Random, stored: list[int]) -> list[int]:
    values = []
    for index in range(PROBES):
        if index % 2:
            values.append(rng.getrandbits(64))
            continue
        value = rng.choice(stored)
        for bit in rng.sample(range(64), rng.randint(0, 3)):
            value ^= 1 << bit
        values.append(value)
    return values


def timed(calls: list[Callable[[], object]]) -> list[float]:
    times = []
    for call in calls:
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def band_lookup(database: Database, value: int) -> Callable[[], object]:
    def call() -> object:
        with database.session() as session:
            return perceptual_hashes.find_similar(
                session, organization_id=TARGET_ORG, value=value, exclude_render_id="r-probe"
            )

    return call


def scan_lookup(database: Database, value: int) -> Callable[[], object]:
    query = text(
        "SELECT render_id FROM perceptual_hashes WHERE organization_id = :org AND render_id <> 'r-probe' "
        "AND bit_count((hash # :value)::bit(64)) <= 3"
    )

    def call() -> object:
        with database.session() as session:
            return session.execute(query, {"org": TARGET_ORG, "value": phash.to_signed(value)}).all()

    return call


def plan(database: Database, value: int) -> str:
    bands = phash.bands(value)
    query = text(
        "EXPLAIN SELECT render_id, hash FROM perceptual_hashes WHERE organization_id = :org "
        "AND render_id <> 'r-probe' AND (band_0 = :b0 OR band_1 = :b1 OR band_2 = :b2 OR band_3 = :b3)"
    )
    with database.session() as session:
        lines = [
            row[0] for row in session.execute(query, {"org": TARGET_ORG, **{f"b{i}": b for i, b in enumerate(bands)}})
        ]
    return "; ".join(line.strip() for line in lines if "Scan" in line)[:200]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres-url", default=DEFAULT_URL, help="a database URL on the server (admin rights)")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated stored-hash counts")
    args = parser.parse_args(argv)
    sizes = sorted(int(size) for size in args.sizes.split(","))
    rng = random.Random(20_240_601)
    print(f"duplicate lookup, {PROBES} probes per size (half near-duplicates), PostgreSQL")
    print("load average at start: " + ", ".join(f"{load:.1f}" for load in os.getloadavg()))
    print(f"{'stored':>9} {'load s':>7} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'found':>6} | {'scan p50 ms':>11}")
    with scratch_database(args.postgres_url, "render_assets_bench") as url:
        database = Database(url)
        try:
            stored: list[int] = []
            loaded = 0
            for size in sizes:
                target, seconds = load(database, rng, loaded, size - loaded)
                stored += target
                loaded = size
                values = probes(rng, stored)
                timed([band_lookup(database, value) for value in values[:50]])  # warm the cache and pool
                latencies = timed([band_lookup(database, value) for value in values])
                found = sum(1 for value in values if band_lookup(database, value)() is not None)
                scan = timed([scan_lookup(database, value) for value in values[:SCAN_PROBES]])
                print(
                    f"{size:>9,} {seconds:>7.1f} {percentile(latencies, 0.5):>7.2f} "
                    f"{percentile(latencies, 0.95):>7.2f} {max(latencies):>7.2f} {found:>6} | "
                    f"{percentile(scan, 0.5):>11.1f}"
                )
            print(f"plan at {loaded:,}: {plan(database, values[1])}")
            print("load average at end: " + ", ".join(f"{load:.1f}" for load in os.getloadavg()))
        finally:
            database.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
