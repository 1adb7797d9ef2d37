"""The example designs the demo page offers: the JSON job payloads in a folder (`examples/`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Examples:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def names(self) -> list[str]:
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(path.stem for path in self.folder.glob("*.json") if _NAME.match(path.stem))

    def payload(self, name: str) -> dict[str, Any] | None:
        # Only names from the listing: a request cannot reach outside the folder.
        if self.folder is None or name not in self.names():
            return None
        try:
            data = json.loads((self.folder / f"{name}.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def listing(self) -> list[dict[str, Any]]:
        listed = []
        for name in self.names():
            payload = self.payload(name) or {}
            prompt = payload.get("prompt") if isinstance(payload.get("prompt"), dict) else {}
            settings = payload.get("settings") if isinstance(payload.get("settings"), dict) else {}
            listed.append(
                {
                    "name": name,
                    "title": str((prompt or {}).get("user") or name),
                    "resolution": (settings or {}).get("resolution"),
                    "tier": payload.get("subscriptionTier"),
                }
            )
        return listed
