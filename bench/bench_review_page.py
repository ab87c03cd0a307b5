"""Benchmark: the model review page with many images and objects, measured in the browser.

Seeds a completed version (default 500 images, 50,000 predicted objects, two classes) into an
embedded local stack through the real ingestion path, opens its page in Debian's chromium and
measures, with the page's own clock (`performance.now()`):

- time to first render: navigation start to the first image drawn with its outlines and the
  statistics table filled (the page's `segpipe:first-render` mark); the first load is cold
  (nothing cached), the next ones warm (the browser's HTTP cache may hold the page's assets);
- slider update: from setting the slider's value and dispatching its `input` event to the end of
  the handler (outlines redrawn, table and plot updated), and to the next painted frame
  (requestAnimationFrame, then a task), over many moves between distinct thresholds;
- image step: from pressing "Next" to the next image drawn (neighbours are prefetched).

Run: `python -m bench.bench_review_page [--images 500 --objects 50000 --moves 20 --loads 5]`.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.browser import CHROMIUM, LAUNCH_ARGS
from tests.helpers.seed import seed_completed_version
from tests.helpers.stack_process import local_config, local_stack_process
from tests.helpers.synthetic import SeedSpec

VIEWPORT = {"width": 1400, "height": 1000}

# One slider move, timed inside the page: handler end, then the next painted frame.
MOVE_SCRIPT = """async (value) => {
  const slider = document.querySelector('[data-testid=threshold-slider]');
  const start = performance.now();
  slider.value = value.toFixed(2);
  slider.dispatchEvent(new Event('input', { bubbles: true }));
  const handled = performance.now();
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  const painted = performance.now();
  return {
    handler: handled - start,
    frame: painted - start,
    drawn: Number(document.querySelector('[data-testid=objects-drawn]').textContent),
  };
}"""

# One step to the next image, timed inside the page until the viewer says it is ready again.
STEP_SCRIPT = """async () => {
  const viewer = document.querySelector('[data-testid=viewer]');
  const before = viewer.dataset.index;
  const start = performance.now();
  document.querySelector('[data-testid=next]').click();
  while (viewer.dataset.index === before || viewer.dataset.state !== 'ready') {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return performance.now() - start;
}"""


@dataclass
class Figures:
    seed_s: float = 0.0
    first_render_ms: list[float] = field(default_factory=list)
    handler_ms: list[float] = field(default_factory=list)
    frame_ms: list[float] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    drawn: list[int] = field(default_factory=list)


def _first_render(page: Any, url: str) -> float:
    page.goto(url)
    page.wait_for_selector("body[data-first-render]", state="attached", timeout=120_000)
    started: float = page.evaluate("performance.getEntriesByName('segpipe:first-render')[0].startTime")
    return started


def _measure(browser: Any, url: str, *, loads: int, moves: int, steps: int, figures: Figures) -> None:
    for _ in range(loads):
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        figures.first_render_ms.append(_first_render(page, url))
        context.close()
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    _first_render(page, url)
    rng = random.Random(0)
    value = float(page.get_by_test_id("threshold-slider").input_value())
    for _ in range(moves):
        value = rng.choice([round(0.05 * i, 2) for i in range(1, 20) if abs(0.05 * i - value) > 1e-6])
        result = page.evaluate(MOVE_SCRIPT, value)
        figures.handler_ms.append(result["handler"])
        figures.frame_ms.append(result["frame"])
        figures.drawn.append(result["drawn"])
    for _ in range(steps):
        figures.step_ms.append(page.evaluate(STEP_SCRIPT))
    context.close()


def _row(name: str, values: list[float], unit: str = "ms") -> str:
    if not values:
        return f"{name:<44} {'–':>10}"
    return (
        f"{name:<44} {statistics.median(values):>8.1f} {unit}  worst {max(values):>8.1f} {unit}"
        f"  (n={len(values)})"
    )


def _report(figures: Figures, *, spec: SeedSpec, chromium: str) -> None:
    print(
        f"review page benchmark: {spec.images} images, {spec.objects} objects, classes {list(spec.classes)}"
    )
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; browser: {chromium} (headless, no GPU)")
    print(f"seeding through the real ingestion path: {figures.seed_s:.1f} s")
    print("-" * 96)
    cold, warm = figures.first_render_ms[:1], figures.first_render_ms[1:]
    print(_row("first render, cold load", cold))
    print(_row("first render, later loads", warm))
    print(_row("slider: input event -> redraw done", figures.handler_ms))
    print(_row("slider: input event -> next painted frame", figures.frame_ms))
    print(_row("image step: Next -> image and outlines drawn", figures.step_ms))
    if figures.drawn:
        low, high = min(figures.drawn), max(figures.drawn)
        print(f"objects drawn on the shown image as the slider moved: {low}..{high}")
    print("-" * 96)
    print(
        "first render = navigation start to the page's 'segpipe:first-render' mark (image, outlines, table);"
    )
    print("slider figures timed in the page with performance.now() around a dispatched input event.")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--objects", type=int, default=50_000)
    parser.add_argument("--moves", type=int, default=20)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not CHROMIUM.exists():
        print(f"skipped: {CHROMIUM} is missing (apt-get install -y chromium)")
        return
    from playwright.sync_api import sync_playwright

    spec = SeedSpec(project="bench", images=args.images, objects=args.objects)
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="segpipe-bench-") as folder:
        config = local_config(data_dir=Path(folder))
        with local_stack_process(config=config):
            started = time.monotonic()
            seeded = seed_completed_version(config=config, spec=spec)
            figures.seed_s = time.monotonic() - started
            url = f"{config.api_url}/ui/#/projects/{seeded.project}/models/{seeded.version}"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
                chromium = f"Chromium {browser.version}"
                _measure(browser, url, loads=args.loads, moves=args.moves, steps=args.steps, figures=figures)
                browser.close()
    _report(figures, spec=spec, chromium=chromium)


if __name__ == "__main__":
    main()
