"""`segpipe analyze` without a stack: its arguments, the files it uploads, and what it prints."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from segpipe.models.analysis import (
    AnalysisDetails,
    AnalysisStatus,
    AnalysisSummary,
    AnalysisView,
    ClassTotals,
)
from segpipe_local.cli import _parse_thresholds, analyze_main
from segpipe_local.client import image_files
from segpipe_local.progress import AnalysisProgressLine, print_analysis


def _view(**changes: object) -> AnalysisView:
    fields: dict[str, object] = {
        "project": "lab",
        "analysis": 4,
        "name": "plate 7",
        "images_folder": "plate-7",
        "version": 2,
        "status": AnalysisStatus.COMPLETED,
        "images": 3,
        "images_done": 3,
        "objects": {"nucleus": 12, "mitotic": 1},
        "thresholds": {"nucleus": 0.5, "mitotic": 0.35},
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "model_type": "instance",
        "classes": ["nucleus", "mitotic"],
        "job_name": "segpipe-lab-a4-0123abcd",
        "details": AnalysisDetails(),
        "summary": AnalysisSummary(
            project="lab",
            analysis=4,
            version=2,
            model_type="instance",
            classes=["nucleus", "mitotic"],
            thresholds={"nucleus": 0.5, "mitotic": 0.35},
            pixel_size=0.5,
            images=3,
            megapixels=0.2,
            objects=13,
            per_class={
                "nucleus": ClassTotals(objects=12, area=1500, area_um2=375),
                "mitotic": ClassTotals(objects=1, area=90, area_um2=22.5),
            },
            seconds=4.2,
        ),
    }
    return AnalysisView.model_validate({**fields, **changes})


@pytest.mark.parametrize(
    ("values", "parsed"),
    [
        ([], {}),
        (["0.4"], {"*": 0.4}),
        (["nucleus=0.6", "mitotic cell=0.2"], {"nucleus": 0.6, "mitotic cell": 0.2}),
        (["0.4", "nucleus=0.6"], {"*": 0.4, "nucleus": 0.6}),
    ],
)
def test_thresholds_are_one_score_or_class_scores(values: list[str], parsed: dict[str, float]) -> None:
    assert _parse_thresholds(values) == parsed


@pytest.mark.parametrize("value", ["nucleus=high", "1.5", "nucleus=-0.1", ""])
def test_a_threshold_that_is_not_a_score_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="--threshold"):
        _parse_thresholds([value])


def test_only_images_are_uploaded_hidden_files_and_others_are_left(tmp_path: Path) -> None:
    for name in ("a.png", "b.TIF", "sub/c.jpeg", "notes.txt", ".hidden/d.png", "sub/.e.png", "f.tiff"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")

    names = [path.relative_to(tmp_path).as_posix() for path in image_files(tmp_path)]

    assert names == ["a.png", "b.TIF", "f.tiff", "sub/c.jpeg"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--images", "{empty}"], "holds no PNG, JPEG or TIFF images"),
        (["--images", "{images}", "--name", "../up"], "cannot name an images folder"),
        (["--images", "{images}", "--threshold", "x=y"], "expected [CLASS=]SCORE"),
        (["--images", "{images}", "--api-url", "https://example.org"], "--api-url needs --bucket"),
    ],
)
def test_bad_arguments_are_usage_errors_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"x")
    argv = [item.format(empty=tmp_path / "empty", images=tmp_path / "images") for item in argv]

    with pytest.raises(SystemExit) as stopped:
        analyze_main(argv)

    assert stopped.value.code == 2
    assert words in capsys.readouterr().err


def test_the_results_name_the_counts_per_class_and_where_the_outputs_are(tmp_path: Path) -> None:
    stream = io.StringIO()

    print_analysis(
        _view(),
        bucket="data",
        saved={"objects.csv": tmp_path / "objects.csv"},
        page="http://127.0.0.1:8000/ui/#/projects/lab/analyses/4",
        stream=stream,
    )

    text = stream.getvalue()
    assert "Analysis 4 (plate 7) of images/plate-7 with version 2" in text
    assert "thresholds: nucleus 0.50, mitotic 0.35" in text
    assert "  nucleus                12         1500        375.0" in text
    assert "  mitotic                 1           90         22.5" in text
    assert "  all classes            13" in text
    assert "Results in s3://data/projects/lab/analyses/4/" in text
    assert f"objects.csv   one row per object, with its measurements  -> {tmp_path / 'objects.csv'}" in text
    assert "Look at them: http://127.0.0.1:8000/ui/#/projects/lab/analyses/4" in text


def test_progress_is_one_line_per_change_in_a_log() -> None:
    stream = io.StringIO()
    line = AnalysisProgressLine(stream)

    for done in (None, 0, 0, 2, 3):
        status = AnalysisStatus.QUEUED if done is None else AnalysisStatus.RUNNING
        line.update(_view(status=status, images_done=done))
    line.close()

    assert stream.getvalue().splitlines() == [
        "  queued",
        "  running   images    0/3    [----------------------------]",
        "  running   images    2/3    [###################---------]",
        "  running   images    3/3    [############################]",
    ]
