"""The model review page in a real browser, against a running segpipe API.

Expectations come from the JSON API itself (the image's objects, the metrics sweep, the version),
so the tests hold for any completed version with at least one object, seeded or really trained.
"""

from __future__ import annotations

import io
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image

from tests.browser.conftest import ReviewTarget, train_version
from tests.helpers.seed import seed_completed_version, seed_unfinished_version
from tests.helpers.synthetic import SeedSpec

if TYPE_CHECKING:
    from pathlib import Path

    from segpipe_local.config import LocalConfig

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

LOW, HIGH = 0.05, 0.95


# --- helpers -------------------------------------------------------------------------------------


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def open_version(page: Any, target: ReviewTarget) -> None:
    page.goto(target.page_url())
    page.wait_for_selector("[data-testid=viewer][data-state=ready]")
    page.wait_for_selector("[data-testid=stats-table] td[data-value]")


def shown_image(page: Any) -> tuple[str, str]:
    viewer = page.get_by_test_id("viewer")
    return viewer.get_attribute("data-split"), viewer.get_attribute("data-stem")


def image_objects(target: ReviewTarget, split: str, stem: str) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = target.api(f"{target.version_path}/predictions/{split}/{stem}")["objects"]
    return objects


def expected_drawn(objects: list[dict[str, Any]], threshold: float, classes: set[str] | None = None) -> int:
    return sum(
        1 for o in objects if o["score"] >= threshold - 1e-9 and (classes is None or o["category"] in classes)
    )


def set_threshold(page: Any, value: float) -> None:
    page.get_by_test_id("threshold-slider").fill(f"{value:.2f}")
    _expect()(page.get_by_test_id("threshold-value")).to_have_text(f"{value:.2f}")


def drawn(page: Any) -> int:
    return int(page.get_by_test_id("objects-drawn").inner_text())


def step_to_image_with_spread(page: Any, target: ReviewTarget) -> list[dict[str, Any]]:
    """Step through images until one has objects scored both below and at or above HIGH."""
    total = int(page.get_by_test_id("image-counter").inner_text().split("/")[1])
    for index in range(total):
        objects = image_objects(target, *shown_image(page))
        if expected_drawn(objects, LOW) > expected_drawn(objects, HIGH):
            return objects
        if index < total - 1:
            page.get_by_test_id("next").click()
            _expect()(page.get_by_test_id("image-counter")).to_have_text(f"{index + 2} / {total}")
            page.wait_for_selector("[data-testid=viewer][data-state=ready]")
    pytest.fail("no image of the split has an object scored below the slider's maximum")


def stat(page: Any, split: str, metric: str, row: str = "__overall__") -> str:
    cell = page.locator(f"td[data-split='{split}'][data-row='{row}'][data-metric='{metric}']")
    return str(cell.get_attribute("data-value"))


def sweep_value(metrics: dict[str, Any], split: str, threshold: float, metric: str) -> Any:
    point = min(metrics[split]["sweep"], key=lambda p: abs(p["threshold"] - threshold))
    return point["overall"][metric]


# --- the model table -----------------------------------------------------------------------------


def test_model_table_lists_the_trained_version(page: Any, review_target: ReviewTarget) -> None:
    # Given a project with a completed version
    model = review_target.api(review_target.version_path)

    # When the project is chosen with the input
    page.goto(review_target.page_url("/"))
    page.get_by_label("Project").fill(review_target.project)
    page.get_by_test_id("project-open").click()

    # Then its row shows the label, the status and the headline F1, and links to the version page
    row = page.locator(f"[data-testid=model-row][data-version='{review_target.version}']")
    _expect()(row).to_be_visible()
    _expect()(row.get_by_test_id("status")).to_have_text("completed")
    _expect()(row.get_by_test_id("model-link")).to_have_text(model["label"])
    if model["headline"] and model["headline"]["f1"] is not None:
        _expect()(row.locator("[data-metric=f1]")).to_contain_text(f"{model['headline']['f1']:.3f}")
    assert page.evaluate("localStorage.getItem('segpipe.project')") == review_target.project
    row.get_by_test_id("model-link").click()
    page.wait_for_selector("[data-testid=viewer][data-state=ready]")
    _expect()(page.get_by_test_id("version-title")).to_contain_text(model["label"])


def test_active_filter_and_activation(page: Any, review_target: ReviewTarget) -> None:
    # Given the model table of the project, with the version inactive
    was_active = review_target.api(review_target.version_path)["active"]
    review_target.api(f"{review_target.version_path}/deactivate", method="POST")
    page.goto(review_target.page_url(f"/projects/{review_target.project}"))
    row = page.locator(f"[data-testid=model-row][data-version='{review_target.version}']")
    try:
        # When the version is activated from its row
        row.get_by_test_id("activate").click()

        # Then the API says it is active, the active filter lists it, and it can be deactivated
        _expect()(row.get_by_test_id("active-badge")).to_be_visible()
        assert review_target.api(review_target.version_path)["active"] is True
        page.get_by_test_id("active-only").check()
        _expect()(row).to_be_visible()
        row.get_by_test_id("deactivate").click()
        _expect()(page.get_by_test_id("empty").or_(row.get_by_test_id("activate"))).to_be_visible()
        assert review_target.api(review_target.version_path)["active"] is False
    finally:
        if was_active:
            review_target.api(f"{review_target.version_path}/activate", method="POST")


# --- the version page ----------------------------------------------------------------------------


def test_raising_the_threshold_draws_fewer_objects_and_changes_the_statistics(
    page: Any, review_target: ReviewTarget
) -> None:
    # Given the version page, on an image with objects scored on both sides of the slider's maximum
    open_version(page, review_target)
    objects = step_to_image_with_spread(page, review_target)
    metrics = review_target.api(f"{review_target.version_path}/metrics?sweep=true")
    stats_split = "test" if metrics["test"] else "train"

    # When the slider goes from its minimum to its maximum
    set_threshold(page, LOW)
    low_drawn, low_shown = drawn(page), stat(page, stats_split, "predicted_objects")
    set_threshold(page, HIGH)
    high_drawn, high_shown = drawn(page), stat(page, stats_split, "predicted_objects")

    # Then exactly the objects scored at or above it are drawn, and the table follows the sweep
    assert low_drawn == expected_drawn(objects, LOW)
    assert high_drawn == expected_drawn(objects, HIGH) < low_drawn
    assert int(low_shown) == sweep_value(metrics, stats_split, LOW, "predicted_objects")
    assert int(high_shown) == sweep_value(metrics, stats_split, HIGH, "predicted_objects")
    assert high_shown != low_shown
    _expect()(page.get_by_test_id("stats-threshold-value")).to_have_text(f"{HIGH:.2f}")
    _expect()(page.get_by_test_id("plot-marker")).to_have_attribute("data-threshold", f"{HIGH:.2f}")


def test_class_selector_hides_a_class(page: Any, review_target: ReviewTarget) -> None:
    # Given the version page at the lowest threshold, on an image with objects
    open_version(page, review_target)
    set_threshold(page, LOW)
    objects = image_objects(review_target, *shown_image(page))
    assert objects, "the first image has no objects"
    hidden = objects[0]["category"]
    rest = {o["category"] for o in objects} - {hidden}

    # When that class is unticked
    page.locator(f"[data-testid=class-toggle][data-class='{hidden}']").uncheck()

    # Then only the other classes' objects are drawn, until it is ticked again
    assert drawn(page) == expected_drawn(objects, LOW, rest) < len(objects)
    _expect()(page.locator(f"[data-testid=class-count][data-class='{hidden}']")).to_have_text("0")
    page.locator(f"[data-testid=class-toggle][data-class='{hidden}']").check()
    assert drawn(page) == expected_drawn(objects, LOW)


def test_show_outlines_toggle_clears_the_overlay(page: Any, review_target: ReviewTarget) -> None:
    # Given the version page with outlines drawn
    open_version(page, review_target)
    set_threshold(page, LOW)
    painted = "(() => { const c = document.querySelector('[data-testid=overlay]');"
    painted += " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
    painted += " let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; })()"
    assert page.evaluate(painted) > 0

    # When "Show outlines" is switched off
    page.get_by_test_id("show-outlines").uncheck()

    # Then nothing is drawn over the image
    assert page.evaluate(painted) == 0
    assert drawn(page) == 0


def test_update_analysis_threshold_persists(page: Any, review_target: ReviewTarget) -> None:
    # Given the version page and the version's current analysis threshold
    original = review_target.api(review_target.version_path)["analysis_threshold"]
    # (not 0.7: a range input reads 0.70 back as "0.7")
    chosen = 0.65 if original is None or abs(original - 0.65) > 1e-6 else 0.75
    open_version(page, review_target)
    try:
        # When the slider is moved and the threshold saved
        set_threshold(page, chosen)
        page.get_by_test_id("save-threshold").click()
        _expect()(page.get_by_test_id("threshold-status")).to_contain_text("Saved")

        # Then the API has it, and a reload starts the slider there
        assert review_target.api(review_target.version_path)["analysis_threshold"] == pytest.approx(chosen)
        page.reload()
        page.wait_for_selector("[data-testid=viewer][data-state=ready]")
        _expect()(page.get_by_test_id("threshold-slider")).to_have_value(f"{chosen:.2f}")
        _expect()(page.get_by_test_id("analysis-threshold")).to_have_text(f"{chosen:.2f}")
        _expect()(page.get_by_test_id("save-threshold")).to_be_disabled()
    finally:
        if original is not None:
            review_target.api(
                f"{review_target.version_path}/threshold", method="PUT", body={"threshold": original}
            )


def test_train_test_toggle_changes_the_images(page: Any, review_target: ReviewTarget) -> None:
    # Given a version with images in both splits, its page showing a test image
    totals = {
        split: review_target.api(f"{review_target.version_path}/predictions?split={split}&limit=1")["total"]
        for split in ("test", "train")
    }
    if not totals["test"] or not totals["train"]:
        pytest.skip(f"the version lacks a split to toggle between: {totals}")
    train_names = {
        image["file_name"]
        for image in review_target.api(f"{review_target.version_path}/predictions?split=train&limit=1000")[
            "images"
        ]
    }
    open_version(page, review_target)
    assert shown_image(page)[0] == "test"
    test_name = page.get_by_test_id("image-name").inner_text()

    # When "Train images" is chosen
    page.get_by_test_id("split-toggle").get_by_text("Train images").click()

    # Then the viewer steps through the training images instead
    page.wait_for_selector("[data-testid=viewer][data-split=train][data-state=ready]")
    _expect()(page.get_by_test_id("image-counter")).to_have_text(f"1 / {totals['train']}")
    train_name = page.get_by_test_id("image-name").inner_text()
    assert train_name in train_names and train_name != test_name


def test_arrow_keys_and_buttons_step_through_images(page: Any, review_target: ReviewTarget) -> None:
    # Given the version page on the first image of a split with several images
    open_version(page, review_target)
    total = int(page.get_by_test_id("image-counter").inner_text().split("/")[1])
    if total < 2:
        pytest.skip("the shown split has a single image")
    first = page.get_by_test_id("image-name").inner_text()

    # When the right arrow is pressed, then the left one, then "Next"
    page.get_by_test_id("stage").focus()
    page.keyboard.press("ArrowRight")
    _expect()(page.get_by_test_id("image-counter")).to_have_text(f"2 / {total}")
    second = page.get_by_test_id("image-name").inner_text()
    page.keyboard.press("ArrowLeft")

    # Then the counter and the file name follow
    _expect()(page.get_by_test_id("image-counter")).to_have_text(f"1 / {total}")
    _expect()(page.get_by_test_id("image-name")).to_have_text(first)
    page.get_by_test_id("next").click()
    _expect()(page.get_by_test_id("image-name")).to_have_text(second)
    assert second != first


def test_version_page_screenshot(page: Any, review_target: ReviewTarget, artifacts_dir: Path) -> None:
    # Given the version page, fully rendered
    open_version(page, review_target)
    _expect()(page.get_by_test_id("training-details")).to_contain_text("Total images")

    # When it is photographed
    path = artifacts_dir / f"review_page_{review_target.project}.png"
    page.screenshot(path=str(path), full_page=True)
    stage = np.asarray(Image.open(io.BytesIO(page.get_by_test_id("stage").screenshot())).convert("L"))

    # Then the file is kept, and the image stage shows a picture, not a blank box
    assert path.stat().st_size > 10_000
    assert stage.std() > 5


def bracketed(interval: dict[str, Any]) -> str:
    """An interval as the page writes it: two decimals rounded half up, as JavaScript's toFixed does."""

    def fixed(value: float) -> str:
        return str(Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))

    return f"({fixed(interval['low'])}–{fixed(interval['high'])})"


def interval_in(page: Any, metric: str, split: str = "test", row: str = "__overall__") -> Any:
    return page.locator(
        f"td[data-split='{split}'][data-row='{row}'][data-metric='{metric}'] [data-testid=interval]"
    )


def test_bootstrap_intervals_beside_the_test_figures_and_bands_on_the_plot(
    page: Any, local_stack: LocalConfig, artifacts_dir: Path
) -> None:
    # Given a version whose evaluation has bootstrap intervals of its test metrics (1,000 draws over
    # its test images, computed from the seeded objects) and says how its thresholds were chosen
    seeded = seed_completed_version(
        config=local_stack,
        spec=SeedSpec(project="intervals", images=12, objects=360, test_fraction=0.25, bootstrap_draws=1000),
    )
    target = ReviewTarget(api_url=local_stack.api_url, project=seeded.project, version=seeded.version)
    metrics = target.api(f"{target.version_path}/metrics?sweep=true")
    intervals, suggested = metrics["intervals"], metrics["suggested_threshold"]
    headline_f1 = intervals["headline"]["metrics"]["f1"]
    meaning = f"95 % bootstrap interval over {intervals['images']} test images, 1,000 draws"

    # When its page opens at the suggested threshold
    open_version(page, target)
    set_threshold(page, suggested)

    # Then the headline test F1 carries its interval, with what it means, and the estimate is the figure
    _expect()(interval_in(page, "f1")).to_contain_text(bracketed(headline_f1))
    _expect()(interval_in(page, "f1")).to_have_attribute("title", meaning)
    assert float(stat(page, "test", "f1")) == pytest.approx(headline_f1["estimate"], abs=1e-9)
    _expect()(interval_in(page, "panoptic_quality")).to_contain_text(
        bracketed(intervals["headline"]["metrics"]["panoptic_quality"])
    )
    _expect()(interval_in(page, "ap50")).to_contain_text(bracketed(intervals["headline"]["metrics"]["ap50"]))
    assert interval_in(page, "f1", split="train").count() == 0
    assert interval_in(page, "f1", row=seeded.classes[0]).count() == 0

    # And the plot has one band per series, drawn under the lines
    plot = page.get_by_test_id("stats-plot")
    assert plot.locator(".plot-bands + .plot-lines").count() == 1
    for series in ("precision", "recall", "f1"):
        d = plot.locator(f"path.plot-band[data-series='{series}']").get_attribute("d")
        assert d and d.startswith("M") and d.endswith("Z")

    # And the selection is one line in the statistics panel
    _expect()(page.get_by_test_id("selection")).to_have_text(metrics["selection"]["summary"])
    path = artifacts_dir / "review_page_intervals.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000

    # When the slider moves off the suggested threshold
    other = round(suggested + 0.2 if suggested <= 0.7 else suggested - 0.2, 2)
    set_threshold(page, other)

    # Then F1's interval is the sweep's at that threshold, and PQ (only in the headline) has none
    swept = next(p for p in intervals["sweep"] if abs(p["threshold"] - other) < 1e-6)
    _expect()(interval_in(page, "f1")).to_contain_text(bracketed(swept["metrics"]["f1"]))
    _expect()(interval_in(page, "panoptic_quality")).to_have_count(0)


def test_a_version_without_intervals_shows_none(page: Any, local_stack: LocalConfig) -> None:
    # Given a version as older trainers wrote it: no intervals, no selection
    seeded = seed_completed_version(
        config=local_stack, spec=SeedSpec(project="older", images=6, objects=60, test_fraction=0.34)
    )
    target = ReviewTarget(api_url=local_stack.api_url, project=seeded.project, version=seeded.version)
    assert target.api(f"{target.version_path}/metrics")["intervals"] is None

    # When its page opens
    open_version(page, target)

    # Then its figures stand alone, the plot has no band and there is no selection note
    assert page.locator("[data-testid=stats-table] td[data-value]").count() > 0
    assert page.locator("[data-testid=interval]").count() == 0
    assert page.locator("path.plot-band").count() == 0
    assert page.get_by_test_id("selection").count() == 0


def test_a_semantic_version_shows_overlap_statistics(
    page: Any, local_stack: LocalConfig, tmp_path: Path
) -> None:
    # Given a semantic model really trained by the local stack
    target = train_version(local_stack, tmp_path, project="semantic", model_type="semantic", epochs=2)
    metrics = target.api(f"{target.version_path}/metrics?sweep=true")

    # When its page opens
    open_version(page, target)

    # Then the table shows IoU, Dice and pixel accuracy from the sweep, and nothing instance-only
    expected_iou = sweep_value(metrics, "test", metrics["threshold"], "iou")
    assert float(stat(page, "test", "iou")) == pytest.approx(expected_iou, abs=1e-6)
    assert page.locator("td[data-metric='f1']").count() == 0
    _expect()(page.get_by_test_id("statistics")).not_to_contain_text("null")


# --- states and errors ---------------------------------------------------------------------------


def test_training_and_failed_versions_explain_themselves(page: Any, local_stack: LocalConfig) -> None:
    # Given a version still training and one that failed
    reason = "AlgorithmError: CUDA out of memory at tile size 1024; lower the tile size."
    training = seed_unfinished_version(config=local_stack, project="states", label="Nuclei, long run")
    failed = seed_unfinished_version(
        config=local_stack, project="states", label="Tiles too large", status="failed", failure_reason=reason
    )

    # When their pages are opened
    page.goto(f"{local_stack.api_url}/ui/#/projects/states/models/{training}")

    # Then the training one shows its progress and no predictions yet, the failed one its reason
    _expect()(page.get_by_test_id("epoch")).to_have_text("Epoch 7 of 20")
    _expect()(page.get_by_test_id("no-predictions")).to_be_visible()
    page.goto(f"{local_stack.api_url}/ui/#/projects/states/models/{failed}")
    _expect()(page.get_by_test_id("failure-reason")).to_have_text(reason)
    _expect()(page.get_by_test_id("training-details")).to_contain_text("small_test_set")
    page.goto(f"{local_stack.api_url}/ui/#/projects/states")
    _expect()(
        page.locator(f"[data-testid=model-row][data-version='{training}'] [data-testid=epoch]")
    ).to_have_text("epoch 7 / 20")


def test_missing_things_are_explained(page: Any, local_stack: LocalConfig) -> None:
    # Given a project without versions and a version number that does not exist
    # When their pages are opened
    page.goto(f"{local_stack.api_url}/ui/#/projects/nothing-here")
    # Then each says so in words instead of showing a blank page
    _expect()(page.get_by_test_id("empty")).to_contain_text("No AI models")
    page.goto(f"{local_stack.api_url}/ui/#/projects/nothing-here/models/42")
    _expect()(page.get_by_test_id("error")).to_contain_text("no version 42")
    _expect()(page.locator(".error-code")).to_have_text("version_not_found")
