"""SageMaker's JSON 1.1 protocol for the training- and processing-job operations segpipe uses,
served locally so boto3 (and the AWS CLI) talk to the local runners as they would to SageMaker."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wrappers import Request, Response

from segpipe_local.jobs import JobError
from segpipe_local.local_origin import is_loopback
from segpipe_local.processing import ProcessingRunner
from segpipe_local.runner import JobRunner
from segpipe_local.server_thread import ServerThread

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/x-amz-json-1.1"


class SageMakerApi:
    def __init__(self, runner: JobRunner, processing: ProcessingRunner | None = None) -> None:
        self._operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "CreateTrainingJob": runner.create,
            "DescribeTrainingJob": lambda body: runner.describe(body["TrainingJobName"]),
            "StopTrainingJob": lambda body: runner.stop_job(body["TrainingJobName"]),
            "ListTrainingJobs": lambda _: runner.list(),
        }
        if processing is not None:
            self._operations |= {
                "CreateProcessingJob": processing.create,
                "DescribeProcessingJob": lambda body: processing.describe(body["ProcessingJobName"]),
                "StopProcessingJob": lambda body: processing.stop_job(body["ProcessingJobName"]),
                "ListProcessingJobs": processing.list,
            }

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        target = request.headers.get("X-Amz-Target", "")
        operation = target.removeprefix("SageMaker.")
        handler = self._operations.get(operation)
        if request.method != "POST" or handler is None:
            response = _error(
                400, "UnknownOperationException", f"{operation or 'this request'} is not served locally"
            )
        else:
            try:
                body = json.loads(request.get_data() or b"{}")
                response = Response(json.dumps(handler(body)), status=200, content_type=CONTENT_TYPE)
            except JobError as error:
                response = _error(400, error.code, error.message)
            except (KeyError, json.JSONDecodeError) as error:
                response = _error(400, "ValidationException", f"malformed request: {error}")
        return response(environ, start_response)


def _error(status: int, code: str, message: str) -> Response:
    return Response(
        json.dumps({"__type": code, "message": message}), status=status, content_type=CONTENT_TYPE
    )


class SageMakerServer(ServerThread):
    """The API on a loopback port only: whoever reaches it starts processes on this machine. It
    also refuses a foreign Host (DNS rebinding), as every `ServerThread` does."""

    def __init__(
        self, runner: JobRunner, *, host: str, port: int, processing: ProcessingRunner | None = None
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"the local SageMaker API listens on a loopback address only, not {host!r}")
        super().__init__(SageMakerApi(runner, processing), host=host, port=port, name="sagemaker-api")
