"""`segpipe local up`, `segpipe train` and `segpipe analyze`: the local stack, and the whole round
trip of a training or an analysis from one command."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segpipe_local.config import LocalConfig
from segpipe_local.progress import AnalysisProgressLine, ProgressLine, print_analysis, print_results

if TYPE_CHECKING:
    from segpipe_local.client import ApiError, SegpipeClient


def _local_parser(parser: argparse.ArgumentParser) -> None:
    defaults = LocalConfig()
    parser.add_argument("--data-dir", type=Path, default=defaults.data_dir, help="state kept between runs")
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.api_port, help="HTTP API (default 8000)")
    parser.add_argument(
        "--aws-port", type=int, default=defaults.aws_port, help="S3/DynamoDB endpoint (default 8001)"
    )
    parser.add_argument("--sagemaker-port", type=int, default=defaults.sagemaker_port, help="default 8002")
    parser.add_argument("--verbose", action="store_true")


def config_from(args: argparse.Namespace) -> LocalConfig:
    return LocalConfig(
        data_dir=args.data_dir,
        host=args.host,
        api_port=args.port,
        aws_port=args.aws_port,
        sagemaker_port=args.sagemaker_port,
    )


def local_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="segpipe local", description="The embedded local stack.")
    commands = parser.add_subparsers(dest="command", required=True)
    _local_parser(commands.add_parser("up", help="run the stack until Ctrl-C"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s"
    )
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    config = config_from(args)

    from segpipe_local.stack import LocalStack

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    with LocalStack(config):
        environment = config.client_environment()
        print(f"segpipe local stack is up (state in {config.data_dir})")
        print(f"  API and review page : {config.api_url}/ui/")
        print(f"  OpenAPI             : {config.api_url}/openapi.json")
        print(f"  S3 / DynamoDB       : AWS_ENDPOINT_URL={environment['AWS_ENDPOINT_URL']}")
        print(f"  data bucket         : s3://{config.bucket}")
        print("Press Ctrl-C to stop; everything is kept for the next start.", flush=True)
        stopping.wait()
        print("stopping (saving state) ...", flush=True)
    return 0


def train_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="segpipe train",
        description="Upload a local dataset folder, train on it, and print the results "
        "(against the local stack, or a deployed one with --api-url and --bucket).",
    )
    parser.add_argument(
        "--dataset", type=Path, required=True, help="folder holding annotations.json and images"
    )
    parser.add_argument("--project", default="default")
    parser.add_argument("--name", help="dataset name in the project (default: the folder's name)")
    parser.add_argument("--classes", required=True, help="comma-separated class names to include")
    parser.add_argument("--model-type", choices=["instance", "semantic"], default="instance")
    parser.add_argument("--label", help="shown in the model table (default: dataset name and time)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="0 for no test set")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--tile-size", type=int)
    parser.add_argument("--preset", help="tiny, dinov2-small or sam-vit-base")
    _backend_parser(parser, "training")
    args = parser.parse_args(argv)
    if args.api_url and not args.bucket:
        parser.error("--api-url needs --bucket")
    if not (args.dataset / "annotations.json").is_file():
        parser.error(f"{args.dataset} holds no annotations.json")
    request = _request_from(args)
    return _with_backend(args, lambda backend: _train_round_trip(args, request, backend))


def _backend_parser(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--api-url", help="a deployed API (requests are SigV4-signed); default: the local stack"
    )
    parser.add_argument("--bucket", help="the deployed data bucket (with --api-url)")
    parser.add_argument("--region")
    parser.add_argument("--no-wait", action="store_true", help=f"return once the {what} is submitted")
    _local_parser(parser)


@dataclass
class Backend:
    """Where a round trip goes: the API, the data bucket and an S3 client for it."""

    api: SegpipeClient
    api_url: str
    bucket: str
    s3: Any


def _with_backend(args: argparse.Namespace, run: Callable[[Backend], int]) -> int:
    """Run `run` against a deployed stack (--api-url, --bucket), or a local one started for it."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from segpipe_local.client import SegpipeClient

    if args.api_url:
        import boto3

        api = SegpipeClient(args.api_url, sign=True, region=args.region)
        s3 = boto3.client("s3", region_name=args.region)
        return run(Backend(api=api, api_url=args.api_url, bucket=args.bucket, s3=s3))

    from segpipe_local.aws import client
    from segpipe_local.stack import LocalStack

    config = config_from(args)
    with LocalStack(config):
        api = SegpipeClient(config.api_url, region=args.region)
        return run(Backend(api=api, api_url=config.api_url, bucket=config.bucket, s3=client("s3", config)))


def _refused(error: ApiError) -> int:
    """A refused submission: its report (or the error body) on stderr, exit code 1."""
    report = error.body.get("report") if isinstance(error.body, dict) else None
    print(json.dumps(report or error.body, indent=2), file=sys.stderr)
    return 1


def _request_from(args: argparse.Namespace) -> dict[str, Any]:
    name = args.name or args.dataset.resolve().name
    training = {
        key: value for key, value in {"epochs": args.epochs, "tile_size": args.tile_size}.items() if value
    }
    test_set: dict[str, Any] = (
        {"strategy": "fraction", "fraction": args.test_fraction, "seed": 0}
        if args.test_fraction > 0
        else {"strategy": "none"}
    )
    return {
        "label": args.label or f"{name} {time.strftime('%Y-%m-%d %H:%M')}",
        "dataset": name,
        "model_type": args.model_type,
        "classes": [item.strip() for item in args.classes.split(",") if item.strip()],
        "test_set": test_set,
        "training": training,
        **({"base": args.preset} if args.preset else {}),
    }


def _train_round_trip(args: argparse.Namespace, request: dict[str, Any], backend: Backend) -> int:
    from segpipe_local.client import ApiError, upload_dataset

    api, bucket = backend.api, backend.bucket
    count = upload_dataset(
        backend.s3, bucket=bucket, project=args.project, name=request["dataset"], folder=args.dataset
    )
    print(f"uploaded {count} files to s3://{bucket}/projects/{args.project}/datasets/{request['dataset']}/")
    try:
        accepted = api.submit(args.project, request, idempotency_key=str(uuid.uuid4()))
    except ApiError as error:
        return _refused(error)
    print(f"version {accepted.version} submitted (job {accepted.job_name})")
    for warning in accepted.report.warnings:
        print(f"  warning {warning.code}: {warning.message}")
    if args.no_wait:
        return 0
    line = ProgressLine()
    final = api.wait(args.project, accepted.version, on_update=line.update, poll=1.0)
    line.close()
    if final.status.value != "completed":
        print(f"version {final.version} {final.status.value}: {final.failure_reason or ''}", file=sys.stderr)
        return 1
    print_results(
        final,
        api.metrics(args.project, final.version),
        page=f"{backend.api_url}/ui/#/projects/{args.project}/models/{final.version}",
    )
    return 0


def analyze_main(argv: list[str] | None = None) -> int:
    from segpipe.models.analysis import is_images_folder
    from segpipe_local.client import image_files

    parser = argparse.ArgumentParser(
        prog="segpipe analyze",
        description="Upload a local folder of images, analyse it with an active version at its locked "
        "thresholds, and print the objects per class and where the results are (against the local "
        "stack, or a deployed one with --api-url and --bucket).",
    )
    parser.add_argument("--images", type=Path, required=True, help="folder of PNG/JPEG/TIFF images")
    parser.add_argument("--project", default="default")
    parser.add_argument("--version", type=int, help="the version to run (default: the only active one)")
    parser.add_argument("--name", help="images folder name in the project (default: the folder's name)")
    parser.add_argument("--label", help="shown in the analyses table (default: folder name and time)")
    parser.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="[CLASS=]SCORE",
        help="override a class's locked threshold (repeatable); a bare score applies to every class",
    )
    parser.add_argument("--pixel-size", type=float, help="micrometres per pixel (sizes also in µm, µm²)")
    parser.add_argument("--instances", type=int, help="processing instances (images sharded across them)")
    parser.add_argument(
        "--download",
        type=Path,
        metavar="DIR",
        help="also save coco.json, objects.csv, images.csv, summary.json",
    )
    _backend_parser(parser, "analysis")
    args = parser.parse_args(argv)
    if args.api_url and not args.bucket:
        parser.error("--api-url needs --bucket")
    if not args.images.is_dir() or not image_files(args.images):
        parser.error(f"{args.images} holds no PNG, JPEG or TIFF images")
    args.name = args.name or args.images.resolve().name
    if not is_images_folder(args.name):
        parser.error(f"{args.name!r} cannot name an images folder: use letters, digits, '.', '_' and '-'")
    try:
        thresholds = _parse_thresholds(args.threshold)
    except ValueError as error:
        parser.error(str(error))
    return _with_backend(args, lambda backend: _analyze_round_trip(args, thresholds, backend))


def _parse_thresholds(values: list[str]) -> dict[str, float]:
    """`0.5` (key `*`: every class) or `nucleus=0.5`, each a score between 0 and 1."""
    parsed: dict[str, float] = {}
    for value in values:
        name, _, score = value.rpartition("=")
        try:
            number = float(score)
        except ValueError:
            raise ValueError(f"--threshold {value!r}: expected [CLASS=]SCORE") from None
        if not 0 <= number <= 1:
            raise ValueError(f"--threshold {value!r}: a score is between 0 and 1")
        parsed[name.strip() or "*"] = number
    return parsed


def _classes(api: SegpipeClient, project: str, version: int | None) -> list[str]:
    """The classes of the version an analysis will run (the only active one by default)."""
    if version is not None:
        return list(api.version(project, version).classes)
    table = api.request("GET", f"/projects/{project}/models?active=true")
    rows = table.get("models", [])
    return list(rows[0]["classes"]) if len(rows) == 1 else []


def _analyze_round_trip(args: argparse.Namespace, thresholds: dict[str, float], backend: Backend) -> int:
    from segpipe_local.client import ApiError, upload_images

    api, bucket, project = backend.api, backend.bucket, args.project
    count = upload_images(backend.s3, bucket=bucket, project=project, name=args.name, folder=args.images)
    print(f"uploaded {count} images to s3://{bucket}/projects/{project}/images/{args.name}/")
    if "*" in thresholds:  # one score for every class of the version
        every = thresholds.pop("*")
        thresholds = {name: every for name in _classes(api, project, args.version)} | thresholds
    request: dict[str, Any] = {
        "name": args.label or f"{args.name} {time.strftime('%Y-%m-%d %H:%M')}",
        "images": args.name,
        **({"version": args.version} if args.version is not None else {}),
        **({"thresholds": thresholds} if thresholds else {}),
        **({"pixel_size": args.pixel_size} if args.pixel_size is not None else {}),
        **({"compute": {"instance_count": args.instances}} if args.instances else {}),
    }
    try:
        accepted = api.submit_analysis(project, request, idempotency_key=str(uuid.uuid4()))
    except ApiError as error:
        return _refused(error)
    details = accepted.report.details
    print(
        f"analysis {accepted.analysis} submitted (job {accepted.job_name}): {details.images} images, "
        f"version {details.version}"
    )
    for warning in accepted.report.warnings:
        print(f"  warning {warning.code}: {warning.message}")
    if args.no_wait:
        return 0
    line = AnalysisProgressLine()
    final = api.wait_analysis(project, accepted.analysis, on_update=line.update, poll=1.0)
    line.close()
    if final.status.value != "completed":
        print(
            f"analysis {final.analysis} {final.status.value}: {final.failure_reason or ''}", file=sys.stderr
        )
        return 1
    saved = _download(final.outputs, args.download) if args.download else {}
    print_analysis(
        final,
        bucket=bucket,
        saved=saved,
        page=f"{backend.api_url}/ui/#/projects/{project}/analyses/{final.analysis}",
    )
    return 0


def _download(outputs: dict[str, str], folder: Path) -> dict[str, Path]:
    """Save the merged outputs (presigned URLs of the analysis view) into `folder`."""
    import urllib.request

    folder.mkdir(parents=True, exist_ok=True)
    saved: dict[str, Path] = {}
    for name, url in sorted(outputs.items()):
        if not url.startswith(("https://", "http://")):
            continue  # only the presigned URLs the API hands out
        target = folder / Path(name).name
        with urllib.request.urlopen(url, timeout=60) as answer:
            target.write_bytes(answer.read())
        saved[name] = target
    return saved


def ui_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="segpipe ui",
        description="Serve the review page of a deployed stack, signing requests with SigV4.",
    )
    parser.add_argument("--api-url", required=True, help="the stack's ApiUrl output")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--region")
    args = parser.parse_args(argv)
    from segpipe_local.signing_proxy import serve

    serve(args.api_url, port=args.port, region=args.region)
    return 0
