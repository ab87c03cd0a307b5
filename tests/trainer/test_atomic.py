"""The trainer's atomic writes: a temporary file beside the target, synced, renamed over it, the folder
synced; a failed write leaves the old file and no temporary file behind."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from segpipe.models.trainer_io import Progress
from segpipe_trainer import analyze, atomic, outputs, train
from segpipe_trainer.images import write_preview
from segpipe_trainer.processing_paths import ProcessingPaths
from tests.helpers.durable_writes import record_syncs_and_renames


def test_a_write_goes_to_a_synced_temporary_file_beside_the_target_then_is_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced, renamed = record_syncs_and_renames(monkeypatch)
    target = tmp_path / "deeper" / "evaluation.json"

    atomic.write_text(target, '{"ok": true}')

    assert target.read_text() == '{"ok": true}'
    assert [Path(target) for _, target in renamed] == [target]
    [(source, _)] = renamed
    assert Path(source).parent == target.parent and source.endswith(atomic.TEMPORARY_SUFFIX)
    assert synced.index(source) < synced.index(str(target.parent))  # data first, then the new name
    assert [path.name for path in target.parent.iterdir()] == ["evaluation.json"]


def test_a_writer_fills_the_temporary_path_and_an_existing_file_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")

    with atomic.atomic_path(target) as temporary:
        assert temporary != target and temporary.parent == target.parent
        assert temporary.suffix == ".tmp"  # the local runner's checkpoint upload skips these
        temporary.write_bytes(b"new checkpoint")
        assert target.read_bytes() == b"old"  # a reader sees the old file until the rename

    assert target.read_bytes() == b"new checkpoint"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last.pt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "progress.json"
    atomic.write_text(target, "before")

    def fail_halfway() -> None:
        with atomic.atomic_path(target) as temporary:
            temporary.write_text("half of the new")
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        fail_halfway()

    assert target.read_text() == "before"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["progress.json"]


# --- Every writer of the trainer goes through it ----------------------------------------------


def _checkpoint(folder: Path) -> Path:
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    path = folder / "checkpoints" / train.CHECKPOINT_FILE
    train.save_checkpoint(
        path,
        model=model,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
        state=train.TrainState(),
        fingerprint=train.Fingerprint(
            preset="tiny", model_type="instance", classes=("a",), tile_size=32, seed=0, in_channels=1, world=1
        ),
    )
    return path


def _weights(folder: Path) -> Path:
    path = folder / "model" / "model.safetensors"
    train.save_weights(torch.nn.Linear(2, 2), path)
    return path


def _progress(folder: Path) -> Path:
    path = folder / "checkpoints" / "progress.json"
    train.write_progress(path, progress=Progress(epoch=1, epochs=2))
    return path


def _json(folder: Path) -> Path:
    path = folder / "output" / "evaluation.json"
    outputs.write_json(path, {"ok": True})
    return path


def _preview(folder: Path) -> Path:
    path = folder / "previews" / "a.png"
    write_preview(np.zeros((1, 8, 8), dtype=np.float32), path=path)
    return path


def _csv(folder: Path) -> Path:
    path = folder / "objects.csv"
    analyze._write_csv(path, header=["a"], rows=[["1"]])
    return path


def _mask(folder: Path) -> Path:
    result = SimpleNamespace(
        file_name="a.png", stem="a", width=8, height=8, channels=1, objects=[],
        normalised=np.zeros((1, 8, 8), dtype=np.float32), mask=np.zeros((8, 8), dtype=np.uint16),
    )  # fmt: skip
    analyze.write_image_outputs(result, paths=ProcessingPaths(root=folder), classes=[])  # type: ignore[arg-type]
    return ProcessingPaths(root=folder).masks_output / "a.tif"


@pytest.mark.parametrize("writer", [_checkpoint, _weights, _progress, _json, _preview, _csv, _mask])
def test_every_file_the_trainer_writes_goes_through_the_atomic_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: Callable[[Path], Path]
) -> None:
    written: list[Path] = []
    real = atomic.atomic_path

    @contextlib.contextmanager
    def recording(path: Path) -> Iterator[Path]:
        written.append(path)
        with real(path) as temporary:
            yield temporary

    monkeypatch.setattr(atomic, "atomic_path", recording)

    path = writer(tmp_path)

    assert path in written and path.is_file()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(atomic.TEMPORARY_SUFFIX)]
