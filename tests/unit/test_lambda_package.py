"""What a Lambda imports stays small: no torch, numpy, moto or sagemaker SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers.handlers import ENVIRONMENT, HANDLERS, HEAVY

ROOT = Path(__file__).resolve().parents[2]


def printed_names(code: str) -> set[str]:
    """The JSON list of names `code` prints, run in a fresh interpreter with a handler's environment."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **ENVIRONMENT},
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(result.stdout))


@pytest.mark.parametrize("module", HANDLERS)
def test_handler_imports_nothing_heavy(module: str) -> None:
    code = f"import json, sys, {module}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    loaded = printed_names(code)
    assert not loaded & HEAVY, loaded & HEAVY


def test_the_api_handler_loads_the_validation_package_with_the_first_submission_only() -> None:
    """Most API requests read; the submission use cases and validation load when first needed."""
    code = (
        "import json, sys, segpipe.handlers.handle_api_request as api; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('segpipe.logic'))))"
    )
    loaded = printed_names(code)
    assert {"segpipe.logic.models_api", "segpipe.logic.analyses_api"} <= loaded
    assert not {m for m in loaded if m.startswith("segpipe.logic.validate")}, loaded
    assert not loaded & {
        "segpipe.logic.submit",
        "segpipe.logic.analysis_submit",
        "segpipe.logic.analysis_checks",
    }


def test_lambda_requirements_match_the_package_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [
        line.strip()
        for line in (ROOT / "functions" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    declared = {dependency.split(">")[0].split("[")[0] for dependency in project["dependencies"]}
    shipped = {requirement.split(">")[0].split("[")[0] for requirement in requirements}
    assert declared == shipped == {"aws-lambda-powertools", "msgspec", "orjson", "pydantic"}
