"""The whole pipeline on the embedded local stack: real handlers, real trainer, standard clients."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image

from segpipe import cli
from segpipe.models import keys
from segpipe.models.analysis import OUTPUT_NAMES
from segpipe.models.trainer_io import prediction_stem
from segpipe_local.aws import client
from segpipe_local.client import SegpipeClient
from segpipe_local.config import LocalConfig
from tests.e2e.conftest import PROJECT, RunningStack, request, tiny_dataset, upload
from tests.helpers.datasets import DatasetBuilder
from tests.helpers.stack_process import local_config, local_stack_process

SEGPIPE = str(Path(sys.executable).with_name("segpipe"))  # the console script, as a user runs it

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


#: Where an uploaded request file goes and where its report appears, by what it requests.
_UPLOAD_KEYS = {
    "training": (keys.request_key, keys.report_key),
    "analysis": (keys.analysis_request_key, keys.analysis_report_key),
}


def _report_of_upload(stack: LocalConfig, kind: str, body: Any) -> Any:
    """Upload `body` as request file `from-s3` of `kind`, as a user does; the report written for it
    (None after a minute)."""
    request_key, report_key = (key(PROJECT, "from-s3") for key in _UPLOAD_KEYS[kind])
    s3 = client("s3", stack)
    s3.put_object(Bucket=stack.bucket, Key=request_key, Body=json.dumps(body))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            return json.loads(s3.get_object(Bucket=stack.bucket, Key=report_key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            time.sleep(0.3)
    return None


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
    report = _report_of_upload(stack, "training", request("cells", label="s3"))

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


# --- analyses: the trained version, active, at locked thresholds, over new images ----------------

#: Per-class thresholds locked before the analyses: low, so that a two-epoch model keeps objects.
LOCKED = {"nucleus": 0.3, "mitosis": 0.25}
FRESH = "fresh/plate-1"


def _fresh_images(seed: int, count: int = 3, **changes: Any) -> dict[str, bytes]:
    """New images (a seed the training never used), file name -> bytes, without annotations."""
    builder = DatasetBuilder(classes=["nucleus", "mitosis"], width=64, height=64, seed=seed)
    builder.add_images(count, objects={"nucleus": 5, "mitosis": 1}, radius=(4.0, 7.0), **changes)
    return {name: data for name, data in builder.files().items() if name != "annotations.json"}


def _put_images(stack: LocalConfig, folder: str, files: dict[str, bytes]) -> None:
    s3 = client("s3", stack)
    for name, data in files.items():
        s3.put_object(Bucket=stack.bucket, Key=keys.images_prefix(PROJECT, folder) + name, Body=data)


def _wait_analysis(
    api: SegpipeClient, analysis: int, statuses: set[str], timeout: float = 240
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = api.request("GET", f"/projects/{PROJECT}/analyses/{analysis}")
        if current["status"] in statuses:
            return dict(current)
        time.sleep(0.5)
    raise AssertionError(f"analysis {analysis} never reached {statuses}; last {current['status']}")


def _object(stack: LocalConfig, key: str) -> bytes:
    data: bytes = client("s3", stack).get_object(Bucket=stack.bucket, Key=key)["Body"].read()
    return data


def _outputs(stack: LocalConfig, analysis: int) -> dict[str, bytes]:
    return {name: _object(stack, keys.analysis_output_key(PROJECT, analysis, name)) for name in OUTPUT_NAMES}


def _rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


@pytest.fixture(scope="module")
def analysable(stack: LocalConfig, api: SegpipeClient, trained: int) -> int:
    """The trained version, active, with per-class thresholds locked; and a folder of new images."""
    api.request("PUT", f"/projects/{PROJECT}/models/{trained}/threshold", {"threshold": LOCKED})
    if not api.request("GET", f"/projects/{PROJECT}/models/{trained}")["active"]:
        api.request("POST", f"/projects/{PROJECT}/models/{trained}/activate")
    _put_images(stack, FRESH, _fresh_images(seed=101))
    return trained


@pytest.fixture(scope="module")
def analysed(stack: LocalConfig, api: SegpipeClient, analysable: int) -> dict[str, Any]:
    """One analysis over HTTP of the new folder, with the project's only active version."""
    body = {"name": "fresh plate", "images": FRESH, "pixel_size": 0.5}
    accepted = api.request("POST", f"/projects/{PROJECT}/analyses", body, {"Idempotency-Key": "e2e-analysis"})
    assert accepted["status"] == "queued" and accepted["report"]["ok"] is True
    return _wait_analysis(api, accepted["analysis"], {"completed", "failed", "stopped"})


def test_an_analysis_over_http_completes_at_the_locked_thresholds(
    stack: LocalConfig, api: SegpipeClient, analysable: int, analysed: dict[str, Any]
) -> None:
    assert analysed["status"] == "completed", analysed["failure_reason"]
    assert [change["status"] for change in analysed["status_history"]] == ["queued", "running", "completed"]
    assert analysed["version"] == analysable and analysed["thresholds"] == LOCKED
    assert analysed["images"] == 3 and analysed["summary"]["images"] == 3
    coco = json.loads(_outputs(stack, analysed["analysis"])["coco.json"])
    names = {category["id"]: category["name"] for category in coco["categories"]}
    assert coco["annotations"], "the locked thresholds keep no object: the flow is not exercised"
    for annotation in coco["annotations"]:
        assert annotation["score"] >= LOCKED[names[annotation["category_id"]]]
    assert analysed["objects"] == {
        name: sum(1 for a in coco["annotations"] if names[a["category_id"]] == name) for name in LOCKED
    }
    with urllib.request.urlopen(analysed["outputs"]["objects.csv"], timeout=10) as answer:  # presigned
        assert answer.read().decode().startswith("image,stem,id,label,class,score,")


def test_the_analysis_outputs_agree_with_each_other(
    stack: LocalConfig, analysed: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    number = analysed["analysis"]
    outputs = _outputs(stack, number)
    coco = json.loads(outputs["coco.json"])
    names = {category["id"]: category["name"] for category in coco["categories"]}
    images = {image["id"]: image for image in coco["images"]}

    # objects.csv: one row per kept object, its id the annotation's id in coco.json
    objects = _rows(outputs["objects.csv"])
    assert [int(row["id"]) for row in objects] == [a["id"] for a in coco["annotations"]]
    assert [row["image"] for row in objects] == [
        images[a["image_id"]]["file_name"] for a in coco["annotations"]
    ]
    assert all(row["area_um2"] for row in objects)  # pixel_size was given

    # each mask: one label per object of its image
    for image in coco["images"]:
        stem = prediction_stem(image["file_name"])
        mask = tifffile.imread(io.BytesIO(_object(stack, keys.analysis_mask_key(PROJECT, number, stem))))
        kept = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        assert mask.shape == (image["height"], image["width"])
        assert len(set(np.unique(mask).tolist()) - {0}) == len(kept), image["file_name"]

    # images.csv: the counts per class, computed here from coco.json
    rows = {row["image"]: row for row in _rows(outputs["images.csv"])}
    assert sorted(rows) == sorted(image["file_name"] for image in coco["images"])
    for image in coco["images"]:
        for name in LOCKED:
            counted = sum(
                1
                for a in coco["annotations"]
                if a["image_id"] == image["id"] and names[a["category_id"]] == name
            )
            assert int(rows[image["file_name"]][f"objects[{name}]"]) == counted

    # coco.json is a segpipe dataset: `segpipe validate` reads it, with its images beside it
    dataset = tmp_path / "analysed"
    for image in coco["images"]:
        target = dataset / image["file_name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_object(stack, keys.images_prefix(PROJECT, FRESH) + image["file_name"]))
    (dataset / "annotations.json").write_bytes(outputs["coco.json"])
    request_file = tmp_path / "request.json"
    request_file.write_text(
        json.dumps({"label": "again", "dataset": "x", "model_type": "instance", "classes": list(LOCKED)})
    )
    code = cli.main(
        ["validate", "--dataset", str(dataset), "--request", str(request_file), "--tile-size", "64"]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and [error["code"] for error in report["errors"]] == ["no_completed_images"]


def test_two_instances_give_the_same_merged_outputs_as_one(
    stack: LocalConfig, api: SegpipeClient, analysed: dict[str, Any]
) -> None:
    body = {"name": "fresh, two hosts", "images": FRESH, "pixel_size": 0.5, "compute": {"instance_count": 2}}
    accepted = api.request("POST", f"/projects/{PROJECT}/analyses", body)

    final = _wait_analysis(api, accepted["analysis"], {"completed", "failed", "stopped"})

    assert final["status"] == "completed", final["failure_reason"]
    assert final["summary"]["hosts"] == ["algo-1", "algo-2"]
    one, two = _outputs(stack, analysed["analysis"]), _outputs(stack, final["analysis"])
    for name in ("objects.csv", "images.csv"):
        assert two[name] == one[name], name
    coco_one, coco_two = json.loads(one["coco.json"]), json.loads(two["coco.json"])
    for part in ("images", "categories", "annotations"):  # `info` names the analysis
        assert coco_two[part] == coco_one[part], part
    assert final["objects"] == analysed["objects"]


def test_an_uploaded_analysis_request_is_reported_then_run(
    stack: LocalConfig, api: SegpipeClient, analysable: int
) -> None:
    report = _report_of_upload(stack, "analysis", {"name": "uploaded request", "images": FRESH})

    assert report is not None and report["ok"] is True, report
    final = _wait_analysis(api, report["analysis"], {"completed", "failed", "stopped"})
    assert final["status"] == "completed", final["failure_reason"]
    assert final["name"] == "uploaded request" and final["thresholds"] == LOCKED


def test_an_analysis_of_a_corrupt_image_fails_and_says_which(
    stack: LocalConfig, api: SegpipeClient, analysable: int
) -> None:
    files = _fresh_images(seed=102)
    broken = sorted(files)[1]
    _put_images(stack, "fresh/corrupt", {**files, broken: _corrupt_png(64, 64)})

    accepted = api.request(
        "POST", f"/projects/{PROJECT}/analyses", {"name": "corrupt", "images": "fresh/corrupt"}
    )
    final = _wait_analysis(api, accepted["analysis"], {"completed", "failed", "stopped"})

    assert final["status"] == "failed"
    assert broken in str(final["failure_reason"]), final["failure_reason"]


def test_a_stopped_analysis_ends_stopped(stack: LocalConfig, api: SegpipeClient, analysable: int) -> None:
    _put_images(stack, "fresh/many", _fresh_images(seed=103, count=12))
    accepted = api.request(
        "POST", f"/projects/{PROJECT}/analyses", {"name": "to stop", "images": "fresh/many"}
    )

    api.request("POST", f"/projects/{PROJECT}/analyses/{accepted['analysis']}/stop")
    final = _wait_analysis(api, accepted["analysis"], {"completed", "failed", "stopped"})

    assert final["status"] == "stopped", final["failure_reason"]
    assert api.request("GET", f"/projects/{PROJECT}/analyses/{accepted['analysis']}")["status"] == "stopped"


def test_segpipe_analyze_uploads_runs_and_prints_the_counts(
    stack: LocalConfig, api: SegpipeClient, analysable: int, tmp_path: Path
) -> None:
    # Given a folder of images on disk, and the module's stack as the "deployed" one
    folder = tmp_path / "cli-plate"
    for name, data in _fresh_images(seed=104, count=2).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    environment = {**os.environ, **stack.client_environment()}
    command = [
        SEGPIPE,
        "analyze",
        "--images",
        str(folder),
        "--project",
        PROJECT,
        "--download",
        str(tmp_path / "out"),
    ]
    command += ["--api-url", stack.api_url, "--bucket", stack.bucket, "--region", stack.region]

    # When one command analyses it
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)

    # Then it uploaded, waited, printed the counts per class and where the CSVs are
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"uploaded 2 images to s3://{stack.bucket}/projects/{PROJECT}/images/cli-plate/" in out
    number = int(out.split("analysis ", 1)[1].split(" ", 1)[0])
    view = api.request("GET", f"/projects/{PROJECT}/analyses/{number}")
    assert view["status"] == "completed" and view["images"] == 2
    for name, count in view["objects"].items():
        assert re.search(rf"^  {re.escape(name)}\s+{count}\s", out, re.MULTILINE), out
    assert f"Results in s3://{stack.bucket}/projects/{PROJECT}/analyses/{number}/" in out
    assert f"-> {tmp_path / 'out' / 'objects.csv'}" in out
    assert (tmp_path / "out" / "objects.csv").read_bytes() == _object(
        stack, keys.analysis_output_key(PROJECT, number, "objects.csv")
    )


def test_segpipe_analyze_fails_with_the_report_when_refused(stack: LocalConfig, tmp_path: Path) -> None:
    folder = tmp_path / "plate"
    for name, data in _fresh_images(seed=105, count=1).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    environment = {**os.environ, **stack.client_environment()}
    command = [SEGPIPE, "analyze", "--images", str(folder), "--project", PROJECT, "--version", "999"]
    command += ["--api-url", stack.api_url, "--bucket", stack.bucket]

    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)

    assert result.returncode == 1
    assert "unknown_version" in result.stderr, result.stderr[-2000:]


def test_a_restart_keeps_everything(
    running: RunningStack,
    stack: LocalConfig,
    api: SegpipeClient,
    trained: int,
    analysable: int,
    state_dir: Path,
) -> None:
    before = api.request("GET", f"/projects/{PROJECT}/models")
    metrics_before = api.metrics(PROJECT, trained)
    analyses_before = api.request("GET", f"/projects/{PROJECT}/analyses")
    # and an analysis still running when the stack stops: it runs again after the restart
    _put_images(stack, "fresh/across-restart", _fresh_images(seed=106, count=12))
    body = {"name": "across a restart", "images": "fresh/across-restart"}
    accepted = api.request("POST", f"/projects/{PROJECT}/analyses", body)
    in_flight = accepted["analysis"]
    _wait_analysis(api, in_flight, {"running", "completed", "failed", "stopped"})

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
        resumed = _wait_analysis(again, in_flight, {"completed", "failed", "stopped"})
        assert resumed["status"] == "completed", resumed["failure_reason"]
        assert resumed["summary"]["images"] == 12
        job = json.loads((state_dir / "processing-jobs" / accepted["job_name"] / "job.json").read_text())
        assert job["resumed"] == 1  # it was interrupted (the container needs seconds to start) and ran again
        analyses_after = again.request("GET", f"/projects/{PROJECT}/analyses")
        assert [
            (row["analysis"], row["status"], row["objects"], row["thresholds"])
            for row in analyses_after["analyses"]
            if row["analysis"] != in_flight
        ] == [
            (row["analysis"], row["status"], row["objects"], row["thresholds"])
            for row in analyses_before["analyses"]
        ]
        for row in analyses_after["analyses"]:
            if row["status"] == "completed":  # its merged outputs are still there
                view = again.request("GET", f"/projects/{PROJECT}/analyses/{row['analysis']}")
                with urllib.request.urlopen(view["outputs"]["coco.json"], timeout=10) as answer:
                    assert len(json.loads(answer.read())["images"]) == view["images"]
