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
    MAX_POLYGON_POINTS,
    MAX_URL_CHARS,
    MAX_USER_PROMPT_CHARS,
    InvalidJob,
    MaskReference,
    Point,
    PolygonMask,
    RectangleMask,
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
        _set("annotations", value=[{"type": "mask", "data": {"maskId": "m1"}, "note": EMAIL}]),
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
    data["annotations"] = [{"type": "textLabel", "data": "NESTED"}]
    text = json.dumps(data).replace('"NESTED"', _nested(depth))
    assert len(text) < MAX_PAYLOAD_BYTES
    _rejection(text)


def test_deeply_nested_annotation_data_as_dict_fails_cleanly() -> None:
    nested: Any = SECRET
    for _ in range(100_000):
        nested = [nested]
    data = _job()
    data["annotations"] = [{"type": "textLabel", "data": nested}]
    message = _rejection(data)
    assert "annotations.0.data" in message


def test_moderately_nested_annotation_data_is_accepted() -> None:
    data = _job()
    data["annotations"] = [{"type": "textLabel", "data": json.loads(_nested(50))}]
    assert parse_job(json.dumps(data)).annotations[0].type == "textLabel"


# Mask annotations: a reference to the uploaded image, or rectangles and polygons


def _rectangle(x: Any = 0.25, y: Any = 0.5, width: Any = 0.5, height: Any = 0.25, **extra: Any) -> dict[str, Any]:
    return {"type": "mask", "data": {"shape": "rectangle", "x": x, "y": y, "width": width, "height": height, **extra}}


def _polygon(points: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "mask", "data": {"shape": "polygon", "points": points, **extra}}


TRIANGLE = [{"x": 0, "y": 1}, {"x": 0.5, "y": 0}, {"x": 1, "y": 1}]


def _drawn(*annotations: dict[str, Any]) -> dict[str, Any]:
    """A job whose mask is drawn: no maskImageUrl, the given mask annotations among the others."""
    data = _job()
    data.pop("maskImageUrl", None)
    data["annotations"] = [*annotations, {"type": "textLabel", "data": {"text": "keep the shed"}}]
    return data


def test_a_mask_reference_with_the_mask_image_is_the_web_apps_job() -> None:
    job = parse_job(example("frontyard_starter"))
    assert job.annotations[0].mask == MaskReference(maskId="m1")
    assert job.mask_shapes() == ()
    assert job.has_mask()


def test_drawn_shapes_come_back_typed_in_order() -> None:
    job = parse_job(json.dumps(_drawn(_rectangle(x=0, y=0, width=1, height=1, maskId="m2"), _polygon(TRIANGLE))))
    assert job.mask_shapes() == (
        RectangleMask(shape="rectangle", x=0.0, y=0.0, width=1.0, height=1.0, maskId="m2"),
        PolygonMask(shape="polygon", points=[Point(x=0, y=1), Point(x=0.5, y=0), Point(x=1, y=1)]),
    )
    assert job.has_mask()
    assert [annotation.mask for annotation in job.annotations][2] is None  # a textLabel


def test_a_job_without_any_mask_has_none() -> None:
    job = parse_job(example())
    assert job.mask_shapes() == ()
    assert not job.has_mask()


def test_a_mask_reference_without_the_mask_image_marks_nothing() -> None:
    job = parse_job(_drawn({"type": "mask", "data": {"maskId": "m1"}}))
    assert not job.has_mask()


@pytest.mark.parametrize(
    "shape",
    [
        _rectangle(x=0, y=0, width=1, height=1),
        _rectangle(x=0.75, y=0.5, width=0.25, height=0.5),  # touching the right and bottom edges
        _rectangle(x=0.1, y=0.2, width=1e-9, height=0.3),
        _polygon(TRIANGLE * (MAX_POLYGON_POINTS // 3)),
        _polygon([{"x": 0.0, "y": 0.0}, {"x": 1.0, "y": 0.0}, {"x": 1.0, "y": 1.0}], maskId="m1"),
    ],
)
def test_boundary_mask_shapes_are_accepted(shape: dict[str, Any]) -> None:
    data = _drawn(shape)
    assert parse_job(data).model_dump(mode="json", exclude_none=True) == data


def test_the_mask_image_with_a_mask_reference_shape_is_still_both() -> None:
    # A shape carrying the image's maskId is still a drawn mask: the image and the shapes would compete.
    data = _job()
    data["maskImageUrl"] = "https://example.com/uploads/frontyard-mask.png"
    data["annotations"] = [{"type": "mask", "data": {"maskId": "m1"}}, _rectangle(maskId="m1")]
    message = _rejection(data)
    assert message == (
        "invalid job payload: maskImageUrl: give the mask as maskImageUrl or as mask shapes in annotations, not both"
    )


def _point(index: int, **point: Any) -> Mutation:
    points = [dict(each) for each in TRIANGLE]
    points[index].update(point)
    return _set("annotations", value=[_polygon(points)])


# (the mask annotations, the field the message must name, a fragment of the message)
MASK_REJECTIONS: dict[str, tuple[list[dict[str, Any]], str, str]] = {
    "no data": ([{"type": "mask"}], "annotations.0.data", "a mask needs data"),
    "null data": ([{"type": "mask", "data": None}], "annotations.0.data", "a mask needs data"),
    "data not an object": ([{"type": "mask", "data": [SECRET]}], "annotations.0.data", "must be an object"),
    "empty data": ([{"type": "mask", "data": {}}], "annotations.0.data.maskId", "Field required"),
    "bad mask id": ([{"type": "mask", "data": {"maskId": SECRET + "/"}}], "annotations.0.data.maskId", ""),
    "extra key": (
        [{"type": "mask", "data": {"maskId": "m1", "colour": SECRET}}],
        "annotations.0.data.colour",
        "Extra inputs are not permitted",
    ),
    "odd extra key": ([_rectangle(**{SECRET + " key": 1})], "annotations.0.data.<unnamed>", "Extra inputs"),
    "unknown shape": ([{"type": "mask", "data": {"shape": SECRET}}], "annotations.0.data.shape", "must be"),
    "shape not a string": ([{"type": "mask", "data": {"shape": [SECRET]}}], "annotations.0.data.shape", "must be"),
    "missing coordinate": (
        [{"type": "mask", "data": {"shape": "rectangle", "x": 0, "y": 0, "width": 1}}],
        "annotations.0.data.height",
        "Field required",
    ),
    "x below 0": ([_rectangle(x=-0.25)], "annotations.0.data.x", "must be between 0 and 1"),
    "y above 1": ([_rectangle(y=1.5)], "annotations.0.data.y", "must be between 0 and 1"),
    "width 0": ([_rectangle(width=0)], "annotations.0.data.width", "must be above 0"),
    "height negative": ([_rectangle(height=-0.1)], "annotations.0.data.height", "must be"),
    "past the right edge": ([_rectangle(x=0.75, width=0.5)], "annotations.0.data.width", "x + width must be at most 1"),
    "past the bottom edge": ([_rectangle(y=0.5, height=0.75)], "annotations.0.data.height", "y + height must be"),
    "coordinate as string": ([_rectangle(x="0.5")], "annotations.0.data.x", "valid number"),
    "coordinate as bool": ([_rectangle(width=True)], "annotations.0.data.width", "valid number"),
    "two points": ([_polygon(TRIANGLE[:2])], "annotations.0.data.points", "at least 3"),
    "too many points": ([_polygon(TRIANGLE * 86)], "annotations.0.data.points", f"at most {MAX_POLYGON_POINTS}"),
    "points not a list": ([_polygon(SECRET)], "annotations.0.data.points", "valid list"),
    "point without y": ([_polygon([*TRIANGLE[:2], {"x": 0.5}])], "annotations.0.data.points.2.y", "Field required"),
    "point with z": ([_polygon([*TRIANGLE[:2], {"x": 0.5, "y": 0.5, "z": 1}])], "annotations.0.data.points.2.z", ""),
    "second mask bad": (
        [_rectangle(), _polygon([*TRIANGLE, {"x": 0.5, "y": 1.25}])],
        "annotations.1.data.points.3.y",
        "must be between 0 and 1",
    ),
}


@pytest.mark.parametrize("case", sorted(MASK_REJECTIONS))
def test_bad_mask_data_is_refused_naming_its_path(case: str) -> None:
    annotations, field, fragment = MASK_REJECTIONS[case]
    message = _rejection(_drawn(*annotations))
    problems = dict(part.split(": ", 1) for part in message.removeprefix("invalid job payload: ").split("; "))
    assert fragment in problems[field], message


@pytest.mark.parametrize(
    ("token", "field"),
    [
        ("NaN", "annotations.0.data.points.1.x"),
        ("Infinity", "annotations.0.data.points.1.x"),
        ("-1e999", "annotations.0.data.points.1.x"),
        ("9" * 5_000, "annotations.0.data.points.1.x"),
    ],
)
def test_non_finite_mask_coordinates_are_refused_naming_the_point(token: str, field: str) -> None:
    data = _drawn(_polygon([{"x": 0, "y": 0}, {"x": "TOKEN", "y": 0.5}, {"x": 1, "y": 1}]))
    message = _rejection(json.dumps(data).replace('"TOKEN"', token))
    assert f"{field}: must be a finite number" in message


@pytest.mark.parametrize(
    "shape",
    [_rectangle(x=0.123456789, y=0.5, width=0.25, height=0.25), _polygon([*TRIANGLE[:2], {"x": 0.987654321, "y": 1}])],
)
def test_mask_refusals_echo_no_coordinate(shape: dict[str, Any]) -> None:
    data = _drawn(shape, _rectangle(x=2.718281828))
    message = _rejection(data)
    assert "annotations.1.data.x" in message
    for value in ("0.123456789", "0.987654321", "2.718281828"):
        assert value not in message


def test_mask_image_and_drawn_shapes_are_refused_together() -> None:
    data = _job()
    data["maskImageUrl"] = f"https://example.com/uploads/{SECRET}.png"
    data["annotations"] = [_polygon(TRIANGLE)]
    message = _rejection(json.dumps(data))
    assert "maskImageUrl: give the mask as maskImageUrl or as mask shapes in annotations, not both" in message


def test_other_annotations_keep_any_storable_json() -> None:
    data = _drawn()
    data["annotations"] = [
        {"type": "textLabel", "data": {"shape": "circle", "x": 7, "points": []}},
        {"type": "assetInstance", "data": [1, "two", None]},
        {"type": "textLabel"},
    ]
    assert parse_job(data).model_dump(mode="json", exclude_none=True)["annotations"][:2] == data["annotations"][:2]
