"""Every contract defers building its validator to its first use (a cold start pays only for the
contracts its event touches), and builds to the same behaviour and schema when used."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

MODELS = Path(__file__).resolve().parents[2] / "functions" / "segpipe" / "models"


def test_no_contract_derives_from_basemodel_directly() -> None:
    direct = []
    for path in sorted(MODELS.glob("*.py")):
        if path.name == "contract.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Name) and base.id == "BaseModel" for base in node.bases
            ):
                direct.append(f"{path.name}:{node.name}")
    assert direct == []


def test_a_fresh_import_builds_no_contract_until_one_is_used() -> None:
    code = (
        "import json, pydantic, segpipe.models.version as v, segpipe.models.api as a;"
        "from segpipe.models.contract import Contract;"
        "models = [m for mod in (v, a) for m in vars(mod).values()"
        " if isinstance(m, type) and issubclass(m, Contract) and m is not Contract];"
        "before = sorted(m.__name__ for m in models if m.__pydantic_complete__);"
        "v.ModelVersion.model_json_schema();"
        "print(json.dumps({'models': len(models), 'before': before,"
        " 'after': v.ModelVersion.__pydantic_complete__}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    found = json.loads(result.stdout)
    assert found["models"] > 20
    assert found["before"] == []
    assert found["after"] is True


def test_a_deferred_contract_validates_and_refuses_as_a_built_one() -> None:
    from segpipe.models.api import ThresholdUpdate
    from segpipe.models.contract import Contract

    assert issubclass(ThresholdUpdate, Contract) and issubclass(ThresholdUpdate, BaseModel)
    assert ThresholdUpdate.model_validate({"threshold": 0.4}).threshold == 0.4
    with pytest.raises(ValidationError, match="threshold"):
        ThresholdUpdate.model_validate({"threshold": "high"})
