"""The Lambda package as `sam build` makes it (functions/Makefile): what it holds, and its bytecode.

The build fetches the runtime's wheels (python3.13, arm64) from the package index, so it runs
only where the index can be reached; the bytecode needs a Python 3.13 on this machine.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: A .pyc's header: 4 bytes of magic, then flags (bit 0: hash-based, bit 1: check the source).
UNCHECKED_HASH = 0b01


def runtime_python() -> str | None:
    """The Python 3.13 the Makefile compiles with here (its PYTHON_RUNTIME), or None."""
    done = subprocess.run(
        [
            "make",
            "-s",
            "--no-print-directory",
            "-C",
            str(ROOT / "functions"),
            "-f",
            "Makefile",
            "print-runtime",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    found = done.stdout.strip()
    return found or None


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ApiFunction")
    done = subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(ROOT / "functions"),
            "build-ApiFunction",
            f"ARTIFACTS_DIR={out}",
            f"PIP={sys.executable} -m pip",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode and re.search(r"(?i)connection|resolve|network|no matching distribution", done.stderr):
        pytest.skip(f"the package index cannot be reached: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.mark.slow
def test_the_package_holds_the_handlers_and_none_of_the_runtime_s_own_libraries(package: Path) -> None:
    assert (package / "segpipe" / "handlers" / "handle_api_request.py").is_file()
    assert (package / "segpipe" / "ui" / "index.html").is_file()
    assert not (package / "segpipe" / "cli.py").exists()
    for library in ("pydantic", "aws_lambda_powertools", "msgspec", "orjson"):
        assert (package / library).is_dir(), library
    for runtime_s in ("botocore", "urllib3", "s3transfer", "jmespath"):
        assert not (package / runtime_s).exists(), runtime_s


@pytest.mark.slow
def test_every_module_ships_with_bytecode_the_runtime_uses_unchecked(package: Path) -> None:
    python = runtime_python()
    if python is None:
        pytest.skip("no Python 3.13 here: the build ships source only")
    magic = subprocess.run(
        [python, "-c", "import importlib.util, sys; sys.stdout.write(importlib.util.MAGIC_NUMBER.hex())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sources = [path for path in package.rglob("*.py") if "dist-info" not in path.parts[-2]]
    assert len(sources) > 100
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        header = compiled.read_bytes()[:8]
        assert header[:4].hex() == magic, compiled
        assert int.from_bytes(header[4:8], "little") == UNCHECKED_HASH, compiled
