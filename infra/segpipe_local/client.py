"""A small client for segpipe: upload a dataset (or images) folder, submit a training (or an
analysis) over HTTP, follow it to the end. Talks to the local stack, or to a deployed one with
SigV4-signed requests."""

from __future__ import annotations

import json
import mimetypes
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import boto3

from segpipe.models.analysis import IMAGE_SUFFIXES, AnalysisAccepted, AnalysisView
from segpipe.models.api import MetricsView, SubmitAccepted
from segpipe.models.version import ModelVersion


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"HTTP {status}: {error.get('code', '')}: {error.get('message', body)}")
        self.status = status
        self.body = body


@dataclass
class SegpipeClient:
    api_url: str
    sign: bool = False
    region: str | None = None
    timeout: float = 30.0

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json", **(headers or {})} if data else dict(headers or {})
        url = self.api_url.rstrip("/") + path
        if self.sign:
            all_headers = self._signed(method, url, data, all_headers)
        request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as error:
            payload = error.read()
            try:
                parsed = json.loads(payload)
            except json.JSONDecodeError:
                parsed = payload.decode(errors="replace")
            raise ApiError(error.code, parsed) from None
        return json.loads(text) if text else None

    def _signed(self, method: str, url: str, data: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        session = boto3.Session()
        credentials = session.get_credentials()
        if credentials is None:
            raise ApiError(401, {"error": {"code": "no_credentials", "message": "No AWS credentials found."}})
        aws_request = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(credentials, "execute-api", self.region or session.region_name or "us-east-1").add_auth(
            aws_request
        )
        return dict(aws_request.headers.items())

    # --- the API -----------------------------------------------------------------------------

    def preview(self, project: str, request: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self.request("POST", f"/projects/{project}/trainings/preview", request)
        return answer

    def submit(
        self, project: str, request: dict[str, Any], *, idempotency_key: str | None = None
    ) -> SubmitAccepted:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return SubmitAccepted.model_validate(
            self.request("POST", f"/projects/{project}/trainings", request, headers)
        )

    def version(self, project: str, version: int) -> ModelVersion:
        return ModelVersion.model_validate(self.request("GET", f"/projects/{project}/models/{version}"))

    def metrics(self, project: str, version: int, *, threshold: float | None = None) -> MetricsView:
        query = f"?threshold={threshold}" if threshold is not None else ""
        return MetricsView.model_validate(
            self.request("GET", f"/projects/{project}/models/{version}/metrics{query}")
        )

    def wait(
        self,
        project: str,
        version: int,
        *,
        on_update: Callable[[ModelVersion], None] | None = None,
        poll: float = 1.0,
        timeout: float = 3600.0,
    ) -> ModelVersion:
        """Follow a version until it ends (completed, failed or stopped)."""
        return _follow(
            lambda: self.version(project, version),
            f"version {version}",
            on_update,
            poll=poll,
            timeout=timeout,
        )

    # --- analyses --------------------------------------------------------------------------------

    def submit_analysis(
        self, project: str, request: dict[str, Any], *, idempotency_key: str | None = None
    ) -> AnalysisAccepted:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return AnalysisAccepted.model_validate(
            self.request("POST", f"/projects/{project}/analyses", request, headers)
        )

    def analysis(self, project: str, analysis: int) -> AnalysisView:
        return AnalysisView.model_validate(self.request("GET", f"/projects/{project}/analyses/{analysis}"))

    def wait_analysis(
        self,
        project: str,
        analysis: int,
        *,
        on_update: Callable[[AnalysisView], None] | None = None,
        poll: float = 1.0,
        timeout: float = 3600.0,
    ) -> AnalysisView:
        """Follow an analysis until it ends (completed, failed or stopped)."""
        return _follow(
            lambda: self.analysis(project, analysis),
            f"analysis {analysis}",
            on_update,
            poll=poll,
            timeout=timeout,
        )


class _Followed(Protocol):
    @property
    def status(self) -> Any: ...


Followed = TypeVar("Followed", bound=_Followed)


def _follow(
    read: Callable[[], Followed],
    what: str,
    on_update: Callable[[Followed], None] | None,
    *,
    poll: float,
    timeout: float,
) -> Followed:
    deadline = time.monotonic() + timeout
    while True:
        current = read()
        if on_update:
            on_update(current)
        if current.status.terminal:
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} is still {current.status.value} after {timeout:.0f} s")
        time.sleep(poll)


def upload_dataset(s3: Any, *, bucket: str, project: str, name: str, folder: Path, workers: int = 8) -> int:
    """Upload a dataset folder (annotations.json and its images) to projects/{p}/datasets/{name}/."""
    files = [path for path in sorted(folder.rglob("*")) if path.is_file() and not path.name.startswith(".")]
    prefix = f"projects/{project}/datasets/{name}/"
    return _upload(s3, bucket=bucket, prefix=prefix, folder=folder, files=files, workers=workers)


def image_files(folder: Path) -> list[Path]:
    """The files an analysis reads: PNG, JPEG and TIFF under `folder`, recursively (not hidden)."""
    return [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and path.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    ]


def upload_images(s3: Any, *, bucket: str, project: str, name: str, folder: Path, workers: int = 8) -> int:
    """Upload the images of a folder to projects/{p}/images/{name}/ (the folder an analysis names)."""
    files = image_files(folder)
    prefix = f"projects/{project}/images/{name}/"
    return _upload(s3, bucket=bucket, prefix=prefix, folder=folder, files=files, workers=workers)


def _upload(s3: Any, *, bucket: str, prefix: str, folder: Path, files: list[Path], workers: int = 8) -> int:
    def put(path: Path) -> None:
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        s3.upload_file(
            str(path), bucket, prefix + path.relative_to(folder).as_posix(), ExtraArgs={"ContentType": kind}
        )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(put, files))
    return len(files)
