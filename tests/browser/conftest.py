"""Browser fixtures: one local stack (in a child process) with a seeded completed version, and
Debian's chromium driven by playwright.

`review_target` is the one fixture the review-page tests need: a completed version with at least
one predicted object, served by some running segpipe API. Override it (for example from an e2e
fixture with a really trained version) to point the same tests at another version.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from segpipe_local.aws import client
from segpipe_local.client import upload_dataset
from segpipe_local.config import LocalConfig
from segpipe_local.demo_data import make_dataset
from tests.helpers.browser import CHROMIUM, LAUNCH_ARGS
from tests.helpers.seed import seed_completed_version, wait_for_status
from tests.helpers.stack_process import local_config, local_stack_process
from tests.helpers.synthetic import SeedSpec

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
VIEWPORT = {"width": 1400, "height": 1000}


@dataclass(frozen=True)
class ReviewTarget:
    """A completed model version and the API that serves it (and its review page)."""

    api_url: str
    project: str
    version: int

    @property
    def version_path(self) -> str:
        return f"/projects/{self.project}/models/{self.version}"

    def page_url(self, fragment: str | None = None) -> str:
        return f"{self.api_url}/ui/#{fragment if fragment is not None else self.version_path}"

    def api(self, path: str, *, method: str = "GET", body: Any = None) -> Any:
        """Call the JSON API directly (the oracle the page is checked against)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.api_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's browser with `apt-get install -y chromium`")
    return CHROMIUM


@pytest.fixture(scope="session")
def local_stack(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalConfig]:
    """The embedded local stack on free ports, in a child process."""
    config = local_config(data_dir=tmp_path_factory.mktemp("segpipe-stack"))
    with local_stack_process(config=config):
        yield config


@pytest.fixture(scope="session")
def seeded_review_target(local_stack: LocalConfig) -> ReviewTarget:
    """A version seeded through the real ingestion path (12 images, 360 objects, 2 classes, scores
    spread over the whole range)."""
    seeded = seed_completed_version(
        config=local_stack, spec=SeedSpec(project="review", images=12, objects=360, test_fraction=0.25)
    )
    return ReviewTarget(api_url=local_stack.api_url, project=seeded.project, version=seeded.version)


@pytest.fixture(scope="session")
def trained_review_target(local_stack: LocalConfig, tmp_path_factory: pytest.TempPathFactory) -> ReviewTarget:
    """A version really trained by the local stack's runner on the demo's synthetic fluorescence data."""
    return train_version(local_stack, tmp_path_factory.mktemp("demo-data"))


@pytest.fixture(scope="session", params=["seeded", "trained"])
def review_target(request: pytest.FixtureRequest) -> ReviewTarget:
    """Every review test runs twice: on the seeded version and on the trained one. Each is made once
    per session: a parametrised session fixture is set up again whenever the order of the tests
    switches between its values (as xdist's order does), which trained the version twice."""
    target: ReviewTarget = request.getfixturevalue(f"{request.param}_review_target")
    return target


def train_version(
    config: LocalConfig,
    scratch: Path,
    *,
    project: str = "trained",
    model_type: str = "instance",
    epochs: int = 4,
) -> ReviewTarget:
    """Upload a small demo dataset, train on it through the HTTP API, wait for the version."""
    document = make_dataset(scratch, slides=4, tiles_per_slide=4, seed=3)
    held_out = [image["file_name"] for image in document["images"] if image["group"] == "slide01"]
    upload_dataset(client("s3", config), bucket=config.bucket, project=project, name="nuclei", folder=scratch)
    target = ReviewTarget(api_url=config.api_url, project=project, version=0)
    body = {
        "label": f"really trained ({model_type})",
        "dataset": "nuclei",
        "model_type": model_type,
        "classes": ["nucleus", "mitotic"],
        "test_set": {"strategy": "images", "images": held_out},
        "training": {"epochs": epochs, "tile_size": 128},
    }
    accepted = target.api(f"/projects/{project}/trainings", method="POST", body=body)
    version = wait_for_status(
        config=config,
        project=project,
        version=accepted["version"],
        statuses={"completed", "failed"},
        timeout_s=600,
    )
    assert version["status"] == "completed", version.get("failure_reason")
    return ReviewTarget(api_url=config.api_url, project=project, version=accepted["version"])


@pytest.fixture(scope="session")
def browser(chromium_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium_path), args=LAUNCH_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (own storage); the test fails on any uncaught script error or anything the
    Content-Security-Policy refused (inline styles or scripts, outside resources)."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on(
        "console",
        lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None,
    )
    yield opened
    context.close()
    assert not errors, f"errors in the page: {errors}"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
