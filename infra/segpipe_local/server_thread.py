"""A local server in a background thread: the gateway and the SageMaker API both run this way."""

from __future__ import annotations

import threading

from werkzeug.serving import BaseWSGIServer, make_server

from segpipe_local.local_origin import WsgiApp, guard


class ServerThread:
    """`app` on a threaded WSGI server, served from a daemon thread named `name`. It answers its own
    page and clients outside a browser only: a foreign `Host` or a cross-site state-changing request
    gets a 403 before `app` runs (`segpipe_local.local_origin`)."""

    def __init__(self, app: WsgiApp, *, host: str, port: int, name: str) -> None:
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        guard(self._server, host=host)
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
