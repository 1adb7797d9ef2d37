"""The built-in plant catalogue (`render_assets/data/plants.json`): common and scientific names,
growth form and visual traits, so a prompt says what a plant looks like, not only its name.

A design's plant name matches an entry by its common name, scientific name or an alias, ignoring
case and punctuation; failing that, by the longest of those found as whole words inside it
("dwarf Japanese maple tree" is a Japanese Maple).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CATALOGUE = Path(__file__).resolve().parent.parent / "data" / "plants.json"
FORMS = ("tree", "shrub", "perennial", "grass", "groundcover", "succulent", "vine", "bamboo", "fern")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


class CatalogueError(ValueError):
    """The catalogue file is malformed; the message names the entry and field."""


@dataclass(frozen=True)
class Plant:
    common: str
    scientific: str
    form: str
    traits: str
    aliases: tuple[str, ...] = ()


def normalized(name: str) -> str:
    return " ".join(_NOT_WORD.sub(" ", name.lower()).split())


def _plant(index: int, entry: object) -> Plant:
    if not isinstance(entry, dict):
        raise CatalogueError(f"plants[{index}] is not an object")
    for key in ("common", "scientific", "form", "traits"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise CatalogueError(f"plants[{index}].{key} must be a non-empty string")
    if entry["form"] not in FORMS:
        raise CatalogueError(f"plants[{index}].form {entry['form']!r} is not one of {', '.join(FORMS)}")
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(alias, str) and alias.strip() for alias in aliases):
        raise CatalogueError(f"plants[{index}].aliases must be a list of non-empty strings")
    unknown = set(entry) - {"common", "scientific", "form", "traits", "aliases"}
    if unknown:
        raise CatalogueError(f"plants[{index}] has unknown fields: {', '.join(sorted(unknown))}")
    return Plant(entry["common"], entry["scientific"], entry["form"], entry["traits"], tuple(aliases))


class PlantCatalogue:
    def __init__(self, plants: list[Plant]) -> None:
        self.plants = tuple(plants)
        self._by_name: dict[str, Plant] = {}
        for plant in self.plants:
            for name in (plant.common, plant.scientific, *plant.aliases):
                key = normalized(name)
                if key in self._by_name and self._by_name[key] != plant:
                    raise CatalogueError(f"plant name {name!r} belongs to two entries")
                self._by_name[key] = plant
        # Longest names first, so "japanese black pine" wins over "pine".
        self._phrases = sorted(self._by_name, key=lambda key: (-len(key), key))

    @classmethod
    def load(cls, path: Path) -> PlantCatalogue:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise CatalogueError(f"plant catalogue {path.name} cannot be read: {error}") from None
        entries = document.get("plants") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise CatalogueError(f"plant catalogue {path.name} has no 'plants' list")
        return cls([_plant(index, entry) for index, entry in enumerate(entries)])

    def find(self, name: str) -> Plant | None:
        key = normalized(name)
        if not key:
            return None
        if key in self._by_name:
            return self._by_name[key]
        padded = f" {key} "
        for phrase in self._phrases:
            if f" {phrase} " in padded:
                return self._by_name[phrase]
        return None


@lru_cache(maxsize=1)
def builtin() -> PlantCatalogue:
    return PlantCatalogue.load(CATALOGUE)
