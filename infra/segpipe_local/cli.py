"""`segpipe local up` and `segpipe train`: the local stack, and the whole round trip from one command."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from segpipe_local.config import LocalConfig
from segpipe_local.progress import ProgressLine, print_results


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
    parser.add_argument(
        "--api-url", help="a deployed API (requests are SigV4-signed); default: the local stack"
    )
    parser.add_argument("--bucket", help="the deployed data bucket (with --api-url)")
    parser.add_argument("--region")
    parser.add_argument("--no-wait", action="store_true", help="return once the training is submitted")
    _local_parser(parser)
    args = parser.parse_args(argv)
    if args.api_url and not args.bucket:
        parser.error("--api-url needs --bucket")
    if not (args.dataset / "annotations.json").is_file():
        parser.error(f"{args.dataset} holds no annotations.json")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    request = _request_from(args)
    if args.api_url:
        return _round_trip(args, request, api_url=args.api_url, bucket=args.bucket, sign=True, s3=None)

    from segpipe_local.aws import client
    from segpipe_local.stack import LocalStack

    config = config_from(args)
    with LocalStack(config):
        return _round_trip(
            args, request, api_url=config.api_url, bucket=config.bucket, sign=False, s3=client("s3", config)
        )


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


def _round_trip(
    args: argparse.Namespace, request: dict[str, Any], *, api_url: str, bucket: str, sign: bool, s3: Any
) -> int:
    import boto3

    from segpipe_local.client import ApiError, SegpipeClient, upload_dataset

    api = SegpipeClient(api_url, sign=sign, region=args.region)
    s3 = s3 or boto3.client("s3", region_name=args.region)
    count = upload_dataset(
        s3, bucket=bucket, project=args.project, name=request["dataset"], folder=args.dataset
    )
    print(f"uploaded {count} files to s3://{bucket}/projects/{args.project}/datasets/{request['dataset']}/")
    try:
        accepted = api.submit(args.project, request, idempotency_key=str(uuid.uuid4()))
    except ApiError as error:
        report = error.body.get("report") if isinstance(error.body, dict) else None
        print(json.dumps(report or error.body, indent=2), file=sys.stderr)
        return 1
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
        page=f"{api_url}/ui/#/projects/{args.project}/models/{final.version}",
    )
    return 0


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
