"""Integration fixtures: the real handlers against moto, with the table and bucket created from
template.yaml's own definitions."""

from __future__ import annotations

import copy
import importlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from moto import mock_aws

from segpipe_local.events import http_api_event, job_state_change_event, s3_object_created_event
from segpipe_local.lambda_context import LocalLambdaContext
from segpipe_local.template import load_template, resources, table_definition
from tests.helpers.iam import (
    Arns,
    Call,
    CallRecorder,
    Statement,
    accesses,
    actions_in_use,
    check_calls,
    function_statements,
)

BUCKET = "segpipe-data-test"
TABLE = "segpipe-registry-test"
REGION = "us-east-1"
ACCOUNT = "000000000000"
STACK = "segpipe-test"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/segpipe-sagemaker"
IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/segpipe-trainer:test"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

ENVIRONMENT = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "TABLE_NAME": TABLE,
    "DATA_BUCKET": BUCKET,
    "STACK_NAME": STACK,
    "TRAINING_IMAGE_URI": IMAGE,
    "SAGEMAKER_ROLE_ARN": ROLE,
    "DEFAULT_PRESET": "tiny",
    "DEFAULT_EPOCHS": "5",
    "DEFAULT_TILE_SIZE": "128",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "segpipe",
    "POWERTOOLS_DEV": "false",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


@dataclass
class Aws:
    s3: Any
    dynamodb: Any
    sagemaker: Any
    bucket: str = BUCKET
    table: str = TABLE
    created_jobs: list[dict[str, Any]] = field(default_factory=list)
    #: The AWS calls each function's handler made in this test (checked against template.yaml).
    recorder: CallRecorder = field(default_factory=CallRecorder)

    # --- delivering events to the real handlers ---------------------------------------------------

    def api(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        query: str = "",
    ) -> tuple[int, Any]:
        handler = _handler("segpipe.handlers.handle_api_request")
        raw = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
        event = http_api_event(method, path, query=query, headers=headers, body=raw)
        with self.recorder.invoking("ApiFunction"):
            response = handler.lambda_handler(event, LocalLambdaContext("ApiFunction"))
        text = response.get("body") or ""
        try:
            payload = json.loads(text) if text else None
        except json.JSONDecodeError:
            payload = text
        return response["statusCode"], payload

    def upload_request(self, project: str, name: str, body: bytes | str) -> dict[str, Any]:
        """Put a request file and deliver its S3 `Object Created` event; returns the handler's answer."""
        key = f"projects/{project}/requests/{name}.json"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return self.deliver_object_created(key)

    def deliver_object_created(self, key: str) -> dict[str, Any]:
        head = self.s3.head_object(Bucket=self.bucket, Key=key)
        event = s3_object_created_event(
            bucket=self.bucket, key=key, etag=head["ETag"], size=head["ContentLength"]
        )
        handler = _handler("segpipe.handlers.handle_training_request")
        with self.recorder.invoking("SubmitFunction"):
            result: dict[str, Any] = handler.lambda_handler(event, LocalLambdaContext("SubmitFunction"))
        return result

    def job_event(self, job_name: str, status: str, **detail: Any) -> dict[str, Any]:
        description = {
            "TrainingJobName": job_name,
            "TrainingJobStatus": status,
            "SecondaryStatus": detail.pop("SecondaryStatus", status),
            "Tags": {"segpipe:stack": STACK},
            **detail,
        }
        handler = _handler("segpipe.handlers.handle_job_state")
        with self.recorder.invoking("JobStateFunction"):
            result: dict[str, Any] = handler.lambda_handler(
                job_state_change_event(description), LocalLambdaContext("JobStateFunction")
            )
        return result

    # --- reading state back ----------------------------------------------------------------------

    def keys(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def get_json(self, key: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def table_items(self) -> list[dict[str, Any]]:
        return self.dynamodb.scan(TableName=self.table)["Items"]

    def jobs(self) -> list[str]:
        return [job["TrainingJobName"] for job in self.sagemaker.list_training_jobs()["TrainingJobSummaries"]]


def _handler(module: str) -> ModuleType:
    return importlib.import_module(module)


# --- IAM: every call a handler makes must be granted by template.yaml -------------------------------

ARNS = Arns(region=REGION, account=ACCOUNT)


def template_refs() -> dict[str, str]:
    """The values template.yaml's intrinsics take in this test deployment."""
    return {
        "AWS::Partition": "aws",
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::StackName": STACK,
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NoValue": "",
        "DataBucket": BUCKET,
        "DataBucket.Arn": ARNS.bucket(BUCKET),
        "RegistryTable": TABLE,
        "RegistryTable.Arn": ARNS.table(TABLE),
        "SageMakerExecutionRole.Arn": ROLE,
        "TrainingImageUri": IMAGE,
        "EventsDeadLetterQueue": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/segpipe-dlq",
        "EventsDeadLetterQueue.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:segpipe-dlq",
        "EventsDeadLetterQueue.QueueName": "segpipe-dlq",
    }


@cache
def _template() -> dict[str, Any]:
    """template.yaml parsed once per worker (parsing it took 0.2-0.35 s, twice per test)."""
    return load_template()


@cache
def _function_policies() -> dict[str, tuple[Statement, ...]]:
    template, refs = _template(), template_refs()
    return {
        name: tuple(function_statements(template, name, refs))
        for name in resources(template, "AWS::Serverless::Function")
    }


def function_policies() -> dict[str, list[Statement]]:
    """Each function's statements in template.yaml (computed once; each caller gets its own lists)."""
    return {name: list(statements) for name, statements in _function_policies().items()}


def _table_definition() -> dict[str, Any]:
    return copy.deepcopy(table_definition(_template(), table_name=TABLE))


#: One botocore data loader for every test's boto3 session: a session's loader caches the service
#: models it has read, and a new session per test re-read and re-decoded S3's, DynamoDB's and
#: SageMaker's JSON models each time (about half of each test's setup).
_LOADER = botocore.loaders.create_loader()


def _fresh_default_session() -> boto3.Session:
    """A new boto3 session (its own event hooks and clients, as mock_aws would make) that reuses the
    models already loaded."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _LOADER)
    return boto3.Session(botocore_session=core)


@dataclass
class IamRecord:
    """The calls of every test in this session (per worker), written to tests/artifacts/."""

    calls: list[Call] = field(default_factory=list)
    job_tags: dict[str, dict[str, str]] = field(default_factory=dict)

    def write(self) -> Path:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"iam-actions-{worker}.json"
        record = {
            "actions_in_use": actions_in_use(self.calls, ARNS, self.job_tags),
            "calls": len(self.calls),
            "accesses": sorted(
                {
                    f"{call.function} {access}"
                    for call in self.calls
                    for access in accesses(call, ARNS, self.job_tags)
                }
            ),
        }
        path.write_text(json.dumps(record, indent=2) + "\n")
        return path


@pytest.fixture(scope="session")
def iam_record() -> Iterator[IamRecord]:
    record = IamRecord()
    yield record
    if record.calls:
        record.write()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, iam_record: IamRecord) -> Iterator[Aws]:
    for key, value in ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    from segpipe.handlers import runtime

    with mock_aws():
        # The handlers' clients come from boto3's default session: a new one per test, as mock_aws
        # would make on first use (it unsets the default session), with the shared model loader.
        boto3.DEFAULT_SESSION = _fresh_default_session()
        s3 = boto3.client("s3", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        dynamodb.create_table(**_table_definition())
        runtime.reset()
        recorder = CallRecorder()
        recorder.register(boto3.DEFAULT_SESSION.events)
        env = Aws(
            s3=s3,
            dynamodb=dynamodb,
            sagemaker=boto3.client("sagemaker", region_name=REGION),
            recorder=recorder,
        )

        def capture(params: dict[str, Any], **_: Any) -> None:
            env.created_jobs.append(json.loads(json.dumps(params, default=str)))

        runtime._client("sagemaker").meta.events.register(
            "provide-client-params.sagemaker.CreateTrainingJob", capture
        )
        yield env
        runtime.reset()
    iam_record.calls += recorder.calls
    iam_record.job_tags.update(recorder.job_tags)
    findings = check_calls(recorder.calls, function_policies(), ARNS, recorder.job_tags)
    if findings:
        pytest.fail(
            "template.yaml does not grant what the handlers called:\n" + "\n".join(map(str, findings))
        )


def upload_dataset(aws: Aws, builder: Any, *, project: str = "lab", dataset: str = "cells") -> None:
    """Put a DatasetBuilder's annotations.json and image files under projects/{p}/datasets/{d}/."""
    for name, data in builder.files().items():
        aws.s3.put_object(Bucket=aws.bucket, Key=f"projects/{project}/datasets/{dataset}/{name}", Body=data)


def request_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "label": "first try",
        "dataset": "cells",
        "model_type": "instance",
        "classes": ["nucleus"],
        "test_set": {"strategy": "fraction", "fraction": 0.25, "seed": 0},
        "training": {"epochs": 3, "tile_size": 128},
    }
    body.update(changes)
    return body


@pytest.fixture
def with_dataset(aws: Aws) -> Aws:
    """A valid dataset `cells` in project `lab`: 16 images of 4 nuclei (64 included annotations)."""
    for name, data in _cells_files().items():
        aws.s3.put_object(Bucket=aws.bucket, Key=f"projects/lab/datasets/cells/{name}", Body=data)
    return aws


@cache
def _cells_files() -> dict[str, bytes]:
    """`with_dataset`'s files, built once per worker (the builder is deterministic for its seed)."""
    from tests.helpers.datasets import DatasetBuilder

    builder = DatasetBuilder(classes=["nucleus"], seed=5)
    builder.add_images(16, objects={"nucleus": 4})
    return builder.files()
