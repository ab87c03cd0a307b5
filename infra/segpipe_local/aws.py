"""The moto server that holds S3, DynamoDB, EventBridge and SQS for the local stack, and the
resources created in it from template.yaml's own definitions."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.config import Config

from segpipe_local.config import LocalConfig
from segpipe_local.template import bucket_properties, event_routes, load_template, table_definition

logger = logging.getLogger(__name__)


class MotoServer:
    """moto's server as a child process (`segpipe_local.moto_process`, behind the loopback guard):
    its own interpreter, so it never competes with the handlers for one GIL."""

    def __init__(self, *, host: str, port: int, log_path: Path) -> None:
        self._host = host
        self._port = port
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self._log_path.open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "segpipe_local.moto_process", "-H", self._host, "-p", str(self._port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited; see {self._log_path}")
            try:
                with urllib.request.urlopen(f"http://{self._host}:{self._port}/moto-api/", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"moto server did not start on port {self._port}; see {self._log_path}")

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        if self._log:
            self._log.close()


def client(service: str, config: LocalConfig) -> Any:
    endpoint = config.sagemaker_endpoint if service == "sagemaker" else config.aws_endpoint
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        region_name=config.region,
        aws_access_key_id="segpipe-local",
        aws_secret_access_key="segpipe-local",  # noqa: S106 - moto accepts any credentials
        config=Config(retries={"mode": "standard", "max_attempts": 3}, **_signing(service)),
    )


def _signing(service: str) -> dict[str, Any]:
    """S3 as the handlers sign it (`segpipe.handlers.runtime.client_config`): SigV4, path style on
    the local endpoint, so presigned URLs made here are what the API hands out."""
    if service != "s3":
        return {}
    return {"signature_version": "s3v4", "s3": {"addressing_style": "path"}}


@dataclass(frozen=True)
class EventQueue:
    function: str
    rule: str
    queue_url: str


def create_storage(config: LocalConfig) -> None:
    """The bucket and the table, as template.yaml defines them (idempotent)."""
    template = load_template()
    s3, dynamodb = client("s3", config), client("dynamodb", config)
    existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
    if config.bucket not in existing:
        s3.create_bucket(Bucket=config.bucket)
    properties = bucket_properties(template)
    if properties.get("VersioningConfiguration", {}).get("Status") == "Enabled":
        s3.put_bucket_versioning(Bucket=config.bucket, VersioningConfiguration={"Status": "Enabled"})
    if "PublicAccessBlockConfiguration" in properties:
        s3.put_public_access_block(
            Bucket=config.bucket, PublicAccessBlockConfiguration=properties["PublicAccessBlockConfiguration"]
        )
    if config.table not in dynamodb.list_tables().get("TableNames", []):
        dynamodb.create_table(**table_definition(template, table_name=config.table))


def enable_events(config: LocalConfig) -> list[EventQueue]:
    """The bucket's EventBridge notifications and the template's rules, each rule delivering to an
    SQS queue that the dispatcher drains (idempotent)."""
    template = load_template()
    properties = bucket_properties(template)
    if (
        properties.get("NotificationConfiguration", {})
        .get("EventBridgeConfiguration", {})
        .get("EventBridgeEnabled")
    ):
        client("s3", config).put_bucket_notification_configuration(
            Bucket=config.bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
    events, sqs = client("events", config), client("sqs", config)
    refs = {"DataBucket": config.bucket, "AWS::StackName": config.stack}
    queues = []
    for route in event_routes(template, refs):
        name = f"{config.stack}-{route.rule}"
        queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_rule(Name=name, EventPattern=json.dumps(route.pattern), State="ENABLED")
        events.put_targets(Rule=name, Targets=[{"Id": "local-dispatcher", "Arn": arn}])
        queues.append(EventQueue(function=route.function, rule=route.rule, queue_url=queue_url))
    return queues
