"""S3 adapters: the dataset folders and the data bucket's artifacts."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from segpipe.errors import DatasetNotFound, DatasetTooLarge, ObjectChanged, ObjectNotFound, ServiceUnavailable
from segpipe.models import keys
from segpipe.models.endpoints import preview_origin

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3ArtifactStore", "S3DatasetStore", "preview_origin"]

_MISSING = {"NoSuchKey", "404", "NotFound"}


def _is_missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in _MISSING


class _GuardedStream(io.RawIOBase):
    """A response body whose transport failures mid-read (botocore's ReadTimeoutError and
    ResponseStreamingError, a reset connection: most are OSErrors) surface as `ServiceUnavailable`,
    so that callers can tell a read to retry from a damaged object."""

    def __init__(self, body: Any, key: str) -> None:
        super().__init__()
        self._body = body
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._body.read(len(buffer))
        except (BotoCoreError, OSError) as error:
            raise ServiceUnavailable(
                f"Reading {self._key} failed on the way: {error}", key=self._key
            ) from error
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
        super().close()


class S3DatasetStore:
    """Datasets under `projects/{p}/datasets/{d}/` in the data bucket; with
    `prefix=keys.images_prefix`, the analyses' image folders `projects/{p}/images/{folder}/`."""

    def __init__(
        self, client: S3Client, bucket: str, *, prefix: Callable[[str, str], str] = keys.dataset_prefix
    ) -> None:
        self._s3 = client
        self._bucket = bucket
        self._prefix = prefix

    def read_annotations(
        self, project: str, dataset: str, file_name: str, *, max_bytes: int | None = None
    ) -> bytes:
        key = self._prefix(project, dataset) + file_name
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if _is_missing(error):
                raise DatasetNotFound(f"No dataset file at s3://{self._bucket}/{key}.", key=key) from error
            raise
        body = response["Body"]
        size = response["ContentLength"]  # known from the headers, before any of the body is read
        if max_bytes is not None and size > max_bytes:
            body.close()
            raise DatasetTooLarge(f"s3://{self._bucket}/{key} is {size} bytes.", size=size, limit=max_bytes)
        data: bytes = body.read()
        return data

    def list_files(self, project: str, dataset: str) -> set[str]:
        prefix = self._prefix(project, dataset)
        paginator = self._s3.get_paginator("list_objects_v2")
        found: set[str] = set()
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            found.update(item["Key"][len(prefix) :] for item in page.get("Contents", []))
        return found

    def read_head(self, project: str, dataset: str, file_name: str, nbytes: int) -> bytes:
        key = self._prefix(project, dataset) + file_name
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=key, Range=f"bytes=0-{nbytes - 1}")
        except ClientError as error:
            if _is_missing(error):
                raise ObjectNotFound(f"No file at {key}.", key=key) from error
            raise
        return response["Body"].read()


class S3ArtifactStore:
    """Artifacts in the data bucket: splits, reports, predictions, previews, metrics."""

    def __init__(self, client: S3Client, bucket: str, *, workers: int = 16) -> None:
        self._s3 = client
        self._bucket = bucket
        self._workers = workers

    @property
    def bucket(self) -> str:
        return self._bucket

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/json") -> None:
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type)

    def put_many(self, items: Iterable[tuple[str, bytes, str]]) -> int:
        """Upload (key, data, content type) triples in parallel; returns how many."""
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            futures = [pool.submit(self.put_bytes, key, data, kind) for key, data, kind in items]
            for future in futures:
                future.result()
        return len(futures)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as error:
            if _is_missing(error):
                raise ObjectNotFound(f"No object at {key}.", key=key) from error
            raise

    def get_bytes_at(self, key: str, *, version_id: str | None = None, etag: str | None = None) -> bytes:
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": key}
        if version_id and version_id != "null":  # "null": the bucket is (or was) unversioned
            params["VersionId"] = version_id
        if etag:
            params["IfMatch"] = '"' + etag.strip('"') + '"'
        try:
            return self._s3.get_object(**params)["Body"].read()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if _is_missing(error) or code == "NoSuchVersion":
                raise ObjectNotFound(f"No object at {key} (version {version_id}).", key=key) from error
            if code == "PreconditionFailed" or status == 412:
                raise ObjectChanged(f"{key} no longer has ETag {etag}.", key=key, etag=etag) from error
            raise

    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if _is_missing(error):
                return False
            raise
        return True

    def open_stream(self, key: str) -> IO[bytes]:
        try:
            body: Any = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"]
        except ClientError as error:
            if _is_missing(error):
                raise ObjectNotFound(f"No object at {key}.", key=key) from error
            raise
        return io.BufferedReader(_GuardedStream(body, key), buffer_size=256 * 1024)

    def list_keys(self, prefix: str) -> Iterator[str]:
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def presign_get(self, key: str, expires_in: int = 3600) -> str:
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=expires_in
        )
