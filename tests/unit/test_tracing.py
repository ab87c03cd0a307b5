"""Tracing on AWS: the handlers import no X-Ray SDK, and their first event builds Powertools' Tracer,
which then traces the handler and each AWS call as it did when it was built at import.

Each check runs in a fresh interpreter with the environment of a traced Lambda function (no
`POWERTOOLS_TRACE_DISABLED`, a trace header), so the SDK's global patching stays out of this one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers.handlers import ENVIRONMENT, HANDLERS

#: A traced Lambda function's environment (what `Tracing: Active` gives an invocation).
TRACED = {
    **{key: value for key, value in ENVIRONMENT.items() if key != "POWERTOOLS_TRACE_DISABLED"},
    "LAMBDA_TASK_ROOT": "/var/task",
    "AWS_LAMBDA_FUNCTION_NAME": "segpipe-test",
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}

CHECK = textwrap.dedent(
    """
    import json, sys
    import {module}

    imported_at_import = sorted(m for m in ("aws_xray_sdk", "botocore.client") if m in sys.modules)

    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter

    sent = []

    class Capture(UDPEmitter):
        def send_entity(self, entity):
            sent.append(json.loads(entity.serialize()))

    xray_recorder.configure(emitter=Capture())

    from segpipe.handlers import runtime

    def lambda_handler(event, context):
        import boto3
        from botocore.stub import Stubber

        s3 = boto3.client("s3", region_name="us-east-1")
        with Stubber(s3) as stub:
            stub.add_response("list_buckets", {{"Buckets": []}})
            s3.list_buckets()
        return {{"ok": event["n"]}}

    traced = runtime.tracer.capture_lambda_handler(lambda_handler)
    answers = [traced({{"n": 1}}, None), traced({{"n": 2}}, None)]

    from aws_xray_sdk import global_sdk_config
    from aws_xray_sdk.core import patcher

    print(json.dumps({{
        "imported_at_import": imported_at_import,
        "answers": answers,
        "patched": sorted(patcher._PATCHED_MODULES),
        "enabled": global_sdk_config.sdk_enabled(),
        "sent": sent,
    }}))
    """
)


def _traced_run(module: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(module=module)],
        env={key: value for key, value in os.environ.items() if key != "POWERTOOLS_TRACE_DISABLED"} | TRACED,
        capture_output=True,
        text=True,
        check=True,
    )
    answer: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return answer


@pytest.mark.parametrize("module", HANDLERS)
def test_a_handler_import_loads_no_xray_sdk_and_its_first_event_traces_as_before(module: str) -> None:
    run = _traced_run(module)

    assert run["imported_at_import"] == []
    assert run["answers"] == [{"ok": 1}, {"ok": 2}]
    assert run["enabled"] is True
    assert run["patched"] == ["botocore"]
    sent = run["sent"]
    assert isinstance(sent, list)
    handlers = [entity for entity in sent if entity["name"] == "## lambda_handler"]
    assert [entity["annotations"] for entity in handlers] == [
        {"ColdStart": True, "Service": "segpipe"},
        {"ColdStart": False, "Service": "segpipe"},
    ]
    assert all(entity["metadata"]["segpipe"]["lambda_handler response"]["ok"] for entity in handlers)
    calls = [entity for entity in sent if entity.get("namespace") == "aws"]
    assert [(entity["name"], entity["aws"]["operation"]) for entity in calls] == [
        ("s3", "ListBuckets"),
        ("s3", "ListBuckets"),
    ]
    assert {entity["parent_id"] for entity in calls} == {entity["id"] for entity in handlers}
