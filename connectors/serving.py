"""Run an ASGI app under uvicorn on loopback in a background thread.

Used by the tests, the demo and the benchmarks to start our event API and the
PagerDuty-compatible server as real HTTP servers on a free port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn


@contextmanager
def serve_in_thread(
    app: object, host: str = "127.0.0.1", port: int = 0, **uvicorn_options: object
) -> Iterator[str]:
    """Serve `app` until the block exits; yields the base URL (port 0 picks a free port)."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", **uvicorn_options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{host}:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.01)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
