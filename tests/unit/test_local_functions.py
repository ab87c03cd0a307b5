"""The local stack runs the real handlers in-process; what they print goes to a log, as on Lambda."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from segpipe_local.functions import LocalFunction, function_output_to, functions_from_template


def printing_handler(event: dict[str, Any], context: Any) -> str:
    print(f"json log line for {event['id']} from {context.function_name}")
    print("a warning", file=sys.stderr)
    return "done"


def test_function_output_goes_to_the_log_and_the_rest_to_the_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "logs" / "functions.log"
    function = LocalFunction("ApiFunction", f"{__name__}.printing_handler")

    with function_output_to(log):
        answer = function.invoke({"id": "e-1"})
        print("progress shown to the person")

    assert answer == "done"
    assert log.read_text() == "json log line for e-1 from ApiFunction\na warning\n"
    console = capsys.readouterr()
    assert console.out == "progress shown to the person\n"
    assert console.err == ""


def context_handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    return {"arn": context.invoked_function_arn, "name": context.function_name}


def test_the_lambda_context_carries_the_configured_region() -> None:
    # Given the stack's functions built for a region other than the default
    functions = functions_from_template(
        {"JobStateFunction": f"{__name__}.context_handler"}, region="eu-west-1"
    )

    # When one is invoked
    answer = functions["JobStateFunction"].invoke({})

    # Then its context names that region, as Lambda's context does in the function's ARN
    assert answer == {
        "arn": "arn:aws:lambda:eu-west-1:000000000000:function:JobStateFunction",
        "name": "JobStateFunction",
    }
