"""`make demo`: a small training, end to end, on the embedded local stack.

Starts the stack (or uses one already running on the same ports), makes a synthetic
fluorescence dataset, uploads it with boto3, previews and submits a training over HTTP,
shows the epochs as they pass, then prints the training details, the statistics on train and
test, the suggested threshold, and where to look at the predictions. Then it locks the
suggested threshold, activates the version, and analyses a few freshly made images (ones the
model never saw) with it: the objects per class, and where objects.csv is.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from segpipe_local.aws import client
from segpipe_local.client import ApiError, SegpipeClient, upload_dataset, upload_images
from segpipe_local.config import LocalConfig
from segpipe_local.demo_data import make_dataset, make_images
from segpipe_local.progress import AnalysisProgressLine, ProgressLine, print_analysis, print_results

PROJECT = "demo"
DATASET = "nuclei-demo"
#: Settings that train a useful tiny model on two CPU cores in about three minutes: 10 epochs, then
#: a refit on every training image for as many. 14 epochs took the demo to 408 s on a slow day,
#: past its five minutes (test F1 0.980); 10 epochs took 178 s on a normal one (test F1 0.973).
TRAINING = {"epochs": 10, "tile_size": 128}
IMAGES = "new-tiles"
#: New tiles to analyse: a few seconds of inference on two CPU cores.
NEW_IMAGES = 3
STEPS = 8


def _running(config: LocalConfig) -> bool:
    try:
        with urllib.request.urlopen(config.api_url + "/openapi.json", timeout=2):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _stack(config: LocalConfig) -> Iterator[bool]:
    if _running(config):
        yield False
        return
    from segpipe_local.stack import LocalStack

    with LocalStack(config):
        yield True


def _step(number: int, text: str) -> None:
    print(f"[{number}/{STEPS}] {text}", flush=True)


def run(config: LocalConfig, *, epochs: int) -> int:
    started = time.monotonic()
    print("segpipe demo: a small training, end to end, on the embedded local stack\n")
    _step(1, f"Starting the local stack (state in {config.data_dir}) ...")
    with _stack(config) as own:
        print(f"      API {config.api_url}  ({'started' if own else 'already running'})")
        with tempfile.TemporaryDirectory(prefix="segpipe-demo-") as scratch:
            folder = Path(scratch) / DATASET
            document = make_dataset(folder)
            _step(
                2,
                f"Made a demo dataset: {len(document['images'])} 16-bit TIFF tiles of 8 slides, "
                f"{len(document['annotations'])} annotations (nucleus, mitotic, debris)",
            )
            count = upload_dataset(
                client("s3", config), bucket=config.bucket, project=PROJECT, name=DATASET, folder=folder
            )
            _step(3, f"Uploaded {count} files to s3://{config.bucket}/projects/{PROJECT}/datasets/{DATASET}/")
        api = SegpipeClient(config.api_url)
        request = {
            "label": f"demo {time.strftime('%H:%M:%S')}",
            "dataset": DATASET,
            "model_type": "instance",
            "classes": ["nucleus", "mitotic"],
            "test_set": {"strategy": "fraction", "fraction": 0.25, "seed": 0},
            "training": {**TRAINING, "epochs": epochs},
            "compute": {"instance_type": "ml.g5.xlarge", "spot": True, "max_hours": 1},
        }
        report = api.preview(PROJECT, request)
        warnings = ", ".join(issue["code"] for issue in report["warnings"]) or "none"
        _step(4, f"Checked the request: {'ok' if report['ok'] else 'errors'}; warnings: {warnings}")
        try:
            accepted = api.submit(PROJECT, request, idempotency_key=str(uuid.uuid4()))
        except ApiError as error:
            print(f"the training was refused: {error}", file=sys.stderr)
            return 1
        _step(5, f"Training version {accepted.version} (job {accepted.job_name})")
        line = ProgressLine()
        final = api.wait(PROJECT, accepted.version, on_update=line.update, poll=1.0, timeout=900)
        line.close()
        if _ended_badly(f"version {final.version}", final.status.value, final.failure_reason):
            return 1
        _step(6, "Results")
        page = f"{config.api_url}/ui/#/projects/{PROJECT}/models/{final.version}"
        print_results(final, api.metrics(PROJECT, final.version), page=page)
        if analyse(config, api, final.version, final.suggested_threshold) != 0:
            return 1
    if own:
        print("(The stack has stopped; `.venv/bin/segpipe local up` brings it back with everything kept.)")
    print(f"\nDemo finished in {time.monotonic() - started:.0f} s.")
    return 0


def analyse(config: LocalConfig, api: SegpipeClient, version: int, threshold: float | None) -> int:
    """Lock the threshold, activate the version, and analyse a few new images with it."""
    started = time.monotonic()
    if threshold is not None:
        api.request("PUT", f"/projects/{PROJECT}/models/{version}/threshold", {"threshold": threshold})
    for row in api.request("GET", f"/projects/{PROJECT}/models?active=true")["models"]:
        if row["version"] != version:  # an earlier demo's version: this one is used from now on
            api.request("POST", f"/projects/{PROJECT}/models/{row['version']}/deactivate")
    api.request("POST", f"/projects/{PROJECT}/models/{version}/activate")
    locked = f"threshold {threshold:.2f} locked, " if threshold is not None else ""
    _step(7, f"Version {version}: {locked}activated for analysis")
    with tempfile.TemporaryDirectory(prefix="segpipe-demo-") as scratch:
        drawn = make_images(Path(scratch) / IMAGES, count=NEW_IMAGES)
        upload_images(
            client("s3", config),
            bucket=config.bucket,
            project=PROJECT,
            name=IMAGES,
            folder=Path(scratch) / IMAGES,
        )
    made = ", ".join(f"{count} {name}" for name, count in sorted(drawn.items()))
    try:
        accepted = api.submit_analysis(
            PROJECT,
            {"name": f"demo {time.strftime('%H:%M:%S')}", "images": IMAGES, "version": version},
            idempotency_key=str(uuid.uuid4()),
        )
    except ApiError as error:
        print(f"the analysis was refused: {error}", file=sys.stderr)
        return 1
    _step(
        8,
        f"Analysing {NEW_IMAGES} new tiles the model never saw (drawn: {made}); analysis {accepted.analysis}",
    )
    line = AnalysisProgressLine()
    final = api.wait_analysis(PROJECT, accepted.analysis, on_update=line.update, poll=1.0, timeout=600)
    line.close()
    if _ended_badly(f"analysis {final.analysis}", final.status.value, final.failure_reason):
        return 1
    page = f"{config.api_url}/ui/#/projects/{PROJECT}/analyses/{final.analysis}"
    print_analysis(final, bucket=config.bucket, page=page)
    print(f"(The analysis added {time.monotonic() - started:.0f} s to the demo.)")
    return 0


def _ended_badly(job: str, status: str, reason: str | None) -> bool:
    """True, said on stderr, when `job` (a version or an analysis) ended other than completed."""
    if status == "completed":
        return False
    print(f"{job} ended {status}: {reason}", file=sys.stderr)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=LocalConfig().data_dir)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=TRAINING["epochs"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    config = LocalConfig(
        data_dir=args.data_dir, api_port=args.port, aws_port=args.port + 1, sagemaker_port=args.port + 2
    )
    return run(config, epochs=args.epochs)


if __name__ == "__main__":
    raise SystemExit(main())
