"""How a command prints one record: JSON for scripts, `key: value` lines for people."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def print_record(value: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(value, indent=2, default=str))
    else:
        for key, item in value.items():
            print(f"{key}: {item}")
