"""Peak memory of refusing each poisoned provider reply (and of decoding valid ones, to compare):
`make bench-poison`.

Each case runs in a fresh Python process, so no earlier case's allocations count. Two figures:
- decode: `decode_image` on the base64 text, as the OpenAI and Imagen clients hand it over.
  Baseline: after imports, with the text loaded.
- reply: one `generate` through the real SDK client (HTTP read, JSON parse, decode, fitting)
  against the local fake APIs, which run in this process, not the measured one. Baseline: after
  one valid 1024x1024 call (imports and connection warm).
Peak: the kernel's high-water mark (VmHWM, reset through /proc/self/clear_refs after the
baseline). Linux only. It drives the test fakes, so it lives beside them and runs from a checkout.
About 4 minutes, mostly SDK imports (one fresh process per case).

    .venv/bin/python -m render_assets_tests.benchmarks.poisoned_images [--only NAME ...] [--no-replies]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

MIB = 1024 * 1024
REPLY_ENDPOINTS = ("gemini", "openai")
VALID = {  # valid images, to compare: (what, make)
    "valid_4096_noise_png": "4096x4096 RGB noise PNG (the worst-compressing 4K render)",
    "valid_4096_picture_png": "4096x4096 RGB picture PNG (the fake's drawing)",
    "valid_40mp_rgba_png": "6000x6666 RGBA gradient PNG (the largest image accepted)",
}


def _rss_mib(field: str) -> float:
    status = Path("/proc/self/status").read_text()
    match = re.search(rf"{field}:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (and ru_maxrss) to the current RSS


def _measure(call: Any) -> dict[str, Any]:
    from render_assets.providers.base import ProviderError

    baseline = _rss_mib("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    try:
        call()
        outcome = "decoded"
    except ProviderError as error:
        outcome = str(error)
    except MemoryError:
        outcome = "MemoryError"
    return {
        "baseline_mib": round(baseline, 1),
        "peak_mib": round(_rss_mib("VmHWM"), 1),
        "added_mib": round(_rss_mib("VmHWM") - baseline, 1),
        "seconds": round(time.perf_counter() - start, 3),
        "outcome": outcome,
    }


# ---- in the measured process -------------------------------------------------------------------


def child_decode(path: str, mime_type: str) -> dict[str, Any]:
    from render_assets.providers.decoding import decode_image

    text = Path(path).read_text()
    return _measure(lambda: decode_image("bench", text, mime_type=mime_type or None))


def child_reply(endpoint: str, url: str, size: str) -> dict[str, Any]:
    from render_assets.providers.base import GenerationRequest
    from render_assets.providers.google_image import GoogleImageProvider
    from render_assets.providers.openai_image import OpenAIImageProvider

    provider: Any
    if endpoint == "openai":
        provider = OpenAIImageProvider(api_key="sk-bench-not-a-key", model="gpt-image-2", base_url=f"{url}/v1")
    else:
        provider = GoogleImageProvider(project="bench", region="global", model="gemini-bench", api_endpoint=url)
    width, height = (int(side) for side in size.split("x"))

    def request(w: int, h: int) -> GenerationRequest:
        return GenerationRequest(prompt="a garden", negative_prompt="", width=w, height=h, seed=1)

    provider.generate(request(1024, 1024))  # warm: imports, connection
    return _measure(lambda: provider.generate(request(width, height)))


# ---- in the bench process ----------------------------------------------------------------------


def _valid_png(name: str) -> bytes:
    buffer = io.BytesIO()
    if name == "valid_4096_noise_png":
        image = Image.merge("RGB", [Image.effect_noise((4096, 4096), 120) for _ in range(3)])
    elif name == "valid_4096_picture_png":
        from render_assets_tests.fakes.image_apis import picture

        image = picture(4096, 4096, (200, 80, 40))
    else:
        gradient = Image.linear_gradient("L").resize((6000, 6666))
        image = Image.merge("RGBA", [gradient, gradient.transpose(Image.Transpose.ROTATE_180), gradient, gradient])
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _child(*args: str) -> dict[str, Any]:
    command = [sys.executable, "-W", "ignore", "-m", "render_assets_tests.benchmarks.poisoned_images", "--child", *args]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"outcome": f"process failed ({out.returncode}): {out.stderr.strip().splitlines()[-1:]}"}
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def bench_decode(names: list[str]) -> None:
    from render_assets.providers.decoding import MAX_ENCODED_CHARS
    from render_assets_tests.fakes.poisons import FILE_POISONS, poison

    print("decode_image on the base64 text, each in a fresh process (MiB; peak and added RSS over the baseline)")
    print(f"  {'case':24} {'base64':>8} {'baseline':>9} {'peak':>7} {'added':>7} {'s':>6}  outcome")
    cases = [n for n in [*FILE_POISONS, "oversize_image", *VALID] if not names or n in names]
    with tempfile.TemporaryDirectory() as folder:
        for name in cases:
            path = Path(folder) / f"{name}.b64"
            if name in VALID:
                path.write_bytes(base64.b64encode(_valid_png(name)))
                mime_type = "image/png"
            elif name == "oversize_image":
                path.write_bytes(b"A" * (MAX_ENCODED_CHARS + 4))
                mime_type = "image/png"
            else:
                item = poison(name)
                path.write_bytes(base64.b64encode(item.data))
                mime_type = item.mime_type
            size = path.stat().st_size / MIB
            result = _child("decode", str(path), mime_type)
            path.unlink()
            _print_row(name, size, result)


def bench_replies(names: list[str]) -> None:
    from render_assets_tests.fakes.image_apis import FakeImageApis
    from render_assets_tests.fakes.poisons import POISONS, poison

    print()
    print("one generate() through the real SDK client against the fake APIs, each in a fresh process (MiB)")
    print(f"  {'endpoint case':35} {'baseline':>9} {'peak':>7} {'added':>7} {'s':>6}  outcome")
    with FakeImageApis() as fake:
        for endpoint in REPLY_ENDPOINTS:
            valid = "valid_4096x4096" if endpoint == "gemini" else "valid_3840x2160"
            for name in [valid, *POISONS]:
                if names and name not in names:
                    continue
                if endpoint == "openai" and name in POISONS and poison(name).mime_type != "image/png":
                    continue  # OpenAI's replies declare no type: only what it was asked (PNG) applies
                fake.heal(endpoint)
                fake.fail(endpoint, "slow", delay_s=0.0, times=1)  # the warm-up call: a valid reply
                if name in POISONS:
                    fake.fail(endpoint, "poison", poison=name, times=1)
                size = name.removeprefix("valid_") if name.startswith("valid_") else "1024x1024"
                _print_row(f"{endpoint} {name}", None, _child("reply", endpoint, fake.url, size), wide=True)


def _print_row(name: str, size: float | None, result: dict[str, Any], *, wide: bool = False) -> None:
    if "peak_mib" not in result:
        print(f"  {name:{35 if wide else 24}} {result['outcome']}")
        return
    figures = f"{result['baseline_mib']:9.1f} {result['peak_mib']:7.1f} {result['added_mib']:7.1f}"
    outcome = result["outcome"].removeprefix("malformed reply: ")
    column = f"{name:35}" if wide else f"{name:24} {size:8.1f}"
    print(f"  {column} {figures} {result['seconds']:6.2f}  {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=[], help="case names (poisons, valid_*)")
    parser.add_argument("--no-replies", action="store_true", help="skip the SDK measurements")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, *rest = args.child
        result = child_decode(*rest) if mode == "decode" else child_reply(*rest)
        print(json.dumps(result))
        return
    bench_decode(args.only)
    if not args.no_replies:
        bench_replies(args.only)


if __name__ == "__main__":
    main()
