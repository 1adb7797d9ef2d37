"""What the provider layer adds to a render, apart from the provider's own latency:

- fitting a native image to the exact requested size (centre-crop, Lanczos, mild unsharp mask)
  for the cases true 4K meets (Gemini 4K, OpenAI at its pixel limit, Imagen 2K, small sizes);
- the failover's bookkeeping per job (circuit breaker + retry budget round trips to Redis);
- the import cost of the provider SDKs, which the code location never pays.

    .venv/bin/python -m render_assets.bench.providers [--repeat 5] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import uuid

from PIL import Image

CASES = [  # (what, native size, requested size)
    ("gemini 4K 1:1 -> 4096x4096", (4096, 4096), (4096, 4096)),
    ("gemini 4K 16:9 -> 3840x2160", (5456, 3072), (3840, 2160)),
    ("openai 2880^2 -> 4096x4096", (2880, 2880), (4096, 4096)),
    ("openai 3840x2160 -> 3840x2160", (3840, 2160), (3840, 2160)),
    ("imagen 2K 16:9 -> 3840x2160", (2816, 1536), (3840, 2160)),
    ("gemini 1K 4:3 -> 1024x768", (1184, 880), (1024, 768)),
]


def _source(size: tuple[int, int]) -> Image.Image:
    # Noise enlarged from a small tile: photo-like detail without paying for 16 MP of randomness.
    tile = Image.effect_noise((max(1, size[0] // 8), max(1, size[1] // 8)), 60).convert("RGB")
    return tile.resize(size, Image.Resampling.BILINEAR)


def bench_fitting(repeat: int) -> None:
    from render_assets.providers.fitting import fit_exact

    print(f"fit_exact, median of {repeat} after one warm-up (ms)")
    print(f"  {'case':34} {'method':20} {'ms':>8}")
    for name, native, (width, height) in CASES:
        source = _source(native)
        fit_exact(source, width, height)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fitted = fit_exact(source, width, height)
            times.append((time.perf_counter() - start) * 1000)
        assert fitted.image.size == (width, height)
        print(f"  {name:34} {fitted.method:20} {statistics.median(times):8.1f}")


def bench_failover(redis_url: str, jobs: int) -> None:
    import redis

    from render_assets.providers.base import GeneratedImage, GenerationRequest
    from render_assets.providers.budget import BudgetSettings, RetryBudget
    from render_assets.providers.circuit_breaker import BreakerSettings, CircuitBreaker
    from render_assets.providers.failover import Failover

    class Instant:
        name = "instant"
        image = Image.new("RGB", (256, 256))

        def generate(self, request: GenerationRequest) -> GeneratedImage:
            return GeneratedImage(image=self.image, provider=self.name, model="none", latency_s=0.0)

    client = redis.Redis.from_url(redis_url)
    prefix = f"bench-providers-{uuid.uuid4().hex[:8]}"
    breaker = CircuitBreaker(client, BreakerSettings(), prefix=f"{prefix}:breaker")
    request = GenerationRequest(prompt="p", negative_prompt="", width=256, height=256, seed=1)
    times = []
    try:
        for job in range(jobs):
            budget = RetryBudget(client, f"{prefix}:budget:{job}", BudgetSettings())
            start = time.perf_counter()
            Failover([Instant()], breaker, budget).generate(request)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    times.sort()
    print(f"failover bookkeeping per job, {jobs} jobs against {redis_url.split('@')[-1]} (ms)")
    print(f"  median {statistics.median(times):.2f}  p95 {times[int(len(times) * 0.95) - 1]:.2f}  max {times[-1]:.2f}")


def bench_imports() -> None:
    print("import time in a fresh process (s)")
    for module in (
        "render_assets.providers.google_image",
        "render_assets.providers.openai_image",
        "google.cloud.aiplatform_v1",
        "openai",
    ):
        probe = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
        out = subprocess.run([sys.executable, "-W", "ignore", "-c", probe], capture_output=True, text=True, check=True)
        print(f"  {module:40} {float(out.stdout):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    bench_fitting(args.repeat)
    bench_failover(args.redis, args.jobs)
    bench_imports()


if __name__ == "__main__":
    main()
