"""Merging the per-instance results of an analysis: deterministic, complete, and refusing bad shards."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segpipe.logic.analysis_merge import ShardMalformed, ShardMissing, merge_shards
from segpipe.models import keys
from segpipe.models.analysis import OUTPUT_NAMES, AnalysisSummary, image_columns, object_columns
from segpipe.models.coco import CocoDataset
from tests.helpers.analysis_shards import Img, Obj, config, put_shards, sample_images, shard_files
from tests.unit.fakes import MemoryArtifacts

IMAGES = sample_images(7)


def _outputs(artifacts: MemoryArtifacts, analysis: int = 1) -> dict[str, bytes]:
    return {name: artifacts.objects[keys.analysis_output_key("lab", analysis, name)] for name in OUTPUT_NAMES}


def _merged(hosts: dict[str, list[Img]]) -> tuple[AnalysisSummary, dict[str, bytes]]:
    artifacts = MemoryArtifacts()
    cfg = config(images=sum(len(images) for images in hosts.values()))
    put_shards(artifacts, cfg, hosts)
    summary = merge_shards(artifacts, project="lab", analysis=1)
    return summary, _outputs(artifacts)


def _rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def test_one_host_merges_into_the_four_outputs_in_file_name_order() -> None:
    summary, outputs = _merged({"algo-1": list(reversed(IMAGES))})

    coco = json.loads(outputs["coco.json"])
    names = [image["file_name"] for image in coco["images"]]
    assert names == sorted(i.file_name for i in IMAGES)
    assert [image["id"] for image in coco["images"]] == list(range(1, len(IMAGES) + 1))
    assert all(image["status"] == "in_progress" for image in coco["images"])
    assert [a["id"] for a in coco["annotations"]] == list(range(1, summary.objects + 1))
    CocoDataset.model_validate(coco)  # importable as a dataset

    objects = _rows(outputs["objects.csv"])
    assert list(objects[0]) == object_columns(channels=1, pixel_size=0.5)
    assert [int(row["id"]) for row in objects] == [a["id"] for a in coco["annotations"]]
    file_of = {image["id"]: image["file_name"] for image in coco["images"]}
    assert [row["image"] for row in objects] == [file_of[a["image_id"]] for a in coco["annotations"]]
    # Within an image, annotations follow the mask labels (the shard numbered them the other way).
    for name in names:
        labels = [int(row["label"]) for row in objects if row["image"] == name]
        assert labels == sorted(labels)

    images = _rows(outputs["images.csv"])
    assert [row["image"] for row in images] == names
    assert list(images[0]) == image_columns(["nucleus", "mitotic cell"])


def test_images_without_objects_are_kept_everywhere() -> None:
    empty = [i for i in IMAGES if not i.objects]
    assert empty

    summary, outputs = _merged({"algo-1": IMAGES})

    coco = json.loads(outputs["coco.json"])
    kept = {image["file_name"] for image in coco["images"]}
    rows = {row["image"]: row for row in _rows(outputs["images.csv"])}
    for image in empty:
        assert image.file_name in kept and rows[image.file_name]["objects"] == "0"
    assert summary.images == len(IMAGES)


def test_the_summary_merges_totals_hosts_and_timing() -> None:
    one, _ = _merged({"algo-1": IMAGES})
    two, _ = _merged({"algo-2": IMAGES[4:], "algo-1": IMAGES[:4]})

    expected = {
        name: sum(1 for i in IMAGES for o in i.objects if o.category == name) for name in one.per_class
    }
    assert {name: totals.objects for name, totals in two.per_class.items()} == expected
    assert two.per_class["nucleus"].area == one.per_class["nucleus"].area
    assert two.per_class["nucleus"].area_um2 == pytest.approx(one.per_class["nucleus"].area * 0.25)
    assert two.hosts == ["algo-1", "algo-2"]
    assert two.seconds == max(10.0 + 4, 10.0 + 3)
    assert two.inference_seconds == 2.0 * len(IMAGES)
    assert two.megapixels == one.megapixels == round(sum(i.width * i.height for i in IMAGES) / 1e6, 6)
    assert one.model_dump(exclude={"hosts", "seconds", "inference_seconds"}) == two.model_dump(
        exclude={"hosts", "seconds", "inference_seconds"}
    )


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_split_across_one_to_four_hosts_merges_byte_for_byte_alike(data: st.DataObject) -> None:
    count = data.draw(st.integers(1, 4), label="hosts")
    owner = data.draw(st.lists(st.integers(0, count - 1), min_size=len(IMAGES), max_size=len(IMAGES)))
    order = data.draw(st.permutations(range(len(IMAGES))))  # each host meets its images in any order
    hosts: dict[str, list[Img]] = {f"algo-{h + 1}": [] for h in range(count)}
    for index in order:
        hosts[f"algo-{owner[index] + 1}"].append(IMAGES[index])

    _, split = _merged(hosts)
    _, whole = _merged({"algo-1": IMAGES})

    for name in ("coco.json", "objects.csv", "images.csv"):
        assert split[name] == whole[name], name


def test_a_host_that_got_no_images_still_merges() -> None:
    _, outputs = _merged({"algo-1": IMAGES, "algo-2": []})
    _, whole = _merged({"algo-1": IMAGES})
    assert outputs["coco.json"] == whole["coco.json"]


def _prepared(hosts: dict[str, list[Img]] | None = None) -> MemoryArtifacts:
    artifacts = MemoryArtifacts()
    put_shards(artifacts, config(images=len(IMAGES)), hosts or {"algo-1": IMAGES[:3], "algo-2": IMAGES[3:]})
    return artifacts


def _shard_key(name: str, host: str = "algo-2") -> str:
    return f"{keys.analysis_shards_prefix('lab', 1)}{host}/{name}"


def _assert_nothing_written(artifacts: MemoryArtifacts) -> None:
    assert not any(artifacts.exists(keys.analysis_output_key("lab", 1, name)) for name in OUTPUT_NAMES)


def test_no_shard_at_all_is_a_missing_shard() -> None:
    artifacts = MemoryArtifacts()
    put_shards(artifacts, config(), {})

    with pytest.raises(ShardMissing, match="no instance wrote results") as caught:
        merge_shards(artifacts, project="lab", analysis=1)
    assert caught.value.code == "analysis_shard_missing"


def test_a_missing_shard_file_is_named_and_nothing_is_written() -> None:
    artifacts = _prepared()
    del artifacts.objects[_shard_key("images.csv")]

    with pytest.raises(ShardMissing, match=r"Instance algo-2 wrote no images\.csv"):
        merge_shards(artifacts, project="lab", analysis=1)
    _assert_nothing_written(artifacts)


def test_fewer_hosts_than_instances_is_a_missing_shard() -> None:
    artifacts = _prepared()

    with pytest.raises(ShardMissing, match="Only 2 of the job's 3 instances"):
        merge_shards(artifacts, project="lab", analysis=1, expected_hosts=3)
    _assert_nothing_written(artifacts)


def test_a_missing_job_configuration_is_a_missing_shard() -> None:
    artifacts = _prepared()
    del artifacts.objects[keys.analysis_config_key("lab", 1)]

    with pytest.raises(ShardMissing, match="no job configuration"):
        merge_shards(artifacts, project="lab", analysis=1)


def _edit_json(artifacts: MemoryArtifacts, name: str, change: object) -> None:
    data = json.loads(artifacts.objects[_shard_key(name)])
    change(data)  # type: ignore[operator]
    artifacts.objects[_shard_key(name)] = json.dumps(data).encode()


def _edit_csv(artifacts: MemoryArtifacts, name: str, row: int, column: str, value: str) -> None:
    rows = list(csv.reader(io.StringIO(artifacts.objects[_shard_key(name)].decode())))
    rows[row][rows[0].index(column)] = value
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    artifacts.objects[_shard_key(name)] = out.getvalue().encode()


def _first_annotation_score(data: dict) -> None:  # type: ignore[type-arg]
    data["annotations"][0]["score"] = 0.01


MALFORMED = {
    "coco not json": lambda a: a.objects.__setitem__(_shard_key("coco.json"), b"{not json"),
    "coco bad field": lambda a: _edit_json(a, "coco.json", lambda d: d["images"][0].__setitem__("width", -3)),
    "coco traversal": lambda a: _edit_json(
        a, "coco.json", lambda d: d["images"][0].__setitem__("file_name", "../x.tif")
    ),
    "coco other classes": lambda a: _edit_json(
        a, "coco.json", lambda d: d["categories"][0].__setitem__("name", "cell")
    ),
    "coco below threshold": lambda a: _edit_json(a, "coco.json", _first_annotation_score),
    "coco unknown image": lambda a: _edit_json(
        a, "coco.json", lambda d: d["annotations"][0].__setitem__("image_id", 99)
    ),
    "objects header": lambda a: _edit_csv(a, "objects.csv", 0, "area", "Area"),
    "objects text as number": lambda a: _edit_csv(a, "objects.csv", 1, "score", "high"),
    "objects unknown id": lambda a: _edit_csv(a, "objects.csv", 1, "id", "999"),
    "objects other image": lambda a: _edit_csv(a, "objects.csv", 1, "image", "elsewhere.tif"),
    "objects missing row": lambda a: a.objects.__setitem__(
        _shard_key("objects.csv"), a.objects[_shard_key("objects.csv")].decode().rsplit("\r\n", 2)[0].encode()
    ),
    "images header": lambda a: a.objects.__setitem__(_shard_key("images.csv"), b"image,stem\r\n"),
    "images counts": lambda a: _edit_csv(a, "images.csv", 1, "objects[nucleus]", "7"),
    "images stem": lambda a: _edit_csv(a, "images.csv", 1, "stem", "other"),
    "images not utf8": lambda a: a.objects.__setitem__(_shard_key("images.csv"), b"\xff\xfe\x00"),
    "summary other analysis": lambda a: _edit_json(a, "summary.json", lambda d: d.__setitem__("analysis", 9)),
    "summary counts": lambda a: _edit_json(a, "summary.json", lambda d: d.__setitem__("images", 99)),
}


@pytest.mark.parametrize("damage", list(MALFORMED), ids=list(MALFORMED))
def test_a_malformed_shard_is_refused_with_its_host_and_file_and_nothing_is_written(damage: str) -> None:
    artifacts = _prepared()
    MALFORMED[damage](artifacts)

    with pytest.raises(ShardMalformed, match="instance algo-2") as caught:
        merge_shards(artifacts, project="lab", analysis=1)
    assert caught.value.code == "analysis_shard_malformed"
    assert caught.value.context["host"] == "algo-2"
    _assert_nothing_written(artifacts)


def test_an_image_analysed_by_two_hosts_is_refused() -> None:
    artifacts = _prepared({"algo-1": IMAGES[:4], "algo-2": IMAGES[3:]})

    with pytest.raises(ShardMalformed, match="both analysed"):
        merge_shards(artifacts, project="lab", analysis=1)
    _assert_nothing_written(artifacts)


def test_a_stray_folder_under_shards_is_refused() -> None:
    artifacts = _prepared()
    artifacts.put_bytes(f"{keys.analysis_shards_prefix('lab', 1)}bad host!/coco.json", b"{}")

    with pytest.raises(ShardMalformed, match="no instance writes"):
        merge_shards(artifacts, project="lab", analysis=1)


def test_hosts_with_different_channel_counts_are_refused() -> None:
    artifacts = _prepared()
    cfg = config(images=len(IMAGES))
    for name, data in shard_files(cfg, IMAGES[3:], "algo-2", channels=3).items():
        artifacts.put_bytes(_shard_key(name), data)

    with pytest.raises(ShardMalformed, match="different channel counts"):
        merge_shards(artifacts, project="lab", analysis=1)


def test_a_repeated_merge_writes_the_same_bytes() -> None:
    artifacts = _prepared()
    merge_shards(artifacts, project="lab", analysis=1)
    first = _outputs(artifacts)

    merge_shards(artifacts, project="lab", analysis=1)

    assert _outputs(artifacts) == first


def test_semantic_like_shards_without_pixel_size_merge() -> None:
    artifacts = MemoryArtifacts()
    cfg = config(pixel_size=None, images=2)
    images = [Img("a.png", objects=(Obj("nucleus", 0.9, 1),)), Img("b.png")]
    put_shards(artifacts, cfg, {"algo-1": images})

    summary = merge_shards(artifacts, project="lab", analysis=1)

    assert summary.per_class["nucleus"].area_um2 is None
    assert "area_um2" not in _rows(_outputs(artifacts)["objects.csv"])[0]


def test_a_huge_hostile_header_is_quoted_short() -> None:
    artifacts = _prepared()
    artifacts.objects[_shard_key("images.csv")] = ("x," * 100_000 + "y\r\n").encode()

    with pytest.raises(ShardMalformed) as caught:
        merge_shards(artifacts, project="lab", analysis=1)
    assert len(caught.value.message) < 600 and caught.value.message.endswith("....")
