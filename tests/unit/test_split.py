"""The split manifests: two COCO documents the trainer and pycocotools read as they are."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from pycocotools.coco import COCO

from segpipe.logic.split import SplitPlan, render_manifests, split_draw, split_key
from segpipe.models.coco import CocoDataset, CocoImage, Rle
from segpipe.models.trainer_io import SplitInfo
from tests.helpers.datasets import DatasetBuilder, box_rle, healthy_dataset, validate_dataset


def plan_of(builder: DatasetBuilder, **request: Any) -> SplitPlan:
    validation = validate_dataset(builder, builder.request(**request))
    assert validation.plan is not None, validation.report.errors
    return validation.plan


def mixed_dataset() -> DatasetBuilder:
    """Completed images with two requested classes and one excluded, unfinished images, groups,
    annotations without area and bbox, one RLE mask, and one broken annotation."""
    builder = DatasetBuilder(classes=["debris", "nucleus", "mitosis"])
    builder.add_images(30, objects={"nucleus": 4, "mitosis": 1, "debris": 1})
    builder.add_images(6, group="slide-2", objects={"nucleus": 3, "mitosis": 1})
    builder.add_images(3, status="in_progress", objects={"nucleus": 2})
    builder.add_images(2)  # negatives
    builder.add_broken("zero_area")
    builder.add_annotation(1, "nucleus", box_rle(2, 3, 10, 12, image_width=128, image_height=128))
    return builder


def test_manifests_hold_their_side_only(tmp_path: Path) -> None:
    # Given a plan for a mixed dataset, with debris not requested
    builder = mixed_dataset()
    plan = plan_of(builder, classes=["nucleus", "mitosis"])

    # When the manifests are rendered
    manifests = render_manifests(plan, project="lab", version=4)

    # Then each parses as the COCO contract and holds exactly its images and their valid annotations
    train = CocoDataset.model_validate_json(manifests["train"])
    test = CocoDataset.model_validate_json(manifests["test"])
    assert [image.id for image in train.images] == [image.id for image in plan.train.images]
    assert [image.id for image in test.images] == [image.id for image in plan.test.images]
    assert not {image.id for image in train.images} & {image.id for image in test.images}
    for document in (train, test):
        image_ids = {image.id for image in document.images}
        assert all(annotation.image_id in image_ids for annotation in document.annotations)
        assert {annotation.category_id for annotation in document.annotations} <= {2, 3}
        assert all(image.status == "completed" for image in document.images)
    # debris, the unfinished images' annotations and the broken one are left out
    assert len(train.annotations) + len(test.annotations) == 36 * 4 + 30 + 1
    rle = next(item for item in train.annotations + test.annotations if isinstance(item.segmentation, Rle))
    assert rle.segmentation == Rle.model_validate(box_rle(2, 3, 10, 12, image_width=128, image_height=128))
    assert (rle.area, rle.bbox) == (120.0, [2.0, 3.0, 10.0, 12.0])


def test_manifests_keep_requested_categories_in_request_order_with_original_ids() -> None:
    plan = plan_of(mixed_dataset(), classes=["mitosis", "nucleus"])

    train = json.loads(render_manifests(plan, project="lab", version=4)["train"])

    assert train["categories"] == [{"id": 3, "name": "mitosis"}, {"id": 2, "name": "nucleus"}]


def test_manifests_carry_the_split_info() -> None:
    plan = plan_of(
        mixed_dataset(),
        classes=["nucleus", "mitosis"],
        test_set={"strategy": "fraction", "fraction": 0.3, "seed": 11},
    )

    manifests = render_manifests(plan, project="lab", version=4)

    for split in ("train", "test"):
        info = SplitInfo.model_validate(json.loads(manifests[split])["info"]["segpipe"])
        assert info == SplitInfo(
            split=split,
            project="lab",
            version=4,
            dataset="cells",
            strategy="fraction",
            seed=11,
            classes=["nucleus", "mitosis"],
        )


def test_groups_are_kept_and_land_on_one_side() -> None:
    plan = plan_of(mixed_dataset(), classes=["nucleus", "mitosis"])

    manifests = {
        split: CocoDataset.model_validate_json(body)
        for split, body in render_manifests(plan, project="lab", version=1).items()
    }

    sides = {
        split: {image.group for image in document.images if image.group}
        for split, document in manifests.items()
    }
    assert sides["train"] | sides["test"] == {"slide-2"}
    assert not sides["train"] & sides["test"]


def test_without_a_test_set_the_test_manifest_is_empty_but_present() -> None:
    plan = plan_of(healthy_dataset(), test_set={"strategy": "none"})

    manifests = render_manifests(plan, project="lab", version=2)

    test = json.loads(manifests["test"])
    assert (test["images"], test["annotations"]) == ([], [])
    assert test["info"]["segpipe"]["strategy"] == "none"
    assert len(json.loads(manifests["train"])["images"]) == 40


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools and numpy 2
def test_pycocotools_reads_the_manifests_with_filled_in_area_and_bbox(tmp_path: Path) -> None:
    # Given annotations exported without area and bbox
    builder = healthy_dataset()
    manifests = render_manifests(plan_of(builder), project="lab", version=1)
    path = tmp_path / "train.json"
    path.write_bytes(manifests["train"])

    # When pycocotools loads the training manifest (the oracle)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))

    # Then every annotation has an area close to its rasterised mask and a bbox around it
    for annotation in coco.loadAnns(coco.getAnnIds()):
        mask_area = float(coco.annToMask(annotation).sum())
        assert annotation["area"] == pytest.approx(mask_area, rel=0.15)
        x, y, width, height = annotation["bbox"]
        assert 0 <= x < x + width <= 128 and 0 <= y < y + height <= 128


def test_given_area_and_bbox_are_kept() -> None:
    builder = healthy_dataset()
    for annotation in builder.annotations:
        annotation["area"] = 123.0
        annotation["bbox"] = [1.0, 2.0, 3.0, 4.0]

    train = json.loads(render_manifests(plan_of(builder), project="lab", version=1)["train"])

    assert {annotation["area"] for annotation in train["annotations"]} == {123.0}
    assert {tuple(annotation["bbox"]) for annotation in train["annotations"]} == {(1.0, 2.0, 3.0, 4.0)}


def test_the_split_key_is_the_group_else_the_file() -> None:
    grouped = CocoImage(id=1, file_name="a.png", width=4, height=4, group="slide-1")
    single = CocoImage(id=2, file_name="a.png", width=4, height=4)

    assert split_key(grouped) == "group:slide-1"
    assert split_key(single) == "image:a.png"


def test_the_draw_is_stable_and_depends_on_the_seed() -> None:
    draws = {split_draw(key="image:a.png", seed=seed) for seed in range(50)}

    assert split_draw(key="image:a.png", seed=3) == split_draw(key="image:a.png", seed=3)
    assert len(draws) == 50
    assert all(0 <= draw < 1 for draw in draws)
    # Pinned: BLAKE2b-64 of "0\x00group:slide-1" over 2**64. A change here would move images
    # between train and test across versions.
    digest = hashlib.blake2b(b"0\x00group:slide-1", digest_size=8).digest()
    assert (
        split_draw(key="group:slide-1", seed=0)
        == int.from_bytes(digest, "big") / 2**64
        == pytest.approx(0.6284106)
    )
