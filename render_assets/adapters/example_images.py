"""The bundled example images (`render_assets/data/examples/`): the site photo and mask the
example jobs name as `https://examples.render-assets.invalid/<name>` (`domain/url_policy.py`).

The fetcher reads them in place of a download, and the progress server serves them to the demo
page. A name is read only when it is a bare file name the policy accepts and a regular file of
that name is in the folder: a request can never reach another file.
"""

from __future__ import annotations

from pathlib import Path

from render_assets.domain.url_policy import EXAMPLE_IMAGE_NAME

EXAMPLE_IMAGES = Path(__file__).resolve().parent.parent / "data" / "examples"
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg"}


def names(folder: Path = EXAMPLE_IMAGES) -> frozenset[str]:
    """The example images present: well-named regular files (no symlink leads out of the folder)."""
    if not folder.is_dir():
        return frozenset()
    return frozenset(
        path.name
        for path in folder.iterdir()
        if EXAMPLE_IMAGE_NAME.fullmatch(path.name) and path.is_file() and not path.is_symlink()
    )


def find(name: str, folder: Path = EXAMPLE_IMAGES) -> Path | None:
    """The file of the example image `name`, or None when the folder holds none of that name."""
    # Only names from the listing: never a path built from the request.
    return folder / name if name in names(folder) else None


def media_type(name: str) -> str:
    return MEDIA_TYPES[Path(name).suffix]
