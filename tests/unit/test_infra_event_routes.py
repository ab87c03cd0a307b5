"""The local dispatcher delivers what template.yaml's EventBridge rules match, to the functions
that own them: analysis-request uploads to the S3-trigger handler (as training requests), and
processing-job state changes (of this stack) to the job-state handler.

The events are the ones the local stack sends (`segpipe_local.events`); the patterns are the
template's own, matched here as EventBridge matches the subset the template uses (exact values,
`wildcard`, nested fields)."""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest

from segpipe_local.events import (
    job_state_change_event,
    processing_job_state_change_event,
    s3_object_created_event,
)
from segpipe_local.template import event_routes, load_template

STACK = "segpipe-local"
BUCKET = "segpipe-local-data"


def _matches(pattern: Any, value: Any) -> bool:
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            key in value and _matches(sub, value[key]) for key, sub in pattern.items()
        )
    return any(
        fnmatch.fnmatchcase(str(value), item["wildcard"]) if isinstance(item, dict) else item == value
        for item in pattern
    )


def _handlers(event: dict[str, Any]) -> list[str]:
    routes = event_routes(load_template(), {"DataBucket": BUCKET, "AWS::StackName": STACK})
    return sorted(route.handler for route in routes if _matches(route.pattern, event))


def _processing(tags: dict[str, str]) -> dict[str, Any]:
    return processing_job_state_change_event(
        {"ProcessingJobName": "segpipe-lab-a1-0123abcd", "ProcessingJobStatus": "Completed", "Tags": tags}
    )


def _upload(key: str) -> dict[str, Any]:
    return s3_object_created_event(bucket=BUCKET, key=key, etag="abc", size=10)


@pytest.mark.parametrize(
    ("event", "handlers"),
    [
        (
            _upload("projects/lab/analysis-requests/plate-7.json"),
            ["segpipe.handlers.handle_training_request.lambda_handler"],
        ),
        (
            _upload("projects/lab/requests/v.json"),
            ["segpipe.handlers.handle_training_request.lambda_handler"],
        ),
        (_upload("projects/lab/analysis-reports/plate-7.json"), []),  # its own report triggers nothing
        (_upload("projects/lab/images/plate-7/a.png"), []),
        (_upload("projects/lab/analyses/1/progress/algo-1.json"), []),
        (_processing({"segpipe:stack": STACK}), ["segpipe.handlers.handle_job_state.lambda_handler"]),
        (_processing({"segpipe:stack": "another-stack"}), []),
        (
            job_state_change_event(
                {
                    "TrainingJobName": "segpipe-lab-v1-x",
                    "TrainingJobStatus": "Completed",
                    "Tags": {"segpipe:stack": STACK},
                }
            ),
            ["segpipe.handlers.handle_job_state.lambda_handler"],
        ),
    ],
)
def test_the_template_rules_route_each_event_to_its_handler(
    event: dict[str, Any], handlers: list[str]
) -> None:
    assert _handlers(event) == handlers
