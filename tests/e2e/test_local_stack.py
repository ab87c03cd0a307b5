"""The whole pipeline on the embedded local stack: real handlers, real trainer, standard clients."""

from __future__ import annotations

import io
import json
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from segpipe_local.aws import client
from segpipe_local.client import SegpipeClient
from segpipe_local.config import LocalConfig
from tests.e2e.conftest import PROJECT, RunningStack, request, tiny_dataset, upload
from tests.helpers.seed import local_config, local_stack_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("local-stack")]


def _corrupt_png(width: int, height: int) -> bytes:
    """A PNG whose header is sound (so validation accepts it) but whose pixel data is garbage."""
    buffer = io.BytesIO()
    Image.new("L", (width, height), 40).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 4
    data[start : start + 12] = b"\x00garbage!\xff\x00\x17"
    return bytes(data)


def _wait_for(
    api: SegpipeClient, version: int, statuses: set[str], timeout: float = 240
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = api.version(PROJECT, version)
        if current.status.value in statuses:
            return current.model_dump(mode="json")
        time.sleep(0.5)
    raise AssertionError(f"version {version} never reached {statuses}; last {current.status.value}")


@pytest.fixture(scope="module")
def trained(stack: LocalConfig, api: SegpipeClient) -> int:
    upload(stack, tiny_dataset(), dataset="cells")
    accepted = api.submit(PROJECT, request("cells"), idempotency_key="e2e-first")
    assert accepted.status.value == "queued"
    _wait_for(api, accepted.version, {"completed", "failed", "stopped"})
    return accepted.version


def test_http_submit_trains_and_the_results_can_be_reviewed(
    stack: LocalConfig, api: SegpipeClient, trained: int
) -> None:
    version = api.version(PROJECT, trained)
    assert version.status.value == "completed", version.failure_reason
    assert [change.status.value for change in version.status_history] == ["queued", "training", "completed"]
    assert version.model_artifact and version.model_artifact.endswith("/output/model.tar.gz")

    metrics = api.metrics(PROJECT, trained)
    assert metrics.train is not None and metrics.test is not None
    assert metrics.threshold == version.analysis_threshold == version.suggested_threshold
    details = version.details
    assert details.test_images > 0 and details.train_images + details.test_images == 12
    assert (metrics.test.images, metrics.train.images) == (details.test_images, details.train_images)

    page = api.request("GET", f"/projects/{PROJECT}/models/{trained}/predictions?split=test")
    assert page["total"] == details.test_images
    first = page["images"][0]
    with urllib.request.urlopen(first["preview_url"], timeout=10) as preview:  # the presigned URL works
        assert preview.read(8) == b"\x89PNG\r\n\x1a\n"
    objects = api.request("GET", first["predictions_url"])
    assert objects["file_name"] == first["file_name"] and objects["width"] == 64

    updated = api.request("PUT", f"/projects/{PROJECT}/models/{trained}/threshold", {"threshold": 0.7})
    assert updated["analysis_threshold"] == 0.7
    active = api.request("POST", f"/projects/{PROJECT}/models/{trained}/activate")
    assert active["active"] is True
    table = api.request("GET", f"/projects/{PROJECT}/models?active=true")
    assert [row["version"] for row in table["models"]] == [trained]


def test_a_version_continues_from_a_previous_one(
    stack: LocalConfig, api: SegpipeClient, trained: int
) -> None:
    accepted = api.submit(PROJECT, request("cells", label="continued", base=f"v{trained}"))

    final = _wait_for(api, accepted.version, {"completed", "failed", "stopped"})

    assert final["status"] == "completed", final["failure_reason"]
    log = (stack.data_dir / "jobs" / accepted.job_name / "train.log").read_text()
    assert "starting from previous model (tiny, classes ['nucleus', 'mitosis'])" in log, log[-2000:]


def test_a_semantic_model_trains_and_reports_overlap_metrics(
    stack: LocalConfig, api: SegpipeClient, trained: int
) -> None:
    accepted = api.submit(PROJECT, request("cells", label="semantic", model_type="semantic"))

    final = _wait_for(api, accepted.version, {"completed", "failed", "stopped"})

    assert final["status"] == "completed", final["failure_reason"]
    metrics = api.metrics(PROJECT, accepted.version)
    assert metrics.model_type == "semantic" and metrics.test is not None
    overall = metrics.test.at.overall
    assert overall.iou is not None and overall.dice is not None and overall.pixel_accuracy is not None
    assert overall.f1 is None  # instance matching does not apply
    assert final["headline"]["mean_iou"] == pytest.approx(
        api.metrics(PROJECT, accepted.version, threshold=final["suggested_threshold"]).test.at.overall.iou  # type: ignore[union-attr]
    )


def test_an_uploaded_request_file_is_reported_and_trained(
    stack: LocalConfig, api: SegpipeClient, trained: int
) -> None:
    s3 = client("s3", stack)
    s3.put_object(
        Bucket=stack.bucket,
        Key=f"projects/{PROJECT}/requests/from-s3.json",
        Body=json.dumps(request("cells", label="s3")),
    )

    deadline = time.monotonic() + 60
    report = None
    while report is None and time.monotonic() < deadline:
        try:
            report = json.loads(
                s3.get_object(Bucket=stack.bucket, Key=f"projects/{PROJECT}/reports/from-s3.json")[
                    "Body"
                ].read()
            )
        except s3.exceptions.NoSuchKey:
            time.sleep(0.3)
    assert report is not None and report["ok"] is True
    final = _wait_for(api, report["version"], {"completed", "failed", "stopped"})
    assert final["status"] == "completed", final["failure_reason"]
    assert final["label"] == "s3"


def test_a_job_that_fails_on_a_corrupt_image_reports_why(
    stack: LocalConfig, api: SegpipeClient, trained: int
) -> None:
    builder = tiny_dataset(seed=12)
    broken = builder.images[4].file_name
    upload(stack, builder, dataset="corrupt", replace={broken: _corrupt_png(64, 64)})

    accepted = api.submit(PROJECT, request("corrupt", label="corrupt"))
    final = _wait_for(api, accepted.version, {"completed", "failed", "stopped"})

    assert final["status"] == "failed"
    reason = str(final["failure_reason"])
    assert broken in reason, reason
    assert reason.startswith("AlgorithmError: ")


def test_a_stopped_job_ends_stopped(stack: LocalConfig, api: SegpipeClient, trained: int) -> None:
    accepted = api.submit(
        PROJECT, request("cells", label="to stop", training={"epochs": 200, "tile_size": 64})
    )
    _wait_for(api, accepted.version, {"training"})

    stopped = api.request("POST", f"/projects/{PROJECT}/models/{accepted.version}/stop")
    final = _wait_for(api, accepted.version, {"completed", "failed", "stopped"})

    assert stopped["stop_requested"] is True
    assert final["status"] == "stopped"
    again = api.request("GET", f"/projects/{PROJECT}/models/{accepted.version}")
    assert again["status"] == "stopped"


def test_a_restart_keeps_everything(
    running: RunningStack, api: SegpipeClient, trained: int, state_dir: Path
) -> None:
    before = api.request("GET", f"/projects/{PROJECT}/models")
    metrics_before = api.metrics(PROJECT, trained)

    running.stop()  # then a new stack on the same data folder, on new ports
    restarted = local_config(data_dir=state_dir)
    with local_stack_process(config=restarted) as config:
        again = SegpipeClient(config.api_url, timeout=60)
        after = again.request("GET", f"/projects/{PROJECT}/models")
        assert [
            (m["version"], m["status"], m["analysis_threshold"], m["active"]) for m in after["models"]
        ] == [(m["version"], m["status"], m["analysis_threshold"], m["active"]) for m in before["models"]]
        assert again.metrics(PROJECT, trained) == metrics_before
        page = again.request("GET", f"/projects/{PROJECT}/models/{trained}/predictions?split=test")
        assert page["total"] == metrics_before.test.images  # type: ignore[union-attr]
        assert (
            again.request("GET", page["images"][0]["predictions_url"])["file_name"]
            == page["images"][0]["file_name"]
        )
