"""The whole system on one machine: moto (S3, DynamoDB, EventBridge, SQS), the HTTP gateway, the
event dispatcher and the training- and processing-job runners, around the real handlers, the real
trainer and the real `analyze`."""

from __future__ import annotations

import contextlib
import logging
import os
from types import TracebackType
from typing import Any

from segpipe_local.aws import MotoServer, client, create_storage, enable_events
from segpipe_local.config import LocalConfig
from segpipe_local.dispatcher import Dispatcher
from segpipe_local.functions import LocalFunction, function_output_to, functions_from_template
from segpipe_local.gateway import GatewayServer
from segpipe_local.processing import ProcessingRunner
from segpipe_local.runner import JobRunner
from segpipe_local.sagemaker_api import SageMakerServer
from segpipe_local.snapshot import Snapshot, Snapshotter
from segpipe_local.template import function_handlers, load_template

logger = logging.getLogger(__name__)


class _SignallingFunction(LocalFunction):
    """The API function, telling the snapshotter after every request that may have written."""

    def __init__(self, inner: LocalFunction, on_write: Any) -> None:
        super().__init__(inner.name, inner.handler_path)
        self._on_write = on_write

    def invoke(self, event: dict[str, Any]) -> Any:
        answer = super().invoke(event)
        if event.get("requestContext", {}).get("http", {}).get("method") not in {"GET", "HEAD", "OPTIONS"}:
            self._on_write()
        return answer


class LocalStack:
    def __init__(self, config: LocalConfig | None = None) -> None:
        self.config = config or LocalConfig()
        self._started: list[Any] = []
        self._output: contextlib.AbstractContextManager[None] | None = None

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()  # whatever had started (the moto server, above all) goes too
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        config = self.config
        data = config.data_dir
        data.mkdir(parents=True, exist_ok=True)
        os.environ.update(config.function_environment())  # the handlers read it at import, as on Lambda
        self._output = function_output_to(data / "logs" / "functions.log")
        self._output.__enter__()

        moto = MotoServer(host=config.backend_host, port=config.aws_port, log_path=data / "logs" / "moto.log")
        moto.start()
        self._started.append(moto)
        create_storage(config)
        snapshot = Snapshot(
            root=data / "state", s3=client("s3", config), dynamodb=client("dynamodb", config),
            bucket=config.bucket, table=config.table,
        )  # fmt: skip
        objects, items = snapshot.restore()
        logger.info("restored %d objects and %d registry items from %s", objects, items, data)
        queues = enable_events(config)  # after the restore, so restored uploads trigger nothing

        snapshotter = Snapshotter(snapshot, interval=config.snapshot_seconds)
        runner = JobRunner(
            s3=client("s3", config), events=client("events", config), data_dir=data, region=config.region
        )
        processing = ProcessingRunner(
            s3=client("s3", config), events=client("events", config), data_dir=data, region=config.region
        )
        api = SageMakerServer(
            runner, host=config.backend_host, port=config.sagemaker_port, processing=processing
        )
        api.start()
        runner.start()
        processing.start()
        self._started += [snapshotter, api, runner, processing]

        functions = functions_from_template(function_handlers(load_template()), region=config.region)
        dispatcher = Dispatcher(client("sqs", config), queues, functions, on_delivered=snapshotter.changed)
        dispatcher.start()
        gateway = GatewayServer(
            _SignallingFunction(functions["ApiFunction"], snapshotter.changed),
            host=config.host,
            port=config.api_port,
        )
        gateway.start()
        snapshotter.start()
        self._started += [dispatcher, gateway]

    def stop(self) -> None:
        """Stop in reverse order; the snapshotter's stop makes a last save before moto goes."""
        while self._started:
            part = self._started.pop()
            try:
                part.stop()
            except Exception:
                logger.warning("stopping %s failed", type(part).__name__, exc_info=True)
        if self._output is not None:
            self._output.__exit__(None, None, None)
            self._output = None
