"""The Analyses view of the review page in a real browser, against the local stack's API.

No model is trained: a completed version, one running analysis (two hosts' progress files) and one
completed analysis (its item, images/{stem}.json, previews, masks and merged outputs) are seeded
straight into the stack (tests/helpers/seed_analysis.py). Expectations come from the JSON API
itself where it has them, and from what was seeded.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import ReviewTarget
from tests.helpers.seed import seed_completed_version
from tests.helpers.seed_analysis import (
    AnalysisSpec,
    SeededAnalysis,
    seed_completed_analysis,
    seed_failed_analysis,
    seed_running_analysis,
)
from tests.helpers.synthetic import SeedSpec

if TYPE_CHECKING:
    from pathlib import Path

    from segpipe_local.config import LocalConfig

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

PROJECT = "analyses-lab"
REASON = "The image plate-6/b.tif could not be read: it is not a TIFF file (truncated at byte 4096)."
#: The page's class colours (functions/segpipe/ui/colours.js), in the version's class order.
CLASS_RGB = {"nucleus": (0xFF, 0xB0, 0x00), "cell": (0x4C, 0xC9, 0xF0)}


@dataclass(frozen=True)
class AnalysesTarget:
    api: ReviewTarget
    version: int
    running: SeededAnalysis
    completed: SeededAnalysis
    failed: SeededAnalysis

    def analysis_path(self, seeded: SeededAnalysis) -> str:
        return f"/projects/{PROJECT}/analyses/{seeded.analysis}"


@pytest.fixture(scope="module")
def analyses(local_stack: LocalConfig) -> AnalysesTarget:
    version = seed_completed_version(
        config=local_stack, spec=SeedSpec(project=PROJECT, images=2, objects=6, test_fraction=0.5)
    ).version
    completed = seed_completed_analysis(
        config=local_stack, spec=AnalysisSpec(project=PROJECT, version=version)
    )
    running = seed_running_analysis(
        config=local_stack,
        spec=AnalysisSpec(
            project=PROJECT, version=version, name="Plate 8, still running", images_folder="plate-8"
        ),
    )
    failed = seed_failed_analysis(
        config=local_stack,
        spec=AnalysisSpec(project=PROJECT, version=version, name="Plate 6", images_folder="plate-6"),
        reason=REASON,
    )
    target = ReviewTarget(api_url=local_stack.api_url, project=PROJECT, version=version)
    return AnalysesTarget(api=target, version=version, running=running, completed=completed, failed=failed)


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def row_of(page: Any, seeded: SeededAnalysis) -> Any:
    return page.locator(f"[data-testid=analysis-row][data-analysis='{seeded.analysis}']")


def class_pixels(page: Any) -> dict[str, int]:
    """Opaque pixels of the outline canvas close to each class's colour."""
    counted: dict[str, int] = page.evaluate(
        """(colours) => {
          const canvas = document.querySelector("[data-testid=overlay]");
          const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
          const counts = Object.fromEntries(Object.keys(colours).map((name) => [name, 0]));
          for (let i = 0; i < data.length; i += 4) {
            if (data[i + 3] < 200) continue;
            for (const [name, [r, g, b]] of Object.entries(colours)) {
              const distance = Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b);
              if (distance < 60) counts[name] += 1;
            }
          }
          return counts;
        }""",
        {name: list(rgb) for name, rgb in CLASS_RGB.items()},
    )
    return counted


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        data: bytes = response.read()
        return data


# --- the analyses table --------------------------------------------------------------------------


def test_analyses_view_lists_both_analyses_with_progress(
    page: Any, analyses: AnalysesTarget, artifacts_dir: Path
) -> None:
    # Given a project with a running and a completed analysis
    listed = {row["analysis"]: row for row in analyses.api.api(f"/projects/{PROJECT}/analyses")["analyses"]}
    assert set(listed) >= {analyses.running.analysis, analyses.completed.analysis}

    # When its page is opened
    page.goto(analyses.api.page_url(f"/projects/{PROJECT}"))

    # Then the Analyses view beside the model table lists both, newest first
    _expect()(page.get_by_test_id("model-table")).to_be_visible()
    running, completed = row_of(page, analyses.running), row_of(page, analyses.completed)
    _expect()(running).to_be_visible()
    _expect()(completed).to_be_visible()
    numbers = [int(n) for n in page.locator("[data-testid=analysis-row]").evaluate_all(
        "(rows) => rows.map((row) => row.dataset.analysis)")]  # fmt: skip
    assert numbers == sorted(numbers, reverse=True)

    # ... the running one with its progress summed over its hosts, as a bar and as images done of total
    _expect()(running.get_by_test_id("status")).to_have_text("running")
    done, total = analyses.running.images_done, analyses.running.images_total
    _expect()(running.get_by_test_id("analysis-progress")).to_have_text(f"{done} of {total} images")
    bar = running.get_by_test_id("analysis-bar")
    assert (bar.get_attribute("value"), bar.get_attribute("max")) == (str(done), str(total))
    assert listed[analyses.running.analysis]["images_done"] == done
    _expect()(page.get_by_test_id("analyses-updated")).to_contain_text("refreshing while running")

    # ... the completed one with its version, thresholds used and object counts per class
    _expect()(completed.get_by_test_id("status")).to_have_text("completed")
    _expect()(completed.get_by_test_id("analysis-version")).to_have_text(f"v{analyses.version}")
    for name, value in listed[analyses.completed.analysis]["thresholds"].items():
        chip = completed.locator(f"[data-testid=analysis-thresholds] [data-class='{name}']")
        _expect()(chip).to_contain_text(f"{value:.2f}")
    for name, objects in analyses.completed.objects.items():
        chip = completed.locator(f"[data-testid=analysis-objects] [data-class='{name}']")
        _expect()(chip).to_have_attribute("data-value", str(objects))
        assert listed[analyses.completed.analysis]["objects"][name] == objects
    page.get_by_test_id("analyses").screenshot(path=str(artifacts_dir / "analyses_table.png"))


def test_progress_refreshes_while_running(
    page: Any, analyses: AnalysesTarget, local_stack: LocalConfig
) -> None:
    # Given the page of a running analysis (its own: the other tests see the seeded progress)
    running = seed_running_analysis(
        config=local_stack,
        spec=AnalysisSpec(project=PROJECT, version=analyses.version, name="Plate 9", images_folder="plate-9"),
    )
    page.goto(analyses.api.page_url(analyses.analysis_path(running)))
    progress = page.get_by_test_id("analysis-progress")
    _expect()(progress).to_have_text(f"{running.images_done} of {running.images_total} images")
    _expect()(page.get_by_test_id("no-images")).to_be_visible()

    # When a host uploads new progress
    from segpipe.models import keys
    from segpipe.models.analysis import AnalysisProgress
    from segpipe_local.aws import client

    key = f"{keys.analysis_progress_prefix(PROJECT, running.analysis)}algo-1.json"
    body = AnalysisProgress(host="algo-1", images_done=20, images_total=20)
    client("s3", local_stack).put_object(
        Bucket=local_stack.bucket, Key=key, Body=body.model_dump_json().encode()
    )

    # Then the page shows it without a reload (it polls while running)
    expected = 20 + running.images_done - 7
    _expect()(progress).to_have_text(f"{expected} of {running.images_total} images", timeout=12_000)
    assert analyses.api.api(analyses.analysis_path(running))["images_done"] == expected


# --- a completed analysis ----------------------------------------------------------------------


def test_completed_analysis_draws_its_outlines_and_links_its_outputs(
    page: Any, analyses: AnalysesTarget, artifacts_dir: Path
) -> None:
    seeded = analyses.completed
    view = analyses.api.api(analyses.analysis_path(seeded))

    # When the completed analysis is opened from the table
    page.goto(analyses.api.page_url(f"/projects/{PROJECT}"))
    row_of(page, seeded).get_by_test_id("analysis-link").click()
    page.wait_for_selector("[data-testid=viewer][data-state=ready]")

    # Then its first image is drawn with every kept object outlined in its class's colour
    _expect()(page.get_by_test_id("analysis-title")).to_contain_text(view["name"])
    stem = page.get_by_test_id("viewer").get_attribute("data-stem")
    image = analyses.api.api(f"{analyses.analysis_path(seeded)}/images/{stem}")
    assert len(image["objects"]) == len(seeded.images[stem].objects) > 0
    _expect()(page.get_by_test_id("objects-drawn")).to_have_text(str(len(image["objects"])))
    _expect()(page.get_by_test_id("objects-total")).to_have_text(str(len(image["objects"])))
    pixels = class_pixels(page)
    for name in {o["category"] for o in image["objects"]}:
        assert pixels[name] > 50, pixels
    _expect()(page.get_by_test_id("stage-note")).to_be_hidden()  # the preview was drawn under them

    # ... the per-class summary matches the stored one
    for name, totals in view["summary"]["per_class"].items():
        summary_row = page.locator(f"[data-testid=summary-row][data-class='{name}']")
        _expect()(summary_row.get_by_test_id("summary-objects")).to_have_attribute(
            "data-value", str(totals["objects"])
        )
        _expect()(summary_row.get_by_test_id("summary-um2")).to_contain_text("µm²")

    # ... and the four merged outputs are linked, each link fetching its file
    links = page.get_by_test_id("output-link")
    _expect()(links).to_have_count(4)
    hrefs = {link.get_attribute("data-name"): link.get_attribute("href") for link in links.all()}
    assert list(hrefs) == ["coco.json", "objects.csv", "images.csv", "summary.json"]
    coco = json.loads(fetch(hrefs["coco.json"]))
    assert len(coco["annotations"]) == sum(seeded.objects.values())
    assert fetch(hrefs["objects.csv"]).decode().count("\n") == sum(seeded.objects.values()) + 1

    # ... and the shown image's mask
    mask = page.get_by_test_id("mask-link")
    _expect()(mask).to_contain_text(f"{stem}.tif")
    assert fetch(str(mask.get_attribute("href")))[:2] in (b"II", b"MM")  # a TIFF

    page.get_by_test_id("stage").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "analyses_page.png"), full_page=True)

    # When a class is switched off, its outlines go and the others stay
    hidden = image["objects"][0]["category"]
    page.locator(f"[data-testid=class-toggle][data-class='{hidden}']").uncheck()
    kept = sum(1 for o in image["objects"] if o["category"] != hidden)
    _expect()(page.get_by_test_id("objects-drawn")).to_have_text(str(kept))
    assert class_pixels(page)[hidden] == 0

    # When stepping to the next image, its outlines are drawn
    page.locator(f"[data-testid=class-toggle][data-class='{hidden}']").check()
    page.get_by_test_id("next").click()
    _expect()(page.get_by_test_id("image-counter")).to_have_text(f"2 / {seeded.images_total}")
    page.wait_for_selector("[data-testid=viewer][data-state=ready]")
    second = page.get_by_test_id("viewer").get_attribute("data-stem")
    assert second != stem
    _expect()(page.get_by_test_id("objects-drawn")).to_have_text(str(len(seeded.images[str(second)].objects)))


def test_images_list_counts_and_opens_each_image(page: Any, analyses: AnalysesTarget) -> None:
    seeded = analyses.completed
    listing = analyses.api.api(f"{analyses.analysis_path(seeded)}/images")

    # When the completed analysis's page is opened
    page.goto(analyses.api.page_url(analyses.analysis_path(seeded)))
    page.wait_for_selector("[data-testid=viewer][data-state=ready]")

    # Then every analysed image is listed, in the API's order, with its counts per class
    rows = page.get_by_test_id("analysis-image-row")
    _expect()(rows).to_have_count(listing["total"])
    assert listing["total"] == seeded.images_total
    for row, entry in zip(rows.all(), listing["images"], strict=True):
        assert row.get_attribute("data-stem") == entry["stem"]
        for name, expected in entry["counts"].items():
            _expect()(row.locator(f"td[data-class='{name}']")).to_have_text(str(expected))
            assert expected == seeded.images[entry["stem"]].counts[name]

    # When the last one is picked from the list, the viewer shows it and marks its row
    last = listing["images"][-1]
    rows.last.get_by_test_id("open-image").click()
    _expect()(page.get_by_test_id("image-counter")).to_have_text(f"{listing['total']} / {listing['total']}")
    page.wait_for_selector(f"[data-testid=viewer][data-stem='{last['stem']}'][data-state=ready]")
    _expect()(page.get_by_test_id("objects-drawn")).to_have_text(str(last["objects"]))
    _expect()(rows.last).to_have_class("current")
    _expect()(page.get_by_test_id("mask-link")).to_contain_text(f"{last['stem']}.tif")


def test_an_unknown_analysis_says_so(page: Any, analyses: AnalysesTarget) -> None:
    # When the page of an analysis the project does not have is opened
    page.goto(analyses.api.page_url(f"/projects/{PROJECT}/analyses/999999"))

    # Then it says so, with the API's error code, and links back to the project
    _expect()(page.get_by_test_id("error")).to_contain_text("No such analysis.")
    _expect()(page.locator("[data-testid=error] .error-code")).to_have_text("analysis_not_found")
    _expect()(page.get_by_test_id("back")).to_have_attribute("href", f"#/projects/{PROJECT}")


def test_a_failed_analysis_shows_its_reason(page: Any, analyses: AnalysesTarget) -> None:
    # Given a failed analysis in the table
    page.goto(analyses.api.page_url(f"/projects/{PROJECT}"))
    row = row_of(page, analyses.failed)
    _expect()(row.get_by_test_id("status")).to_have_text("failed")
    assert analyses.api.api(analyses.analysis_path(analyses.failed))["failure_reason"] == REASON

    # When it is opened, its page says why it failed, has no images and links no outputs
    row.get_by_test_id("analysis-link").click()
    _expect()(page.get_by_test_id("failure-reason")).to_have_text(REASON)
    _expect()(page.get_by_test_id("no-images")).to_contain_text("did not complete")
    _expect()(page.get_by_test_id("output-link")).to_have_count(0)
    _expect()(page.get_by_test_id("no-outputs")).to_have_text("This analysis failed: it has no outputs.")
