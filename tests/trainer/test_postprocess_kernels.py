"""The compiled post-processing (segpipe_trainer.kernels) against what it replaced.

The references are the previous implementations written with scikit-image and scipy: seeded
watershed of each crowded component with `skimage.segmentation.watershed` on packed canvases,
and outlines with `mask_to_polygons` (marching squares) on each object's own mask.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from bench.bench_postprocess import nuclei_scene
from segpipe_trainer import postprocess
from segpipe_trainer.analyze import keep_above
from segpipe_trainer.geometry import annotation_mask, mask_to_polygons, objects_from_instances
from segpipe_trainer.kernels import flood_like_scikit_image, foreground_runs, paint_runs, renumbered
from segpipe_trainer.postprocess import Instances, distance_target, instances_from_maps, regions_from_semantic
from tests.trainer.trainer_testkit import mask_bbox

EIGHT = np.ones((3, 3), dtype=bool)


# --- the previous implementation, as the reference ------------------------------------------------


def reference_seeds(
    cores: np.ndarray, *, components: np.ndarray, count: int, min_size: int
) -> postprocess._Seeds:
    """The seeds of bool H x W `cores` from label images, with scipy, as segpipe found them before
    the row runs; each core lies inside one of the `count` 8-connected `components`."""
    labels, seed_count = ndi.label(cores, structure=EIGHT)
    pixels = np.flatnonzero(cores)
    seed_of_pixel = labels.ravel()[pixels]
    usable = np.bincount(seed_of_pixel, minlength=seed_count + 1) >= min_size
    usable[0] = False
    owner = np.zeros(seed_count + 1, dtype=np.int64)
    owner[seed_of_pixel] = components.ravel()[pixels]
    per_component = np.bincount(owner[usable], minlength=count + 1)
    return postprocess._Seeds(
        labels=labels,
        usable=usable,
        owner=owner,
        crowded=np.flatnonzero(per_component >= 2),
        components=count,
    )


def reference_instances(probs: np.ndarray, distance: np.ndarray, *, min_area: int = 16) -> Instances:
    """instances_from_maps as it was: skimage's watershed per canvas of packed bounding boxes."""
    foreground = probs[0] < 0.5
    components, count = ndi.label(foreground, structure=EIGHT)
    seeds = reference_seeds(
        foreground & (distance > 0.5), components=components, count=count, min_size=max(min_area // 4, 1)
    )
    if seeds.crowded.size:
        boxes = ndi.find_objects(components)
        batch: list[tuple[int, tuple[slice, slice]]] = []
        batch_pixels = 0
        for component in seeds.crowded:
            box = boxes[component - 1]
            batch.append((int(component), box))
            batch_pixels += (box[0].stop - box[0].start) * (box[1].stop - box[1].start)
            if batch_pixels >= postprocess._CANVAS_PIXELS:
                _reference_flood(components, batch, seeds, distance, count)
                batch, batch_pixels = [], 0
        if batch:
            _reference_flood(components, batch, seeds, distance, count)
    return _reference_scores(components, probs=probs, min_area=min_area)


def _reference_flood(
    labels: np.ndarray,
    batch: list[tuple[int, tuple[slice, slice]]],
    seeds: postprocess._Seeds,
    distance: np.ndarray,
    offset: int,
) -> None:
    places, shape = postprocess._shelf_pack(
        [(b[0].stop - b[0].start, b[1].stop - b[1].start) for _, b in batch]
    )
    relief = np.zeros(shape, dtype=np.float64)
    markers = np.zeros(shape, dtype=np.int32)
    mask = np.zeros(shape, dtype=bool)
    for (component, box), place in zip(batch, places, strict=True):
        inside = labels[box] == component
        mask[place] = inside
        np.negative(distance[box], out=relief[place], where=inside)
        markers[place] = np.where(inside & seeds.usable[seeds.labels[box]], seeds.labels[box], 0)
    pieces = watershed(relief, markers=markers, mask=mask, connectivity=2)
    for (_, box), place in zip(batch, places, strict=True):
        inside = mask[place]
        labels[box][inside] = offset + pieces[place][inside]


def _reference_scores(labels: np.ndarray, *, probs: np.ndarray, min_area: int) -> Instances:
    pixels = np.flatnonzero(labels)
    label_of_pixel = labels.ravel()[pixels]
    size = int(label_of_pixel.max(initial=0)) + 1
    area = np.bincount(label_of_pixel, minlength=size)
    sums = np.stack(
        [
            np.bincount(label_of_pixel, weights=probs[k].ravel()[pixels], minlength=size)
            for k in range(1, len(probs))
        ]
    )
    means = sums / np.maximum(area, 1)
    best = np.argmax(means, axis=0)
    keep = area >= min_area
    keep[0] = False
    renumber = np.zeros(size, dtype=np.int32)
    renumber[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    out = np.zeros(labels.shape, dtype=np.int32)
    out.ravel()[pixels] = renumber[label_of_pixel]
    return Instances(
        labels=out,
        classes=np.concatenate([[0], best[keep] + 1]).astype(np.int64),
        scores=np.concatenate([[0.0], means[best[keep], np.flatnonzero(keep)]]).astype(np.float32),
    )


def canonical_rings(rings: list[list[float]]) -> list[tuple[tuple[float, float], ...]]:
    """Rings as vertex tuples starting at their smallest vertex, sorted: equal for equal outlines."""
    out = []
    for ring in rings:
        points = [(ring[i], ring[i + 1]) for i in range(0, len(ring), 2)]
        start = points.index(min(points))
        out.append(tuple(points[start:] + points[:start]))
    return sorted(out)


@pytest.fixture(scope="module")
def scene() -> object:
    return nuclei_scene(size=384, objects=260, seed=3)


def _assert_same_instances(found: Instances, expected: Instances) -> None:
    assert found.count == expected.count
    np.testing.assert_array_equal(found.labels, expected.labels)
    np.testing.assert_array_equal(found.classes, expected.classes)
    np.testing.assert_array_equal(found.scores, expected.scores)


# --- watershed -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_replayed_heap_floods_as_scikit_image_does_ties_included(seed: int) -> None:
    # Given a relief of only four levels (ties everywhere), a ragged mask and scattered markers
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(20, 70)), int(rng.integers(20, 70)))
    relief = rng.integers(0, 4, shape).astype(np.float32)
    mask = ndi.binary_opening(rng.random(shape) < 0.8)
    mask[[0, -1], :] = mask[:, [0, -1]] = False
    markers = np.zeros(shape, dtype=np.int32)
    spots = rng.integers(1, min(shape) - 1, (12, 2))
    markers[spots[:, 0], spots[:, 1]] = np.arange(1, 13)
    markers[~mask] = 0

    # When both flood
    flooded = markers.copy()
    flood_like_scikit_image(relief, flooded, mask)

    # Then the label images are identical
    np.testing.assert_array_equal(
        flooded, watershed(relief.astype(np.float64), markers, mask=mask, connectivity=2)
    )


@pytest.mark.parametrize("noise", ["smooth", "pixel", "quantised", "exact"])
def test_instances_from_maps_are_those_of_scikit_image_watershed(scene: object, noise: str) -> None:
    # Given the maps of a crowded scene, the distance map smooth, noisy per pixel, quantised to
    # eighths (ties between seeds everywhere) or exactly the target (ties of symmetric objects)
    distance = {
        "smooth": scene.distance,
        "pixel": scene.distance + np.random.default_rng(1).normal(0, 0.05, scene.distance.shape),
        "quantised": np.round(scene.distance * 8) / 8,
        "exact": distance_target(scene.labels),
    }[noise].astype(np.float32)

    # When the instances are found
    found = instances_from_maps(scene.probs, distance)

    # Then they are exactly the previous implementation's, numbering included
    assert found.count > 200
    _assert_same_instances(found, reference_instances(scene.probs, distance))


def test_ties_between_seeds_are_replayed_with_scikit_images_heap(
    scene: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a quantised distance map, where seeds of one component share values
    distance = (np.round(scene.distance * 8) / 8).astype(np.float32)
    replayed: list[int] = []
    original = postprocess._flood_canvas

    def spy(*args: object, **kwargs: object) -> None:
        replayed.append(1)
        original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(postprocess, "_flood_canvas", spy)

    # When the instances are found, then some canvases were replayed and the result is the reference's
    found = instances_from_maps(scene.probs, distance)
    assert replayed
    _assert_same_instances(found, reference_instances(scene.probs, distance))


@pytest.mark.parametrize("odd", [np.nan, np.inf, -np.inf])
def test_non_finite_distances_flood_as_scikit_image_does(scene: object, odd: float) -> None:
    distance = scene.distance.copy()
    distance[::7, ::5] = odd

    found = instances_from_maps(scene.probs, distance)

    _assert_same_instances(found, reference_instances(scene.probs, distance))


# --- runs ------------------------------------------------------------------------------------------


def _painted(shape: tuple[int, int], runs: np.ndarray, values: np.ndarray) -> np.ndarray:
    image = np.zeros(shape, dtype=np.int32)
    paint_runs(image, runs, values, np.ones(len(runs), dtype=bool))
    return image


@pytest.mark.parametrize("seed", range(8))
def test_foreground_runs_number_components_and_cores_as_ndimage_label(seed: int) -> None:
    # Given ragged maps: foreground of any density (touching the image border), cores inside it,
    # rows of one pixel and one column
    rng = np.random.default_rng(seed)
    shape = [(int(rng.integers(1, 60)), int(rng.integers(1, 60))), (1, 40), (40, 1), (37, 53)][seed % 4]
    background = ndi.gaussian_filter(rng.random(shape), rng.uniform(0, 1.5)).astype(np.float32)
    background = (background - background.mean()) * 4 + rng.uniform(0.3, 0.7)
    relief = rng.random(shape).astype(np.float32)
    foreground = background < 0.5
    cores = foreground & (relief > 0.6)

    # When the runs are found
    runs, run_component, count, core_runs, core_seed, core_run, seeds = foreground_runs(
        background, relief, np.float32(0.6)
    )

    # Then painted back they are ndimage.label's components and cores, numbering included, and each
    # core run lies in the foreground run recorded for it
    components, expected_count = ndi.label(foreground, structure=EIGHT)
    labelled_cores, expected_seeds = ndi.label(cores, structure=EIGHT)
    assert (count, seeds) == (expected_count, expected_seeds)
    np.testing.assert_array_equal(_painted(shape, runs, run_component), components)
    np.testing.assert_array_equal(_painted(shape, core_runs, core_seed), labelled_cores)
    holders = runs[core_run]
    assert np.all(holders[:, 0] == core_runs[:, 0])
    assert np.all((holders[:, 1] <= core_runs[:, 1]) & (core_runs[:, 2] <= holders[:, 2]))
    assert np.all(np.diff(runs[:, 0] * (shape[1] + 1) + runs[:, 1]) > 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_runs_find_the_seeds_ndimage_finds(scene: object, dtype: type) -> None:
    # Given the maps of a crowded scene, the distance map in any dtype (near the seed level too)
    distance = (scene.distance * 3).astype(dtype) if dtype is np.int64 else scene.distance.astype(dtype)
    level = 1.0 if dtype is np.int64 else 0.3
    foreground = scene.probs[0] < 0.5
    components, count = ndi.label(foreground, structure=EIGHT)
    expected = reference_seeds(
        foreground & (distance > level), components=components, count=count, min_size=4
    )

    # When the runs are found, then the usable seeds, their owners and the crowded components agree
    runs = postprocess._Runs.find(scene.probs[0], distance, seed_level=level, min_size=4)
    assert runs.components == count
    np.testing.assert_array_equal(runs.usable, expected.usable)
    np.testing.assert_array_equal(runs.owner, np.where(expected.usable, expected.owner, 0))
    np.testing.assert_array_equal(np.flatnonzero(runs.crowded), expected.crowded)
    np.testing.assert_array_equal(_painted(components.shape, runs.cores, runs.core_seed), expected.labels)


# --- thresholds ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16])
def test_renumbered_is_numpys_gather(dtype: type) -> None:
    rng = np.random.default_rng(4)
    labels = np.where(rng.random((37, 53)) < 0.6, rng.integers(1, 40, (37, 53)), 0).astype(dtype)
    renumber = np.where(rng.random(40) < 0.5, rng.integers(1, 30, 40), 0).astype(np.int32)
    renumber[0] = 7  # never read: background stays 0

    found = renumbered(labels, renumber)

    assert found.dtype == np.int32
    np.testing.assert_array_equal(found, np.where(labels > 0, renumber[labels], 0))


@pytest.mark.parametrize("floor", [0.0, 0.5])
def test_keep_above_keeps_and_renumbers_as_a_gather_would(scene: object, floor: float) -> None:
    # Given the instances of a crowded scene, thresholds keeping every object or some
    found = instances_from_maps(scene.probs, scene.distance)

    kept = keep_above(found, thresholds=[floor, floor + 0.1])

    keep = found.scores >= np.array([np.inf, floor, floor + 0.1])[found.classes].astype(np.float32)
    keep[0] = False
    renumber = np.zeros(found.count + 1, dtype=np.int32)
    renumber[keep] = np.arange(1, keep.sum() + 1)
    assert (kept.count == found.count) == (floor == 0.0)
    assert kept.labels.dtype == np.int32
    np.testing.assert_array_equal(kept.labels, renumber[found.labels])
    np.testing.assert_array_equal(kept.classes, np.concatenate([[0], found.classes[keep]]))
    np.testing.assert_array_equal(kept.scores, np.concatenate([[0], found.scores[keep]]))


# --- outlines --------------------------------------------------------------------------------------


def test_outlines_rasterise_to_each_object_and_are_mask_to_polygons_rings(scene: object) -> None:
    # Given the instances of a crowded scene, objects cut by the image border included
    found = instances_from_maps(scene.probs, scene.distance)
    height, width = found.labels.shape

    # When every object is described
    objects = objects_from_instances(found, class_names=["a", "b"], score_floor=0.0)

    # Then each outline rasterises to its object's mask (holes filled) and is the ring set of
    # mask_to_polygons on that mask; bbox and area are the object's
    assert len(objects) == found.count
    for label, described in enumerate(objects, start=1):
        mask = found.labels == label
        drawn = annotation_mask(described.segmentation, height=height, width=width)
        filled = ndi.binary_fill_holes(mask, structure=EIGHT)
        assert np.count_nonzero(drawn & mask) / np.count_nonzero(drawn | mask) >= 0.98
        np.testing.assert_array_equal(drawn, filled)
        assert canonical_rings(described.segmentation) == canonical_rings(mask_to_polygons(mask))
        assert described.bbox == mask_bbox(mask)
        assert described.area == mask.sum()
        assert described.score == pytest.approx(float(found.scores[label]))
        assert described.category == ["a", "b"][found.classes[label] - 1]


def test_outlines_of_awkward_shapes_are_mask_to_polygons_rings() -> None:
    # Given objects with a hole, a piece inside its own hole, pieces touching at a corner,
    # one-pixel and one-pixel-wide parts, and objects on the image border
    labels = np.zeros((16, 20), dtype=np.int32)
    labels[1:8, 1:8] = 1
    labels[3:6, 3:6] = 0
    labels[4, 4] = 1  # an island in its own hole
    labels[1:4, 10:13] = 2
    labels[4:6, 13:15] = 2  # touches the first piece at a corner only
    labels[9, 1] = 3
    labels[9:15, 4] = 4
    labels[12, 4:12] = 4
    labels[0:3, 17:20] = 5
    labels[13:16, 15:20] = 6
    labels[14, 17] = 0  # a one-pixel hole
    instances = Instances(
        labels=labels, classes=np.ones(7, dtype=np.int64), scores=np.linspace(0, 1, 7).astype(np.float32)
    )

    objects = objects_from_instances(instances, class_names=["a"], score_floor=0.0)

    assert len(objects) == 6
    for label, described in enumerate(objects, start=1):
        assert canonical_rings(described.segmentation) == canonical_rings(mask_to_polygons(labels == label))
    assert len(objects[1].segmentation) == 2


def test_objects_under_the_score_floor_or_absent_are_left_out() -> None:
    labels = np.zeros((8, 8), dtype=np.int32)
    labels[1:3, 1:3] = 1
    labels[5:7, 5:7] = 3  # label 2 has no pixels
    instances = Instances(
        labels=labels, classes=np.array([0, 1, 1, 1]), scores=np.array([0, 0.2, 0.9, 0.6], dtype=np.float32)
    )

    objects = objects_from_instances(instances, class_names=["a"], score_floor=0.5)

    assert [o.bbox for o in objects] == [[5.0, 5.0, 2.0, 2.0]]


def test_semantic_regions_are_the_previous_implementations(scene: object) -> None:
    # Given class probabilities of a crowded scene
    probs = scene.probs

    # When the regions are found, then they are exactly what the previous implementation found
    found = regions_from_semantic(probs)
    argmax = np.argmax(probs, axis=0)
    labels = np.zeros(argmax.shape, dtype=np.int32)
    scores, offset = [0.0], 0
    for k in range(1, len(probs)):
        regions, count = ndi.label(argmax == k, structure=EIGHT)
        area = np.bincount(regions.ravel(), minlength=count + 1)
        mean = np.bincount(regions.ravel(), weights=probs[k].ravel(), minlength=count + 1) / np.maximum(
            area, 1
        )
        keep = area >= 16
        keep[0] = False
        renumber = np.zeros(count + 1, dtype=np.int32)
        renumber[keep] = np.arange(offset + 1, offset + int(keep.sum()) + 1)
        labels = np.where(regions > 0, renumber[regions], labels)
        scores += mean[keep].astype(np.float32).tolist()
        offset += int(keep.sum())
    assert found.count > 100
    np.testing.assert_array_equal(found.labels, labels)
    np.testing.assert_array_equal(found.scores, np.asarray(scores, dtype=np.float32))
