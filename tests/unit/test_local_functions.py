"""The local stack runs the real handlers in-process; what they print goes to a log, as on Lambda."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from segpipe_local.functions import LocalFunction, function_output_to


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
