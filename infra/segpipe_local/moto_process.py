"""The local stack's moto server process (`python -m segpipe_local.moto_process -H HOST -p PORT`):
moto's own WSGI application behind the same guard as the gateway (`local_origin.LocalOnly`).

moto holds every object and item of the local stack and answers without credentials, so a page
whose DNS name is rebound to 127.0.0.1 could otherwise read it all; a foreign `Host`, and a
state-changing request that another site's page sends, are refused before moto sees them. SDK
clients send the loopback Host of their endpoint and no `Origin`, and the review page only loads
presigned previews with GET, so neither is affected.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType

from werkzeug.serving import run_simple

from segpipe_local.local_origin import LocalOnly, LocalOrigin, is_loopback


def _exit(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error(f"the moto server listens on loopback only, not {args.host}")
    os.environ.setdefault("MOTO_PORT", str(args.port))
    # moto's modules are imported here, not at the top: they are heavy, and only this process needs them
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    signal.signal(signal.SIGTERM, _exit)
    app = LocalOnly(DomainDispatcherApplication(create_backend_app), LocalOrigin(args.port, host=args.host))
    run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
