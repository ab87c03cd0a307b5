"""Invariants of the frozen split, checked with hypothesis on generated image lists."""

from __future__ import annotations

import random
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from segpipe.logic.split import SplitAssignment, assign_split
from segpipe.models.coco import CocoImage
from segpipe.models.request import FractionTestSet, ImagesTestSet, NoTestSet

SETTINGS = settings(max_examples=60, deadline=None)


def image(index: int, group: str | None) -> CocoImage:
    return CocoImage(id=index + 1, file_name=f"img_{index:05d}.png", width=64, height=64, group=group)


@st.composite
def image_lists(
    draw: st.DrawFn, *, min_size: int = 0, max_size: int = 120, offset: int = 0
) -> list[CocoImage]:
    """Images with unique names; some grouped (groups named g0..g9), some not."""
    groups = draw(
        st.lists(
            st.one_of(st.none(), st.sampled_from([f"g{n}" for n in range(10)])),
            min_size=min_size,
            max_size=max_size,
        )
    )
    return [image(offset + index, group) for index, group in enumerate(groups)]


fractions = st.floats(min_value=0.01, max_value=0.99)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def sides(assignment: SplitAssignment) -> dict[str, str]:
    placed = {item.file_name: "train" for item in assignment.train}
    placed.update({item.file_name: "test" for item in assignment.test})
    placed.update({item.file_name: "held_out" for item in assignment.held_out})
    return placed


def assert_no_leak(assignment: SplitAssignment) -> None:
    train_names = {item.file_name for item in assignment.train}
    test_names = {item.file_name for item in assignment.test}
    train_groups = {item.group for item in assignment.train if item.group}
    test_groups = {item.group for item in assignment.test if item.group}
    assert not train_names & test_names
    assert not train_groups & test_groups


def assert_partition(assignment: SplitAssignment, images: Sequence[CocoImage]) -> None:
    placed = [*assignment.train, *assignment.test, *assignment.held_out]
    assert sorted(item.id for item in placed) == sorted(item.id for item in images)


@SETTINGS
@given(existing=image_lists(), added=image_lists(offset=10_000), fraction=fractions, seed=seeds)
def test_adding_images_never_moves_an_existing_one(
    existing: list[CocoImage], added: list[CocoImage], fraction: float, seed: int
) -> None:
    rule = FractionTestSet(strategy="fraction", fraction=fraction, seed=seed)

    before = sides(assign_split(existing, test_set=rule))
    after = sides(
        assign_split([*added[: len(added) // 2], *existing, *added[len(added) // 2 :]], test_set=rule)
    )

    assert all(after[name] == side for name, side in before.items())


@SETTINGS
@given(images=image_lists(), fraction=fractions, seed=seeds)
def test_groups_never_straddle_and_every_image_is_placed_once(
    images: list[CocoImage], fraction: float, seed: int
) -> None:
    assignment = assign_split(
        images, test_set=FractionTestSet(strategy="fraction", fraction=fraction, seed=seed)
    )

    assert_no_leak(assignment)
    assert_partition(assignment, images)
    assert not assignment.held_out


@SETTINGS
@given(images=image_lists(), fraction=fractions, seed=seeds, order=st.randoms(use_true_random=False))
def test_the_same_seed_gives_the_same_split_in_any_order(
    images: list[CocoImage], fraction: float, seed: int, order: random.Random
) -> None:
    rule = FractionTestSet(strategy="fraction", fraction=fraction, seed=seed)
    shuffled = list(images)
    order.shuffle(shuffled)

    assert sides(assign_split(images, test_set=rule)) == sides(assign_split(shuffled, test_set=rule))


@settings(max_examples=8, deadline=None)
@given(fraction=st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.5]), seed=seeds)
def test_the_test_share_converges_to_the_fraction(fraction: float, seed: int) -> None:
    # Given 20,000 ungrouped images (binomial standard deviation of the share: at most 0.0035)
    images = [image(index, None) for index in range(20_000)]

    assignment = assign_split(
        images, test_set=FractionTestSet(strategy="fraction", fraction=fraction, seed=seed)
    )

    assert abs(len(assignment.test) / len(images) - fraction) < 0.02


@settings(max_examples=8, deadline=None)
@given(fraction=st.sampled_from([0.1, 0.25]), seed=seeds)
def test_the_test_share_of_groups_converges_to_the_fraction(fraction: float, seed: int) -> None:
    # Given 4,000 groups of 5 tiles each
    images = [image(index, f"slide-{index // 5}") for index in range(20_000)]

    assignment = assign_split(
        images, test_set=FractionTestSet(strategy="fraction", fraction=fraction, seed=seed)
    )

    test_groups = {item.group for item in assignment.test}
    assert abs(len(test_groups) / 4000 - fraction) < 0.03


@SETTINGS
@given(images=image_lists(min_size=1), data=st.data())
def test_explicit_image_lists_are_exact_and_leak_nothing(
    images: list[CocoImage], data: st.DataObject
) -> None:
    # Given a listed subset of the images, plus names that match none
    names = [item.file_name for item in images]
    listed = data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    strangers = data.draw(
        st.lists(st.sampled_from(["nope.png", "img_99999.png", "IMG_00000.PNG"]), unique=True)
    )

    assignment = assign_split(images, test_set=ImagesTestSet(strategy="images", images=[*listed, *strangers]))

    # Then the test set is exactly the listed images, unknown names are reported in order,
    # and other members of the listed images' groups are held out rather than trained on
    assert {item.file_name for item in assignment.test} == set(listed)
    assert assignment.unmatched == strangers
    assert_no_leak(assignment)
    assert_partition(assignment, images)
    test_groups = {item.group for item in assignment.test if item.group}
    assert all(item.group in test_groups for item in assignment.held_out)


@SETTINGS
@given(images=image_lists())
def test_no_test_set_trains_on_everything(images: list[CocoImage]) -> None:
    assignment = assign_split(images, test_set=NoTestSet(strategy="none"))

    assert assignment.train == images
    assert not assignment.test
