"""From dense maps to objects, on maps built from known label images."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from stardist.matching import matching

from segpipe_trainer.postprocess import (
    Instances,
    distance_target,
    instances_from_maps,
    regions_from_semantic,
)


def paint_discs(shape: tuple[int, int], discs: list[tuple[float, float, float]]) -> np.ndarray:
    """int32 H x W: disc i (row, col, radius) painted with label i + 1; later discs cover earlier ones."""
    labels = np.zeros(shape, dtype=np.int32)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    for index, (row, col, radius) in enumerate(discs, start=1):
        labels[(rows - row) ** 2 + (cols - col) ** 2 < radius**2] = index
    return labels


def class_probabilities(
    labels: np.ndarray, classes: np.ndarray, *, num_classes: int, confidence: float = 0.8
) -> np.ndarray:
    """float32 (K+1) x H x W: `confidence` on each pixel's true class, the rest spread evenly."""
    truth = classes[labels]
    rest = (1 - confidence) / num_classes
    probs = np.full((num_classes + 1, *labels.shape), rest, dtype=np.float32)
    for k in range(num_classes + 1):
        probs[k][truth == k] = confidence
    return probs


def maps_of(labels: np.ndarray, classes: np.ndarray, *, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    return class_probabilities(labels, classes, num_classes=num_classes), distance_target(labels)


def best_iou(instances: Instances, truth: np.ndarray) -> float:
    """IoU of `truth` with the predicted object that overlaps it most."""
    overlapping = instances.labels[truth]
    label = np.bincount(overlapping[overlapping > 0]).argmax()
    found = instances.labels == label
    return float(np.count_nonzero(found & truth) / np.count_nonzero(found | truth))


# --- distance_target ---------------------------------------------------------------------------


def test_distance_target_is_one_at_each_centre_and_falls_to_each_objects_own_edge() -> None:
    # Given a small and a large disc touching each other
    labels = paint_discs((60, 80), [(30, 20, 8), (30, 42, 16)])

    # When the distance target is computed
    distance = distance_target(labels)

    # Then it lies in [0, 1], is 0 on background, reaches 1 in each object,
    # and is low on the pixels where the two objects meet
    assert distance.dtype == np.float32
    assert distance.min() == 0 and distance.max() == 1
    assert np.all(distance[labels == 0] == 0)
    assert distance[labels == 1].max() == 1 and distance[labels == 2].max() == 1
    small_edge = (labels == 1) & ndi.binary_dilation(labels == 2)
    assert small_edge.any()
    assert distance[small_edge].max() <= 1 / 7 + 1e-6


def test_distance_target_of_an_object_cut_by_the_border_falls_at_the_border() -> None:
    labels = np.zeros((10, 10), dtype=np.int32)
    labels[:, :5] = 1

    distance = distance_target(labels)

    assert distance[5, 0] == distance[0, 2] < distance[5, 2] == 1


# --- instances_from_maps -----------------------------------------------------------------------


def test_touching_discs_are_separated_where_connected_components_merge_them() -> None:
    # Given three touching discs: one foreground blob holding three objects
    labels = paint_discs((80, 120), [(40, 25, 14), (40, 50, 12), (40, 72, 11)])
    probs, distance = maps_of(labels, np.array([0, 1, 1, 1]), num_classes=1)
    assert ndi.label(labels > 0)[1] == 1

    # When instances are found
    instances = instances_from_maps(probs, distance)

    # Then there are three, each matching one disc closely
    assert instances.count == 3
    for n in (1, 2, 3):
        assert best_iou(instances, labels == n) >= 0.95


def test_each_object_takes_the_class_of_its_highest_mean_probability_and_its_score() -> None:
    # Given two touching objects of different classes, with known confidences
    labels = paint_discs((60, 80), [(30, 25, 12), (30, 48, 12)])
    probs = class_probabilities(labels, np.array([0, 2, 1]), num_classes=2, confidence=0.7)

    # When instances are found
    instances = instances_from_maps(probs, distance_target(labels))

    # Then each object has its own class, and its score is its class's mean probability
    assert instances.count == 2
    found = {int(instances.classes[n]): float(instances.scores[n]) for n in (1, 2)}
    assert found == pytest.approx({1: 0.7, 2: 0.7})
    left = int(np.bincount(instances.labels[labels == 1]).argmax())
    assert instances.classes[left] == 2
    assert instances.scores.dtype == np.float32 and instances.classes.dtype == np.int64


def test_objects_under_min_area_are_dropped_and_labels_renumbered() -> None:
    # Given a large object, a tiny one, and another large one
    labels = np.zeros((40, 60), dtype=np.int32)
    labels[5:20, 5:20] = 1
    labels[30:33, 30:33] = 2
    labels[5:20, 40:55] = 3
    probs, distance = maps_of(labels, np.array([0, 1, 1, 1]), num_classes=1)

    # When instances are found with min_area 16
    instances = instances_from_maps(probs, distance, min_area=16)

    # Then the 9-pixel object is gone and the rest are numbered 1..2
    assert instances.count == 2
    assert sorted(np.unique(instances.labels).tolist()) == [0, 1, 2]
    assert not instances.labels[30:33, 30:33].any()
    assert instances.classes.tolist() == [0, 1, 1] and len(instances.scores) == 3


def test_empty_image_gives_no_objects() -> None:
    probs = np.zeros((3, 32, 48), dtype=np.float32)
    probs[0] = 1.0

    instances = instances_from_maps(probs, np.zeros((32, 48), dtype=np.float32))

    assert instances.count == 0
    assert instances.labels.shape == (32, 48) and not instances.labels.any()
    assert instances.classes.tolist() == [0] and instances.scores.tolist() == [0.0]


def test_a_crowded_tile_is_recovered_even_from_a_noisy_distance_map() -> None:
    # Given a crowded tile of touching discs, and a distance map with smooth noise
    rng = np.random.default_rng(3)
    discs = [(rng.uniform(0, 256), rng.uniform(0, 256), rng.uniform(6, 14)) for _ in range(70)]
    labels = paint_discs((256, 256), discs)
    labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)
    classes = np.ones(labels.max() + 1, dtype=np.int64)
    classes[0] = 0
    probs, distance = maps_of(labels, classes, num_classes=1)
    noise = ndi.gaussian_filter(rng.normal(size=labels.shape), 2)
    noisy = (distance + 0.05 * noise / noise.std()).astype(np.float32)

    # When instances are found, and when connected components alone are used
    instances = instances_from_maps(probs, noisy)
    components = ndi.label(labels > 0)[0]

    # Then the watershed recovers nearly every object, far better than components do
    found = matching(labels, instances.labels, thresh=0.5)
    merged = matching(labels, components, thresh=0.5)
    assert found.f1 >= 0.95
    assert merged.f1 < found.f1 - 0.1


@settings(max_examples=40, deadline=None)
@given(
    discs=st.lists(
        st.tuples(st.floats(0, 48), st.floats(0, 64), st.floats(1.5, 10)),
        max_size=8,
    ),
    min_area=st.integers(1, 40),
)
def test_instances_are_well_formed_for_any_scene(
    discs: list[tuple[float, float, float]], min_area: int
) -> None:
    # Given any scene of discs
    labels = paint_discs((48, 64), discs)
    classes = np.array([0] + [1 + index % 2 for index in range(len(discs))])
    probs, distance = maps_of(labels, classes, num_classes=2)

    # When instances are found
    instances = instances_from_maps(probs, distance, min_area=min_area)

    # Then labels run 1..N, every object is big enough, on foreground, with a class and a score
    n = instances.count
    assert set(np.unique(instances.labels).tolist()) <= set(range(n + 1))
    areas = np.bincount(instances.labels.ravel(), minlength=n + 1)
    assert np.all(areas[1:] >= min_area)
    assert not instances.labels[labels == 0].any()
    assert np.all(np.isin(instances.classes[1:], [1, 2]))
    assert np.all((instances.scores[1:] > 0) & (instances.scores[1:] <= 1))


# --- regions_from_semantic ---------------------------------------------------------------------


def test_semantic_regions_are_connected_regions_of_each_class() -> None:
    # Given a class map with two regions of class 1, one of class 2 and a speck of class 2
    truth = np.zeros((40, 60), dtype=np.int64)
    truth[2:12, 2:12] = 1
    truth[20:35, 5:15] = 1
    truth[10:30, 30:55] = 2
    truth[36:38, 56:58] = 2
    probs = class_probabilities(truth, np.arange(3), num_classes=2, confidence=0.6)

    # When regions are taken with min_area 16
    regions = regions_from_semantic(probs, min_area=16)

    # Then three regions remain, with their classes and scores, and the speck is dropped
    assert regions.count == 3
    assert sorted(regions.classes[1:].tolist()) == [1, 1, 2]
    assert regions.scores[1:] == pytest.approx([0.6, 0.6, 0.6])
    for n in range(1, 4):
        region = regions.labels == n
        assert np.all(truth[region] == regions.classes[n])
    assert not regions.labels[36:38, 56:58].any()


def test_semantic_regions_of_an_all_background_map_are_empty() -> None:
    probs = np.zeros((2, 16, 16), dtype=np.float32)
    probs[0] = 1

    regions = regions_from_semantic(probs)

    assert regions.count == 0 and not regions.labels.any()
