"""A `DatasetStore` over folders on disk: the CLI's offline validation and the embedded local stack."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from segpipe.errors import DatasetNotFound, DatasetTooLarge, NotFoundError, ObjectNotFound
from segpipe.models import keys


class FilesystemDatasetStore:
    """Datasets in folders on disk.

    By default the folders mirror the bucket's key layout:
    `{root}/projects/{project}/datasets/{dataset}/annotations.json` and the image files beside it.
    `FilesystemDatasetStore.single(folder)` serves one folder (or one annotations file) for any
    project and dataset name, which is what offline validation of a local dataset needs.
    """

    def __init__(
        self, root: Path | str, *, annotations_file: Path | str | None = None, single: bool = False
    ) -> None:
        self._root = Path(root)
        self._annotations_file = Path(annotations_file) if annotations_file is not None else None
        self._single = single

    @classmethod
    def single(cls, path: Path | str) -> FilesystemDatasetStore:
        """Serve one dataset: `path` is its folder (holding annotations.json) or its annotations file.

        Image file names are relative to the folder that holds the annotations file.
        """
        path = Path(path)
        if path.is_file() or path.suffix.lower() == ".json":
            return cls(path.parent, annotations_file=path, single=True)
        return cls(path, single=True)

    def folder(self, project: str, dataset: str) -> Path:
        """The folder that holds the dataset's files."""
        if self._single:
            return self._root
        return self._root / _safe(keys.dataset_prefix(project, dataset), missing=DatasetNotFound)

    def read_annotations(
        self, project: str, dataset: str, file_name: str, *, max_bytes: int | None = None
    ) -> bytes:
        path = self._annotations_file or self.folder(project, dataset) / _safe(
            file_name, missing=DatasetNotFound
        )
        try:
            with path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if max_bytes is not None and size > max_bytes:
                    raise DatasetTooLarge(f"{path} is {size} bytes.", size=size, limit=max_bytes)
                return handle.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as error:
            raise DatasetNotFound(f"No annotations file at {path}.", path=str(path)) from error

    def list_files(self, project: str, dataset: str) -> set[str]:
        folder = self.folder(project, dataset)
        found: set[str] = set()
        for directory, _, files in os.walk(folder, followlinks=True):
            relative = Path(directory).relative_to(folder).as_posix()
            prefix = "" if relative == "." else relative + "/"
            found.update(prefix + name for name in files)
        return found

    def read_head(self, project: str, dataset: str, file_name: str, nbytes: int) -> bytes:
        path = self.folder(project, dataset) / _safe(file_name)
        try:
            with path.open("rb") as handle:
                return handle.read(nbytes)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as error:
            raise ObjectNotFound(f"No file at {path}.", path=str(path)) from error


def _safe(relative: str, *, missing: type[NotFoundError] = ObjectNotFound) -> Path:
    """A relative path that cannot leave its folder; raises `missing` for any other."""
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or ".." in parts or "\\" in relative or "\x00" in relative:
        raise missing(f"{relative!r} is not a relative path inside the dataset folder.", path=relative)
    return Path(*parts)
