"""What delivering a 4096x4096 render costs: encode the master, the 2048 px WebP and the
thumbnail (in parallel threads) and upload them, to local storage and to the GCS emulator
(the real google-cloud-storage client). Prints wall time, encode/upload split, sizes, peak
memory (tracemalloc and RSS). Each case runs in a fresh process, so peaks do not mix.

    .venv/bin/python -m render_assets.bench.delivery [--repeat 3] [--formats PNG,JPEG,WEBP,AVIF]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SIDE = 4096
BACKENDS = ("local", "gcs")
FORMATS = ("PNG", "JPEG", "WEBP", "AVIF")


def _job(render_id: str, image_format: str) -> Any:
    from render_assets.domain.payload import RenderJob

    return RenderJob.model_validate(
        {
            "renderId": render_id,
            "projectId": "proj-bench",
            "sceneId": "scene-bench",
            "userId": "user-bench",
            "organizationId": "org-bench",
            "subscriptionTier": "pro",
            "sourceImageUrl": "https://example.com/source.png",
            "prompt": {"system": "", "user": "a garden"},
            "annotations": [],
            "settings": {"provider": "google-imagen", "resolution": f"{SIDE}x{SIDE}", "format": image_format},
        }
    )


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark (VmHWM) so it measures from here on."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measure(backend: str, image_format: str, repeat: int) -> dict[str, Any]:
    """One case, in this (fresh) process."""
    from render_assets.adapters.blob_storage import BlobStore, GcsBlobStore, LocalBlobStore
    from render_assets.domain import imaging
    from render_assets.domain.variants import VARIANTS, encode_variant
    from render_assets.providers.base import GenerationRequest
    from render_assets.providers.local import LocalProvider
    from render_assets.services.delivery import store_variants

    request = GenerationRequest(prompt="bench", negative_prompt="", width=SIDE, height=SIDE, seed=7)
    image = LocalProvider().generate(request).image
    with tempfile.TemporaryDirectory() as folder:
        store: BlobStore
        if backend == "local":
            store = LocalBlobStore(Path(folder))
        else:
            from google.cloud import storage

            store = GcsBlobStore(storage.Client(), "renders", f"bench-{uuid.uuid4().hex[:8]}")

        def deliver_once() -> tuple[float, Any]:
            job = _job(f"bench-{uuid.uuid4().hex[:12]}", image_format)  # a new render: new names, real uploads
            started = time.perf_counter()
            stored = store_variants(store, job, image, "0" * 64)
            elapsed = time.perf_counter() - started
            for variant in stored.all:
                store.delete(variant.key)
            return elapsed, stored

        deliver_once()  # warm-up: imports, the client's connection pool, codec initialisation
        srgb = imaging.to_srgb(image)
        encode_s = {variant.value: 0.0 for variant in VARIANTS}
        for variant in VARIANTS:
            started = time.perf_counter()
            encode_variant(srgb, variant, image_format)
            encode_s[variant.value] = time.perf_counter() - started
        del srgb

        baseline_rss_kb = _status_kb("VmRSS")
        exact_peak = _reset_peak_rss()
        totals, stored = [], None
        for _ in range(repeat):
            elapsed, stored = deliver_once()
            totals.append(elapsed)
        peak_rss_kb = _status_kb("VmHWM")  # without the reset: the whole process's peak

        tracemalloc.start()
        deliver_once()
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

    assert stored is not None
    return {
        "backend": backend,
        "format": image_format,
        "runs": repeat,
        "total_s": totals,
        "encode_s": encode_s,
        "sizes": {variant.variant.value: variant.size for variant in stored.all},
        "traced_peak_mb": traced_peak / 2**20,
        "baseline_rss_mb": baseline_rss_kb / 1024,
        "peak_rss_mb": peak_rss_kb / 1024,
        "exact_peak": exact_peak,
    }


@contextmanager
def emulator() -> Iterator[str]:
    """gcp-storage-emulator in its own process, so its work does not count as ours."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host=127.0.0.1", f"--port={port}"]
    command += ["--in-memory", "--default-bucket=renders", "-q"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("gcp-storage-emulator did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _row(case: dict[str, Any]) -> str:
    totals = case["total_s"]
    encode = case["encode_s"]
    sizes = case["sizes"]
    peak = "peak" if case["exact_peak"] else "peak*"
    return (
        f"{case['backend']:<6} {case['format']:<5} "
        f"{statistics.median(totals):6.2f} {min(totals):6.2f} {max(totals):6.2f}   "
        f"{encode['master']:6.2f} {encode['web']:5.2f} {encode['thumbnail']:5.2f} {sum(encode.values()):6.2f}   "
        f"{sizes['master'] / 2**20:7.2f} {sizes['web'] / 2**10:7.0f} {sizes['thumbnail'] / 2**10:6.1f}   "
        f"{case['traced_peak_mb']:7.1f} {case['baseline_rss_mb']:7.0f} {case['peak_rss_mb']:6.0f} "
        f"(+{case['peak_rss_mb'] - case['baseline_rss_mb']:.0f} {peak})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="measured deliveries per case (after one warm-up)")
    parser.add_argument("--formats", default=",".join(FORMATS), help="master formats, comma-separated")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="local and/or gcs")
    parser.add_argument("--case", nargs=2, metavar=("BACKEND", "FORMAT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(measure(args.case[0], args.case[1], args.repeat)))
        return
    formats = [name.strip().upper() for name in args.formats.split(",") if name.strip()]
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    for name in formats:
        if name not in FORMATS:
            parser.error(f"--formats: {name!r} is not one of {', '.join(FORMATS)}")
    for name in backends:
        if name not in BACKENDS:
            parser.error(f"--backends: {name!r} is not one of {', '.join(BACKENDS)}")

    print(f"Delivery of a {SIDE}x{SIDE} render: master + web WebP (2048) + thumbnail WebP (300), encoded in")
    print(
        f"parallel threads and uploaded; {args.repeat} measured runs per case after a warm-up; {os.cpu_count()} CPUs."
    )
    print("total = encode + upload wall time; encode = each variant alone, one after another (no upload).")
    print("memory: tracemalloc peak (Python objects: encoded bytes) and process RSS, MB, in the measured runs.")
    print(f"load average before: {' '.join(f'{load:.1f}' for load in os.getloadavg())} (other work skews the times)")
    print()
    print(
        "store  fmt   total: median   min    max   encode: master  web thumb    sum   "
        "size: master MB web KB thumb KB   traced  RSS:base  peak"
    )
    with emulator() as gcs_url:
        env = {**os.environ, "STORAGE_EMULATOR_HOST": gcs_url}
        for backend in backends:
            for image_format in formats:
                command = [sys.executable, "-m", "render_assets.bench.delivery", "--repeat", str(args.repeat)]
                command += ["--case", backend, image_format]
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    print(f"{backend:<6} {image_format:<5} failed:\n{done.stderr[-2000:]}")
                    continue
                print(_row(json.loads(done.stdout.strip().splitlines()[-1])), flush=True)
    print(f"\nload average after: {' '.join(f'{load:.1f}' for load in os.getloadavg())}")


if __name__ == "__main__":
    main()
