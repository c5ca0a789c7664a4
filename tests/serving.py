"""Serving the app for tests: uvicorn in a background thread on a free 127.0.0.1 port.

Bind the socket first (``free_socket``) and hand it to uvicorn: no race for the port, and the
caller knows the port before it builds the app's settings (``base_url``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def free_socket() -> socket.socket:
    """A socket bound to a free port on 127.0.0.1 (``sock.getsockname()[1]``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def uvicorn_thread(app: Any, sock: socket.socket, *, unstick: Callable[[], None] | None = None
                   ) -> Iterator[uvicorn.Server]:
    """Serve ``app`` on ``sock`` in a daemon thread (no lifespan) until the block ends.

    WebSockets use the sans-I/O websockets implementation (the legacy one warns on import,
    which fails tests under ``-W error``). ``unstick`` is called, over and over, if the server
    does not stop within 10 s (a test of a regression that wedges the server frees what it
    waits on, e.g. ends its database sessions, instead of hanging the teardown)."""
    config = uvicorn.Config(app, log_level="warning", ws="websockets-sansio", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        deadline = time.monotonic() + 60
        while unstick is not None and thread.is_alive() and time.monotonic() < deadline:
            unstick()
            thread.join(timeout=0.5)
        sock.close()
