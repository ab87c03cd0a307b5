"""`segpipe validate` and `segpipe import-masks`: exit codes, JSON on stdout, clear messages on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from segpipe import cli
from tests.helpers.datasets import DatasetBuilder, healthy_dataset

REQUEST = {
    "label": "offline",
    "dataset": "ignored-by-the-cli",
    "model_type": "instance",
    "classes": ["nucleus", "mitosis"],
}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return healthy_dataset().write(tmp_path / "cells")


def request_file(folder: Path, body: dict[str, Any] | str = REQUEST) -> Path:
    path = folder / "request.json"
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_valid_request_prints_its_report_and_exits_0(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "validate", "--dataset", dataset, "--request", request_file(tmp_path), "--tile-size", "128"
    )

    report = json.loads(out)
    assert code == 0
    assert report["ok"] is True
    assert report["details"]["dataset"] == "cells"
    assert report["details"]["included_annotations"] == 200
    assert report["details"]["tile_size"] == 128
    assert err == ""


def test_the_lambda_defaults_apply_offline(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given no --preset/--epochs/--tile-size, the submit Lambda's defaults apply (512 px tiles)
    code, out, _ = run(capsys, "validate", "--dataset", dataset, "--request", request_file(tmp_path))

    report = json.loads(out)
    assert code == 0
    assert (report["details"]["preset"], report["details"]["epochs"], report["details"]["tile_size"]) == (
        "sam-vit-base",
        50,
        512,
    )
    assert [warning["code"] for warning in report["warnings"]] == ["images_smaller_than_tile"]


def test_an_annotations_file_is_read_with_images_beside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the annotations under another name, with the images relative to its folder
    folder = healthy_dataset().write(tmp_path / "export")
    (folder / "annotations.json").rename(folder / "coco export.json")

    code, out, _ = run(
        capsys,
        "validate",
        "--dataset",
        folder / "coco export.json",
        "--request",
        request_file(tmp_path),
        "--tile-size",
        "128",
    )

    assert code == 0
    assert json.loads(out)["details"]["total_images"] == 40


def test_a_report_with_errors_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    builder = DatasetBuilder(classes=["nucleus", "mitosis"])
    builder.add_images(3, objects={"nucleus": 2})
    folder = builder.write(tmp_path / "small")

    code, out, err = run(capsys, "validate", "--dataset", folder, "--request", request_file(tmp_path))

    report = json.loads(out)
    assert code == 1
    assert {error["code"] for error in report["errors"]} == {
        "too_few_annotations",
        "class_without_annotations",
    }
    assert err == ""


def test_a_missing_dataset_is_a_report_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "validate", "--dataset", tmp_path / "nowhere", "--request", request_file(tmp_path)
    )

    assert code == 1
    assert json.loads(out)["errors"][0]["code"] == "dataset_not_found"


def test_broken_json_in_the_dataset_is_a_report_not_a_traceback(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (dataset / "annotations.json").write_bytes((dataset / "annotations.json").read_bytes()[:-50])

    code, out, err = run(capsys, "validate", "--dataset", dataset, "--request", request_file(tmp_path))

    assert code == 1
    assert json.loads(out)["errors"][0]["code"] == "dataset_unreadable"
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["validate", "--request", "REQUEST"], "--dataset"),
        (["validate", "--dataset", "DATASET"], "--request"),
        (
            ["validate", "--dataset", "DATASET", "--request", "REQUEST", "--surprise"],
            "unrecognized arguments",
        ),
        (
            ["validate", "--dataset", "DATASET", "--request", "REQUEST", "--project", "a/b"],
            "not a project name",
        ),
        (
            ["validate", "--dataset", "DATASET", "--request", "REQUEST", "--preset", "vit-huge"],
            "sam-vit-base",
        ),
        (["frobnicate"], "invalid choice"),
        ([], "COMMAND"),
    ],
)
def test_wrong_usage_exits_2_with_a_message(
    argv: list[str], expected: str, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    concrete = [
        {"REQUEST": str(request_file(tmp_path)), "DATASET": str(dataset)}.get(arg, arg) for arg in argv
    ]

    code, out, err = run(capsys, *concrete)

    assert code == 2
    assert out == ""
    assert expected in err


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{not json", "not a valid training request"),
        ({"label": "x"}, "classes: Field required"),
        ({**REQUEST, "test_set": {"strategy": "fraction", "fraction": 2}}, "test_set.fraction"),
    ],
)
def test_an_invalid_request_file_exits_2(
    body: dict[str, Any] | str,
    expected: str,
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "validate", "--dataset", dataset, "--request", request_file(tmp_path, body))

    assert code == 2
    assert out == ""
    assert expected in err


def test_an_unreadable_request_file_exits_2(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "validate", "--dataset", dataset, "--request", tmp_path / "missing.json")

    assert code == 2
    assert "cannot read the request file" in err


def test_import_masks_passes_its_arguments_through(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an importer that records what it was called with
    calls: list[list[str]] = []
    fake = types.ModuleType("segpipe_trainer.import_masks")

    def record(argv: list[str]) -> int:
        calls.append(argv)
        return 0

    fake.main = record  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "segpipe_trainer.import_masks", fake)
    monkeypatch.setattr("segpipe_trainer.import_masks", fake, raising=False)

    code, _, _ = run(capsys, "import-masks", "masks/", "out/", "--class-name", "nucleus", "--help")

    assert code == 0
    assert calls == [["masks/", "out/", "--class-name", "nucleus", "--help"]]


def test_import_masks_without_the_trainer_package_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "segpipe_trainer.import_masks", None)  # makes the import fail
    monkeypatch.delattr("segpipe_trainer.import_masks", raising=False)  # imported by another test

    code, out, err = run(capsys, "import-masks", "masks/", "out/")

    assert code == 2
    assert out == ""
    assert "segpipe_trainer.import_masks" in err


def test_importing_the_cli_loads_no_heavy_packages() -> None:
    # In a fresh interpreter: importing segpipe.cli must not pull torch, numpy or boto3
    probe = "import sys, segpipe.cli; print(sorted({'torch', 'numpy', 'boto3'} & set(sys.modules)))"

    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout

    assert loaded.strip() == "[]"


def test_the_validate_path_loads_no_heavy_packages(dataset: Path, tmp_path: Path) -> None:
    probe = (
        "import sys\nfrom segpipe import cli\n"
        f"cli.main(['validate', '--dataset', {str(dataset)!r}, '--request', "
        f"{str(request_file(tmp_path))!r}])\n"
        "print(sorted({'torch', 'numpy', 'boto3'} & set(sys.modules)), file=sys.stderr)"
    )

    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)

    assert done.stderr.strip().splitlines()[-1] == "[]"
