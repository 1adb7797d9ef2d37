"""The README documents every environment variable the code reads."""

from __future__ import annotations

from pathlib import Path

from render_assets import config

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_variable_is_in_the_readme_table() -> None:
    text = README.read_text()
    missing = [variable.name for variable in config.ALL if f"| `{variable.name}` |" not in text]
    assert missing == []
