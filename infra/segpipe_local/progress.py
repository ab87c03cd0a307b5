"""Terminal output shared by `make demo`, `segpipe train` and `segpipe analyze`: an epoch (or
images) progress bar while a version trains (or an analysis runs), then its details and
statistics (or its counts per class and where its outputs are)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from segpipe.models import keys
from segpipe.models.analysis import AnalysisView
from segpipe.models.api import MetricsView, SplitMetrics
from segpipe.models.trainer_io import Metrics
from segpipe.models.version import ModelVersion

BAR = 28


class _Line:
    """One line redrawn in place on a terminal; in a log, one line per change without the clock."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self._stream = stream
        self._start = time.monotonic()
        self._last = ""
        self._tty = stream.isatty()

    def _elapsed(self) -> float:
        return time.monotonic() - self._start

    def _draw(self, text: str) -> None:
        """Show `text` followed by the elapsed time (trailing blanks and dots dropped in a log)."""
        if self._tty:
            elapsed = self._elapsed()
            line = f"{text}  {int(elapsed // 60)}:{int(elapsed % 60):02d}"
            if line != self._last:
                self._stream.write("\r" + line.ljust(90))
        else:
            line = text.rstrip(" .")
            if line != self._last:
                self._stream.write(line + "\n")
        self._last = line
        self._stream.flush()

    def close(self) -> None:
        if self._tty:
            self._stream.write("\n")
        self._stream.flush()


class ProgressLine(_Line):
    """Redraws one line: status, a bar of epochs, loss and validation score, elapsed time."""

    def update(self, version: ModelVersion) -> None:
        progress = version.progress
        if progress is None:
            dots = "." * (int(self._elapsed()) % 4)
            text = f"  {version.status.value:<9} {dots:<3}          "
        else:
            done = min(BAR, round(BAR * progress.epoch / progress.epochs))
            bar = "#" * done + "-" * (BAR - done)
            loss = f" loss {progress.train_loss:.3f}" if progress.train_loss is not None else ""
            score = f" val {progress.val_score:.3f}" if progress.val_score is not None else ""
            phase = "" if progress.phase == "training" else f" ({progress.phase})"
            text = f"  epoch {progress.epoch:>3}/{progress.epochs:<3} [{bar}]{loss}{score}{phase}"
        self._draw(text)


def _cell(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def _row(name: str, train: Metrics | None, test: Metrics | None, columns: list[str]) -> str:
    cells = [
        _cell(getattr(split, column)) if split else "   -  " for split in (train, test) for column in columns
    ]
    half = len(columns)
    return f"  {name:<12} " + " ".join(cells[:half]) + "  | " + " ".join(cells[half:])


def _per_class(split: SplitMetrics | None, name: str) -> Metrics | None:
    return split.at.per_class.get(name) if split else None


def print_results(
    version: ModelVersion, metrics: MetricsView, *, page: str, stream: TextIO = sys.stdout
) -> None:
    details = version.details
    write = stream.write
    write(f"\nTraining details of version {version.version} ({version.label})\n")
    write(
        f"  images: {details.total_images} in the dataset, {details.included_images} included "
        f"({details.train_images} train, {details.test_images} test)\n"
    )
    for counts in details.classes:
        write(
            f"  {counts.name:<12} {counts.annotations:>5} annotations "
            f"({counts.train} train, {counts.test} test)\n"
        )
    for warning in version.warnings:
        write(f"  warning {warning.code}: {warning.message}\n")

    instance = metrics.model_type == "instance"
    columns = ["precision", "recall", "f1"] if instance else ["iou", "dice"]
    header = " ".join(f"{column[:6]:>6}" for column in columns)
    write(f"\nStatistics at the suggested threshold {metrics.threshold:.2f} (matching at IoU 0.5)\n")
    write(f"  {'':<12} {'train':^{len(header)}}  | {'test':^{len(header)}}\n")
    write(f"  {'class':<12} {header}  | {header}\n")
    for name in metrics.classes:
        write(_row(name, _per_class(metrics.train, name), _per_class(metrics.test, name), columns) + "\n")
    train_all = metrics.train.at.overall if metrics.train else None
    test_all = metrics.test.at.overall if metrics.test else None
    write(_row("overall", train_all, test_all, columns) + "\n")
    if instance:
        for split_name, split in (("train", metrics.train), ("test", metrics.test)):
            if split and split.ap_overall:
                write(
                    f"  {split_name} AP50 {_cell(split.ap_overall.ap50)}"
                    f"   AP[.5:.95] {_cell(split.ap_overall.ap)}\n"
                )
    headline = version.headline
    if headline is not None:
        figure = headline.f1 if instance else headline.mean_iou
        label = "F1 at IoU 0.5" if instance else "mean IoU"
        interval = _interval(metrics, "f1" if instance else "iou") if headline.split == "test" else ""
        write(f"\n{headline.split.capitalize()} {label}: {_cell(figure).strip()}{interval}\n")
    if metrics.selection is not None and metrics.selection.summary:
        write(f"How it was chosen: {metrics.selection.summary}\n")
    write(f"Look at the predictions: {page}\n")
    stream.flush()


def _interval(metrics: MetricsView, name: str) -> str:
    """` (95% interval 0.91 to 0.97, bootstrap of 4 test images, 1000 draws)`, or '' without one."""
    intervals = metrics.intervals
    point = intervals.headline.metrics.get(name) if intervals else None
    if intervals is None or point is None or point.low is None or point.high is None:
        return ""
    return (
        f" ({intervals.confidence:.0%} interval {point.low:.3f} to {point.high:.3f}, bootstrap of "
        f"{intervals.images} test images, {intervals.draws} draws)"
    )


class AnalysisProgressLine(_Line):
    """Redraws one line while an analysis runs: status, a bar of images done, elapsed time."""

    def update(self, view: AnalysisView) -> None:
        done, total = view.images_done, view.images
        if done is None or not total:
            text = f"  {view.status.value:<9}"
        else:
            filled = min(BAR, round(BAR * done / total))
            text = (
                f"  {view.status.value:<9} images {done:>4}/{total:<4} [{'#' * filled}{'-' * (BAR - filled)}]"
            )
        self._draw(text)


def print_analysis(
    view: AnalysisView,
    *,
    bucket: str,
    saved: dict[str, Path] | None = None,
    page: str,
    stream: TextIO = sys.stdout,
) -> None:
    """The counts per class of a finished analysis, and where its outputs are."""
    write = stream.write
    summary = view.summary
    write(f"\nAnalysis {view.analysis} ({view.name}) of images/{view.images_folder}")
    write(f" with version {view.version}\n")
    if summary is not None:
        write(f"  {summary.images} images, {summary.megapixels:.2f} megapixels, {summary.seconds:.1f} s\n")
    thresholds = ", ".join(f"{name} {score:.2f}" for name, score in view.thresholds.items())
    write(f"  thresholds: {thresholds}\n\n")
    microns = summary is not None and summary.pixel_size is not None
    write(
        f"  {'class':<16} {'objects':>8} {'area (px)':>12}"
        + (f" {'area (µm²)':>12}" if microns else "")
        + "\n"
    )
    per_class = summary.per_class if summary is not None else {}
    total = 0
    for name in view.classes:
        totals = per_class.get(name)
        objects = totals.objects if totals else view.objects.get(name, 0)
        total += objects
        area = f"{totals.area:12.0f}" if totals else f"{'-':>12}"
        extra = ""
        if microns:
            extra = f" {totals.area_um2:12.1f}" if totals and totals.area_um2 is not None else f" {'-':>12}"
        write(f"  {name:<16} {objects:>8} {area}{extra}\n")
    write(f"  {'all classes':<16} {total:>8}\n\n")
    prefix = keys.analysis_prefix(view.project, view.analysis)
    write(f"Results in s3://{bucket}/{prefix}\n")
    described = {
        "objects.csv": "one row per object, with its measurements",
        "images.csv": "one row per image: objects and area per class",
        "coco.json": "the kept objects as a COCO dataset (correct them, train on them)",
        "summary.json": "version, thresholds, counts, timing",
    }
    for name, what in described.items():
        where = f"  -> {saved[name]}" if saved and name in saved else ""
        write(f"  {name:<13} {what}{where}\n")
    write(f"  {'masks/':<13} one label image per analysed image ({{stem}}.tif)\n")
    write(f"Look at them: {page}\n")
    stream.flush()
