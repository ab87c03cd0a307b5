"""Manifests, targets, the validation carve-out, tiles, augmentation and sampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segpipe.models.coco import CocoDataset
from segpipe_trainer.data import (
    Augmentation,
    ClassMap,
    ImageEntry,
    Sample,
    SampleCache,
    SampleOptions,
    StepSampler,
    TileDataset,
    carve_validation,
    class_pixel_weights,
    default_steps_per_epoch,
    image_entries,
    load_manifest,
    load_sample,
)
from segpipe_trainer.errors import TrainerError
from segpipe_trainer.images import ImageReadError
from tests.trainer.tiny_model import synthetic_sample
from tests.trainer.trainer_testkit import CATEGORIES, CLASSES, DatasetSpec, write_dataset


def _entries(groups: list[str]) -> list[ImageEntry]:
    coco = {
        "images": [
            {"id": i, "file_name": f"im{i}.png", "width": 8, "height": 8, "group": g}
            for i, g in enumerate(groups)
        ],
        "categories": CATEGORIES,
    }
    return image_entries(CocoDataset.model_validate(coco))


def _sample(*, seed: int = 0, size: tuple[int, int] = (96, 96), objects: int = 5) -> Sample:
    return synthetic_sample(seed=seed, size=size, objects=objects, file_name=f"s{seed}.tif")


# --- Manifests -----------------------------------------------------------------------------------


def test_classes_map_by_name_and_other_categories_are_ignored() -> None:
    manifest = CocoDataset.model_validate({"images": [], "categories": CATEGORIES})

    class_map = ClassMap.build(classes=["long", "round"], manifests=[manifest])

    assert class_map.class_of == {1: 2, 2: 1}
    assert class_map.num_classes == 2


def test_in_progress_images_are_left_out_and_annotations_grouped() -> None:
    manifest = CocoDataset.model_validate(
        {
            "images": [
                {"id": 1, "file_name": "a.png", "width": 4, "height": 4},
                {"id": 2, "file_name": "b.png", "width": 4, "height": 4, "status": "in_progress"},
            ],
            "categories": CATEGORIES,
            "annotations": [
                {"id": 9, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 2, 0, 2, 2]]},
                {"id": 8, "image_id": 2, "category_id": 1, "segmentation": [[0, 0, 2, 0, 2, 2]]},
            ],
        }
    )

    entries = image_entries(manifest)

    assert [(e.file_name, len(e.annotations)) for e in entries] == [("a.png", 1)]


def test_an_invalid_manifest_is_a_clear_failure(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"images": [{"id": 1}], "categories": []}))

    with pytest.raises(TrainerError, match=r"'train\.json' is not valid COCO JSON"):
        load_manifest(path)


# --- Validation carve-out -----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    groups=st.lists(st.sampled_from([f"g{i}" for i in range(12)]), min_size=1, max_size=30),
    fraction=st.floats(0.0, 0.9),
)
def test_validation_keeps_groups_whole_and_both_sides_non_empty(groups: list[str], fraction: float) -> None:
    entries = _entries(groups)

    train, validation = carve_validation(entries, fraction=fraction)

    assert len(train) + len(validation) == len(entries)
    assert not {e.group for e in train} & {e.group for e in validation}
    assert train
    distinct = len(set(groups))
    assert bool(validation) == (distinct >= 2 and fraction > 0)


@settings(max_examples=30, deadline=None)
@given(
    groups=st.lists(st.sampled_from([f"g{i}" for i in range(12)]), min_size=2, max_size=30),
    seed=st.integers(),
)
def test_validation_does_not_depend_on_image_order(groups: list[str], seed: int) -> None:
    entries = _entries(groups)
    shuffled = list(entries)
    np.random.default_rng(abs(seed)).shuffle(shuffled)

    held = {e.file_name for e in carve_validation(entries, fraction=0.3)[1]}
    held_shuffled = {e.file_name for e in carve_validation(shuffled, fraction=0.3)[1]}

    assert held == held_shuffled


# --- Samples and the cache ----------------------------------------------------------------------


def test_load_sample_rasterises_targets_and_normalises(tmp_path: Path) -> None:
    coco = write_dataset(tmp_path, spec=DatasetSpec(images=1, size=(64, 80), objects=4))
    manifest = CocoDataset.model_validate(coco)
    class_map = ClassMap.build(classes=list(CLASSES), manifests=[manifest])
    options = SampleOptions(dataset_dir=tmp_path, class_map=class_map, model_type="instance")

    sample = load_sample(image_entries(manifest)[0], options=options)

    assert sample.image.shape == (1, 64, 80) and sample.image.dtype == np.float32
    assert len(sample.classes) == 1 + len(coco["annotations"])
    assert set(np.unique(sample.labels)) == set(range(len(sample.classes)))
    assert sample.distance is not None and sample.distance.max() == pytest.approx(1.0)
    assert abs(np.percentile(sample.image, 99.8) - 1.0) < 1e-3


def test_a_manifest_size_that_disagrees_with_the_file_fails(tmp_path: Path) -> None:
    coco = write_dataset(tmp_path, spec=DatasetSpec(images=1, size=(64, 80), objects=2))
    coco["images"][0]["width"] = 81
    manifest = CocoDataset.model_validate(coco)
    options = SampleOptions(
        dataset_dir=tmp_path,
        class_map=ClassMap.build(classes=["round"], manifests=[manifest]),
        model_type="semantic",
    )

    with pytest.raises(ImageReadError, match=r"80x64 pixels but annotations\.json says 81x64"):
        load_sample(image_entries(manifest)[0], options=options)


def test_the_cache_gives_back_the_same_arrays_memory_mapped(tmp_path: Path) -> None:
    samples = [_sample(seed=1), _sample(seed=2)]

    cached = SampleCache(directory=tmp_path / "c").write(iter(samples))

    for original, copy in zip(samples, cached, strict=True):
        assert isinstance(copy.labels, np.memmap)
        np.testing.assert_array_equal(copy.labels, original.labels)
        np.testing.assert_array_equal(copy.classes, original.classes)
        np.testing.assert_allclose(copy.image, original.image, atol=1e-3)
        assert copy.distance is not None and original.distance is not None
        np.testing.assert_allclose(copy.distance, original.distance, atol=1e-3)


def test_class_weights_favour_rare_classes() -> None:
    labels = np.zeros((10, 10), dtype=np.int32)
    labels[:5] = 1
    labels[9, 9] = 2
    sample = Sample(file_name="x", image=np.zeros((1, 10, 10)), labels=labels, classes=np.array([0, 1, 2]))

    weights = class_pixel_weights([sample], num_classes=3)

    assert weights[2] > weights[0] > 0
    assert weights[3] == 10.0  # a class without pixels gets the cap
    assert weights[1] == pytest.approx(weights[0] * np.sqrt(49 / 50))  # 49 background pixels, 50 of class 1


def test_default_steps_cover_the_training_pixels() -> None:
    samples = [_sample(size=(512, 512))] * 4

    assert default_steps_per_epoch(samples, tile_size=128, batch_size=4, minimum=1) == 16
    assert default_steps_per_epoch(samples, tile_size=128, batch_size=4, world=4, minimum=1) == 4
    assert default_steps_per_epoch(samples, tile_size=512, batch_size=8) == 20


# --- Tiles ---------------------------------------------------------------------------------------


def test_tiles_are_fixed_by_seed_epoch_and_index() -> None:
    samples = [_sample(seed=1), _sample(seed=2)]

    def make(epoch: int) -> TileDataset:
        return TileDataset(samples=samples, tile_size=64, in_channels=1, length=8, seed=5, epoch=epoch)

    first, again, other_epoch = make(0)[3], make(0)[3], make(1)[3]

    for key in ("image", "classes", "distance"):
        assert first[key].shape[-2:] == (64, 64)
        assert (first[key] == again[key]).all()
    assert not (first["image"] == other_epoch["image"]).all()
    assert first["image"].shape == (1, 64, 64) and first["classes"].dtype.is_floating_point is False


def test_augmented_image_and_targets_stay_aligned() -> None:
    """Paint the classes into the image, augment without intensity changes: they must still agree."""
    base = _sample(seed=3)
    painted = Sample(
        file_name="p",
        image=base.class_map()[None].astype(np.float32),
        labels=base.labels,
        classes=base.classes,
        distance=base.distance,
    )
    still = Augmentation(gain_range=(1.0, 1.0), offset_range=(0.0, 0.0), noise_std=0.0)
    dataset = TileDataset(
        samples=[painted], tile_size=64, in_channels=1, length=40, seed=0, object_bias=1.0, augmentation=still
    )

    agreement = [
        float((item["image"][0].round() == item["classes"].float()).float().mean())
        for item in map(dataset.__getitem__, range(40))
    ]

    assert min(agreement) > 0.93


def test_gamma_raises_positive_intensities_and_leaves_every_other_draw_alone() -> None:
    # Given the same tiles drawn without intensity changes, and with a fixed gamma of 2
    still = Augmentation(gain_range=(1.0, 1.0), offset_range=(0.0, 0.0), noise_std=0.0)
    squared = Augmentation(
        gain_range=(1.0, 1.0), offset_range=(0.0, 0.0), noise_std=0.0, gamma_range=(2.0, 2.0)
    )
    samples = [_sample(seed=6)]

    def tiles(augmentation: Augmentation) -> list[dict[str, torch.Tensor]]:
        dataset = TileDataset(
            samples=samples, tile_size=48, in_channels=1, length=6, seed=2, augmentation=augmentation
        )
        return [dataset[i] for i in range(6)]

    # Then each tile is the same crop with its positive values squared, its targets untouched
    for plain, raised in zip(tiles(still), tiles(squared), strict=True):
        expected = torch.where(plain["image"] > 0, plain["image"] ** 2, plain["image"])
        assert torch.allclose(raised["image"], expected)
        assert (raised["classes"] == plain["classes"]).all()
        assert (raised["distance"] == plain["distance"]).all()
    assert any(
        not torch.equal(p["image"], r["image"]) for p, r in zip(tiles(still), tiles(squared), strict=True)
    )


def test_object_bias_aims_tiles_at_objects_and_negatives_are_drawn() -> None:
    negative = Sample(
        file_name="empty",
        image=np.zeros((1, 96, 96), dtype=np.float32),
        labels=np.zeros((96, 96), dtype=np.int32),
        classes=np.zeros(1, dtype=np.int64),
        distance=np.zeros((96, 96), dtype=np.float32),
    )
    samples = [_sample(seed=4), negative]
    aimed = TileDataset(samples=samples, tile_size=32, in_channels=1, length=30, seed=1, object_bias=1.0)
    uniform = TileDataset(samples=samples, tile_size=32, in_channels=1, length=200, seed=1, object_bias=0.0)

    assert all(aimed[i]["classes"].any() for i in range(30))
    assert sum(not uniform[i]["classes"].any() for i in range(200)) > 60


def test_channels_are_matched_in_tiles() -> None:
    dataset = TileDataset(samples=[_sample(seed=1)], tile_size=32, in_channels=3, length=2, seed=0)

    assert dataset[0]["image"].shape == (3, 32, 32)


def test_no_training_images_is_a_clear_failure() -> None:
    with pytest.raises(TrainerError, match="no training images"):
        TileDataset(samples=[], tile_size=32, in_channels=1, length=1, seed=0)


@settings(max_examples=30, deadline=None)
@given(steps=st.integers(1, 6), batch=st.integers(1, 4), world=st.integers(1, 4), start=st.integers(0, 6))
def test_ranks_draw_disjoint_items_and_resume_skips_steps(
    steps: int, batch: int, world: int, start: int
) -> None:
    per_rank = [list(StepSampler(steps=steps, batch_size=batch, rank=r, world=world)) for r in range(world)]
    resumed = list(StepSampler(steps=steps, batch_size=batch, start=start, rank=0, world=world))

    drawn = [i for items in per_rank for i in items]
    assert sorted(drawn) == list(range(steps * batch * world))
    assert resumed == per_rank[0][start * batch :]
    assert len(StepSampler(steps=steps, batch_size=batch, start=start)) == max(steps - start, 0) * batch
