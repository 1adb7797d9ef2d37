"""`parse_job`: the web app's payloads pass as they are; bad ones fail naming the field, never echoing the value."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from render_assets.domain.payload import (
    MAX_ANNOTATIONS,
    MAX_PAYLOAD_BYTES,
    MAX_URL_CHARS,
    MAX_USER_PROMPT_CHARS,
    InvalidJob,
    RenderJob,
    parse_job,
)
from render_assets_tests.payloads import EXAMPLES, example

SECRET = "SECRET-PROMPT-TEXT"
EMAIL = "jane.doe.secret@example.com"

Mutation = Callable[[dict[str, Any]], None]


def _job(**settings: Any) -> dict[str, Any]:
    data = copy.deepcopy(example())
    # Every rejection test carries the secret in a valid field too: no message may echo input at all.
    data["prompt"]["user"] = f"{SECRET} for {EMAIL}"
    data["settings"].update(settings)
    return data


def _as_input(data: dict[str, Any], as_json: bool) -> Any:
    return json.dumps(data) if as_json else data


def _rejection(data: Any) -> str:
    with pytest.raises(InvalidJob) as caught:
        parse_job(data)
    message = str(caught.value)
    assert message.startswith("invalid job payload")
    assert SECRET not in message
    assert EMAIL not in message
    return message


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda path: path.stem)
def test_every_example_is_accepted_as_is(path: Path) -> None:
    text = path.read_text()
    expected = json.loads(text)
    for given in (text, text.encode(), expected):
        job = parse_job(given)
        assert isinstance(job, RenderJob)
        assert job.model_dump(mode="json", exclude_none=True) == expected


def test_json_string_and_dict_give_the_same_job() -> None:
    data = example("frontyard_starter")
    from_dict = parse_job(data)
    assert parse_job(json.dumps(data)) == from_dict
    assert from_dict.renderId == "example-frontyard-0002"
    assert from_dict.settings.size == (1536, 1024)
    assert from_dict.maskImageUrl == "https://example.com/uploads/frontyard-mask.png"
    assert [annotation.type for annotation in from_dict.annotations] == [
        "mask",
        "assetInstance",
        "assetInstance",
        "assetInstance",
    ]


@pytest.mark.parametrize(
    ("resolution", "size"),
    [("256x4096", (256, 4096)), ("4096x256", (4096, 256)), ("4096x4096", (4096, 4096)), ("256x256", (256, 256))],
)
def test_boundary_resolutions_are_accepted(resolution: str, size: tuple[int, int]) -> None:
    assert parse_job(_job(resolution=resolution)).settings.size == size


@pytest.mark.parametrize("quality", [1, 100, None])
def test_boundary_qualities_are_accepted(quality: int | None) -> None:
    assert parse_job(_job(quality=quality)).settings.quality == quality


def test_quality_may_be_absent() -> None:
    data = _job()
    del data["settings"]["quality"]
    assert parse_job(data).settings.quality is None


def test_mask_image_url_may_be_absent() -> None:
    data = _job()
    data.pop("maskImageUrl", None)
    assert parse_job(data).maskImageUrl is None


def test_force_manual_review_is_accepted() -> None:
    assert parse_job(json.dumps(_job(forceManualReview=True))).settings.forceManualReview is True


def _set(*path: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


def _delete(field: str) -> Mutation:
    return lambda data: data.pop(field)


def _many_annotations(data: dict[str, Any]) -> None:
    data["annotations"] = [{"type": "textLabel", "data": {"text": SECRET}}] * (MAX_ANNOTATIONS + 1)


# (mutation, the field the message must name, the offending value it must not contain)
REJECTIONS: dict[str, tuple[Mutation, str, str]] = {
    "missing field": (_delete("sourceImageUrl"), "sourceImageUrl: Field required", SECRET),
    "missing nested field": (lambda data: data["settings"].pop("provider"), "settings.provider", SECRET),
    "extra top-level field": (_set("internalNote", value=SECRET), "internalNote", SECRET),
    "extra settings field": (_set("settings", "seed", value=EMAIL), "settings.seed", EMAIL),
    "extra prompt field": (_set("prompt", "assistant", value=SECRET), "prompt.assistant", SECRET),
    "quality as string": (_set("settings", "quality", value="8137"), "settings.quality", "8137"),
    "quality as float": (_set("settings", "quality", value=81.37), "settings.quality", "81.37"),
    "quality nan": (_set("settings", "quality", value=float("nan")), "settings.quality", "nan"),
    "quality inf": (_set("settings", "quality", value=float("inf")), "settings.quality", "inf"),
    "quality zero": (_set("settings", "quality", value=0), "settings.quality", SECRET),
    "quality 101": (_set("settings", "quality", value=101), "settings.quality", "101"),
    "quality bool": (_set("settings", "quality", value=True), "settings.quality", "True"),
    "id with slash": (_set("renderId", value="render/SECRET-ID"), "renderId", "SECRET-ID"),
    "id with dots": (_set("projectId", value=".."), "projectId", "'..'"),
    "id with space": (_set("userId", value="user SECRET-ID"), "userId", "SECRET-ID"),
    "id of 65 chars": (_set("organizationId", value="Q" * 65), "organizationId", "Q" * 65),
    "empty id": (_set("sceneId", value=""), "sceneId", SECRET),
    "id with newline": (_set("renderId", value="render-SECRET-ID\n"), "renderId", "SECRET-ID"),
    "side 255": (_set("settings", "resolution", value="255x1024"), "settings.resolution", "255x1024"),
    "side 4097": (_set("settings", "resolution", value="1024x4097"), "settings.resolution", "1024x4097"),
    "resolution with star": (_set("settings", "resolution", value="1024*1024"), "settings.resolution", "1024*1024"),
    "resolution without width": (_set("settings", "resolution", value="x1024"), "settings.resolution", "x1024"),
    "unknown provider": (_set("settings", "provider", value="SECRET-provider"), "settings.provider", SECRET),
    "unknown format": (_set("settings", "format", value="GIF-SECRET"), "settings.format", "GIF-SECRET"),
    "unknown tier": (_set("subscriptionTier", value="SECRET-enterprise"), "subscriptionTier", SECRET),
    "unknown annotation type": (
        _set("annotations", value=[{"type": "SECRET-kind", "data": {}}]),
        "annotations.0.type",
        "SECRET-kind",
    ),
    "extra annotation field": (
        _set("annotations", value=[{"type": "mask", "data": {}, "note": EMAIL}]),
        "annotations.0.note",
        EMAIL,
    ),
    "too many annotations": (_many_annotations, "annotations", SECRET),
    "user prompt too long": (
        _set("prompt", "user", value=SECRET + "x" * MAX_USER_PROMPT_CHARS),
        "prompt.user",
        SECRET,
    ),
    "mask url too long": (
        _set("maskImageUrl", value=f"https://x.test/{EMAIL}/" + "m" * MAX_URL_CHARS),
        "maskImageUrl",
        EMAIL,
    ),
    "settings not an object": (_set("settings", value=SECRET), "settings", SECRET),
}


@pytest.mark.parametrize("as_json", [False, True], ids=["dict", "json"])
@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_rejection_names_the_field_and_hides_the_value(case: str, as_json: bool) -> None:
    mutate, field, offending = REJECTIONS[case]
    data = _job()
    mutate(data)
    message = _rejection(_as_input(data, as_json))
    assert field in message
    assert offending.lower() not in message.lower()


def test_every_offending_field_is_named() -> None:
    data = _job(format="TIFF", quality="high")
    data["renderId"] = "a b"
    message = _rejection(data)
    for field in ("renderId", "settings.format", "settings.quality"):
        assert field in message


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("{not json " + SECRET, "not JSON"),
        ("", "not JSON"),
        (b"\xff\xfe" + SECRET.encode(), "not JSON"),
        (json.dumps([{"renderId": SECRET}]), "expected a JSON object, got list"),
        (json.dumps(SECRET), "expected a JSON object, got str"),
        ("42", "expected a JSON object, got int"),
        (None, "expected a JSON object, got NoneType"),
        ([SECRET], "expected a JSON object, got list"),
    ],
)
def test_payload_that_is_not_a_json_object(given: Any, expected: str) -> None:
    assert expected in _rejection(given)


@pytest.mark.parametrize("encode", [False, True], ids=["str", "bytes"])
def test_payload_over_the_size_limit(encode: bool) -> None:
    data = _job()
    data["annotations"] = [{"type": "textLabel", "data": {"text": SECRET * (MAX_PAYLOAD_BYTES // len(SECRET))}}]
    text = json.dumps(data)
    assert len(text) > MAX_PAYLOAD_BYTES
    message = _rejection(text.encode() if encode else text)
    assert f"larger than {MAX_PAYLOAD_BYTES} bytes" in message


def test_payload_just_under_the_size_limit_is_accepted() -> None:
    data = _job()
    data["annotations"].append({"type": "textLabel", "data": {"text": ""}})
    padding = MAX_PAYLOAD_BYTES - len(json.dumps(data))
    data["annotations"][-1]["data"]["text"] = "p" * padding
    text = json.dumps(data)
    assert len(text.encode()) == MAX_PAYLOAD_BYTES
    assert len(parse_job(text).annotations) == len(example()["annotations"]) + 1


def test_size_limit_counts_utf8_bytes_of_a_string_payload() -> None:
    data = _job()
    data["annotations"] = [{"type": "textLabel", "data": {"text": "é" * (MAX_PAYLOAD_BYTES // 2 + 1000)}}]
    text = json.dumps(data, ensure_ascii=False)
    assert len(text) < MAX_PAYLOAD_BYTES < len(text.encode())
    assert "larger than" in _rejection(text)


def _nested(depth: int) -> str:
    return "[" * depth + json.dumps(SECRET) + "]" * depth


@pytest.mark.parametrize("depth", [500, 100_000])
def test_deeply_nested_annotation_data_as_json_fails_cleanly(depth: int) -> None:
    data = _job()
    data["annotations"] = [{"type": "mask", "data": "NESTED"}]
    text = json.dumps(data).replace('"NESTED"', _nested(depth))
    assert len(text) < MAX_PAYLOAD_BYTES
    _rejection(text)


def test_deeply_nested_annotation_data_as_dict_fails_cleanly() -> None:
    nested: Any = SECRET
    for _ in range(100_000):
        nested = [nested]
    data = _job()
    data["annotations"] = [{"type": "mask", "data": nested}]
    message = _rejection(data)
    assert "annotations.0.data" in message


def test_moderately_nested_annotation_data_is_accepted() -> None:
    data = _job()
    data["annotations"] = [{"type": "mask", "data": json.loads(_nested(50))}]
    assert parse_job(json.dumps(data)).annotations[0].type == "mask"
