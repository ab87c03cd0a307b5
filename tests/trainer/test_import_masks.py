"""`segpipe import-masks`: label-mask folders become segpipe datasets that keep every object."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy import ndimage as ndi

from segpipe.errors import SegpipeError
from segpipe.models.coco import CocoDataset, Rle
from segpipe_trainer.geometry import annotation_mask
from segpipe_trainer.import_masks import (
    InvalidClassMapping,
    InvalidMask,
    MaskImportError,
    MaskSizeMismatch,
    NoImagesFound,
    UnreadableFile,
    import_masks,
    main,
)
from tests.trainer.trainer_testkit import disc, iou, mask_bbox


def instance_mask() -> np.ndarray:
    """uint16 60 x 80: two touching objects, a ring around a third object, and a large label value."""
    mask = np.zeros((60, 80), dtype=np.uint16)
    mask[5:25, 5:20] = 3
    mask[5:25, 20:35] = 7
    ring = disc((60, 80), center=(35, 55), radius=14) & ~disc((60, 80), center=(35, 55), radius=6)
    mask[ring] = 1000
    mask[disc((60, 80), center=(35, 55), radius=4)] = 12
    mask[50:52, 2:40] = 5
    return mask


def image_of(mask: np.ndarray, *, channels: int = 0) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = (*mask.shape, channels) if channels else mask.shape
    return rng.integers(0, 255, shape).astype(np.uint8)


def paired_tiffs(tmp_path: Path, stem: str) -> tuple[Path, np.ndarray]:
    """`source/` holding `{stem}.tif` beside its instance mask `{stem}_masks.tif`: (source, the mask)."""
    source = tmp_path / "source"
    source.mkdir()
    mask = instance_mask()
    tifffile.imwrite(source / f"{stem}.tif", image_of(mask))
    tifffile.imwrite(source / f"{stem}_masks.tif", mask)
    return source, mask


def load(destination: Path) -> CocoDataset:
    return CocoDataset.model_validate_json((destination / "annotations.json").read_text())


def test_instance_masks_beside_their_images_become_one_annotation_per_object(tmp_path: Path) -> None:
    # Given img.tif beside img_masks.tif with touching objects and an object with a hole
    source, mask = paired_tiffs(tmp_path, "img")
    destination = tmp_path / "dataset"

    # When converted
    summary = import_masks(source, destination, class_name="nucleus")

    # Then each object is one annotation that re-rasterises to its own pixels
    dataset = load(destination)
    assert summary.images == 1 and summary.annotations == 5 and summary.categories == ("nucleus",)
    assert [(c.id, c.name) for c in dataset.categories] == [(1, "nucleus")]
    assert dataset.images[0].status == "completed"
    assert (dataset.images[0].width, dataset.images[0].height) == (80, 60)
    assert (destination / "img.tif").read_bytes() == (source / "img.tif").read_bytes()
    drawn = [annotation_mask(a.segmentation, height=60, width=80) for a in dataset.annotations]
    for value in (3, 5, 7, 12, 1000):
        assert max(iou(candidate, mask == value) for candidate in drawn) >= 0.98


def test_an_object_with_a_hole_is_written_as_rle_and_the_rest_as_polygons(tmp_path: Path) -> None:
    source, mask = paired_tiffs(tmp_path, "a")
    destination = tmp_path / "dataset"

    summary = import_masks(source, destination)

    dataset = load(destination)
    rle = [a for a in dataset.annotations if isinstance(a.segmentation, Rle)]
    assert summary.rle_annotations == len(rle) == 1
    assert np.array_equal(annotation_mask(rle[0].segmentation, height=60, width=80), mask == 1000)
    for annotation in dataset.annotations:
        region = annotation_mask(annotation.segmentation, height=60, width=80)
        assert annotation.bbox == mask_bbox(region)
        assert annotation.area == np.count_nonzero(region)


@pytest.mark.parametrize("suffix", ["_mask", "_label", "_labels", "_cp_masks"])
def test_every_mask_suffix_and_png_files_are_recognised(tmp_path: Path, suffix: str) -> None:
    # Given an RGB PNG image beside a 16-bit PNG mask
    source, destination = tmp_path / "source", tmp_path / "dataset"
    source.mkdir()
    mask = instance_mask()
    Image.fromarray(image_of(mask, channels=3)).save(source / "cells.png")
    Image.fromarray(mask).save(source / f"cells{suffix}.png")

    summary = import_masks(source, destination)

    assert summary.images == 1 and summary.annotations == 5
    assert load(destination).images[0].file_name == "cells.png"


def test_images_and_masks_folders_are_paired_by_stem_and_unmasked_images_skipped(tmp_path: Path) -> None:
    # Given images/ and masks/ folders; one image has no mask
    source, destination = tmp_path / "source", tmp_path / "dataset"
    (source / "images").mkdir(parents=True)
    (source / "masks").mkdir()
    mask = instance_mask()
    for stem in ("b", "a"):
        two_channels = np.moveaxis(image_of(mask, channels=2), -1, 0)
        tifffile.imwrite(
            source / "images" / f"{stem}.tif",
            two_channels,
            photometric="minisblack",
            metadata={"axes": "CYX"},
        )
        tifffile.imwrite(source / "masks" / f"{stem}.tif", mask)
    Image.fromarray(image_of(mask)).save(source / "images" / "c.jpg")

    # When converted
    summary = import_masks(source, destination)

    # Then both pairs are in, sorted, with their sizes, and the unmasked image is reported
    dataset = load(destination)
    assert [image.file_name for image in dataset.images] == ["a.tif", "b.tif"]
    assert all((image.width, image.height) == (80, 60) for image in dataset.images)
    assert summary.annotations == 10 and summary.images_without_masks == ("c.jpg",)
    assert not (destination / "c.jpg").exists()


def test_semantic_masks_give_one_annotation_per_connected_region_of_each_class(tmp_path: Path) -> None:
    # Given a semantic mask: two nucleus regions (one with a hole), one cytoplasm region touching one
    source, destination = tmp_path / "source", tmp_path / "dataset"
    source.mkdir()
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"1": "nucleus", "2": "cytoplasm"}))
    mask = np.zeros((50, 70), dtype=np.uint8)
    mask[5:20, 5:20] = 1
    mask[5:20, 20:40] = 2
    mask[disc((50, 70), center=(35, 55), radius=10)] = 1
    mask[disc((50, 70), center=(35, 55), radius=3)] = 0
    Image.fromarray(image_of(mask)).save(source / "s.png")
    Image.fromarray(mask).save(source / "s_masks.png")

    # When converted with the class mapping
    summary = import_masks(source, destination, semantic_classes=classes)

    # Then each region is one annotation of its class, and re-rasterises to that region
    dataset = load(destination)
    names = {c.id: c.name for c in dataset.categories}
    assert summary.categories == ("nucleus", "cytoplasm") and summary.annotations == 3
    found = sorted(names[a.category_id] for a in dataset.annotations)
    assert found == ["cytoplasm", "nucleus", "nucleus"]
    for annotation in dataset.annotations:
        value = {"nucleus": 1, "cytoplasm": 2}[names[annotation.category_id]]
        drawn = annotation_mask(annotation.segmentation, height=50, width=70)
        regions, _ = ndi.label(mask == value, structure=np.ones((3, 3)))
        region = regions == np.bincount(regions[drawn]).argmax()
        assert iou(drawn, region) >= 0.98


def test_main_prints_a_summary_and_returns_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, _ = paired_tiffs(tmp_path, "x")

    code = main([str(source), str(tmp_path / "out"), "--class-name", "cell"])

    out = capsys.readouterr().out
    assert code == 0
    assert out.count("\n") == 1 and "1 images" in out and "5 annotations" in out and "cell" in out


# --- Bad input ---------------------------------------------------------------------------------


def test_a_folder_without_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    with pytest.raises(NoImagesFound, match="No image with a mask"):
        import_masks(tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_mask_of_another_size_than_its_image_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    tifffile.imwrite(source / "x.tif", np.zeros((40, 40), np.uint8))
    tifffile.imwrite(source / "x_masks.tif", instance_mask())

    with pytest.raises(
        MaskSizeMismatch, match=r"'x_masks.tif' is 80 x 60 pixels but its image 'x.tif' is 40 x 40"
    ):
        import_masks(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "x.tif").write_bytes(b"not a tiff at all")
    tifffile.imwrite(source / "x_masks.tif", instance_mask())

    with pytest.raises(UnreadableFile, match=r"'x\.tif' cannot be read"):
        import_masks(source, tmp_path / "out")


def test_a_colour_mask_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(source / "x.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(source / "x_masks.png")

    with pytest.raises(InvalidMask, match="2-D image of integers"):
        import_masks(source, tmp_path / "out")


def test_semantic_values_missing_from_the_mapping_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"1": "nucleus"}))
    mask = np.zeros((20, 20), np.uint8)
    mask[2:5, 2:5] = 1
    mask[10:15, 10:15] = 4
    Image.fromarray(mask).save(source / "x.png")
    Image.fromarray(mask).save(source / "x_masks.png")

    with pytest.raises(InvalidMask, match=r"pixel values \[4\]"):
        import_masks(source, tmp_path / "out", semantic_classes=classes)


@pytest.mark.parametrize("content", ['{"0": "background"}', "[1, 2]", '{"1": ""}', "not json"])
def test_a_bad_class_mapping_is_refused(tmp_path: Path, content: str) -> None:
    classes = tmp_path / "classes.json"
    classes.write_text(content)
    (tmp_path / "source").mkdir()

    with pytest.raises(InvalidClassMapping):
        import_masks(tmp_path / "source", tmp_path / "out", semantic_classes=classes)


def test_a_mask_without_its_image_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    tifffile.imwrite(source / "x.tif", np.zeros((60, 80), np.uint8))
    tifffile.imwrite(source / "x_masks.tif", instance_mask())
    tifffile.imwrite(source / "y_masks.tif", instance_mask())

    with pytest.raises(MaskImportError, match=r"'y_masks\.tif' has no image"):
        import_masks(source, tmp_path / "out")


def test_every_error_is_a_segpipe_error_and_main_prints_it_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()

    code = main([str(tmp_path / "empty"), str(tmp_path / "out")])

    err = capsys.readouterr().err
    assert code == 1
    assert "No image with a mask" in err and "Traceback" not in err and err.count("\n") == 1
    assert issubclass(MaskImportError, SegpipeError)


def test_main_refuses_bad_usage_with_the_usage_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["only-one-argument"])

    assert code == 1
    assert "usage: segpipe import-masks" in capsys.readouterr().err
