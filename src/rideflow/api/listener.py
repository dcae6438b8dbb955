"""Several API processes on one port (`rideflow up --api-workers N`): each binds the port itself
with `SO_REUSEPORT`, and the kernel spreads incoming connections over them.

The other way, one listening socket bound by the supervisor and inherited by every API process
(uvicorn's own `--workers` shape), was measured against it on this 2-core machine with figure
1's load (32 keep-alive connections opened at once, then closed loop), 2 API processes:

- inherited socket: on the first run after a start, all 32 connections went to one process in 3
  starts out of 3 (CPU 0 % / 97 %, 0 / 58, 0 / 96): every process is woken for a connection
  that arrives, the first to run accepts everything queued (uvloop accepts until the queue is
  empty), and a keep-alive connection stays where it landed. Throughput was one process's
  (3,392 req/s, against 3,612-3,957 for a single process in the same run);
- `SO_REUSEPORT`: the kernel picks the process by a hash of the connection's addresses, so the
  split does not depend on who wakes first: CPU 80 / 73, 73 / 73, 43 / 49, 43 / 43, 48 / 52 % in
  five runs, 4,832 and 5,160 req/s on the quiet machine (the others ran while other work took
  ~40 % of it).

The costs of `SO_REUSEPORT`, accepted: a connection waiting in the queue of a process that dies
is reset rather than taken by another (`rideflow up` stops everything when one part dies
anyway), and any process of the same user may bind the port too (`rideflow up` checks that the
port is free before it starts).
"""

from __future__ import annotations

import socket
import sys

from rideflow.config import Settings

PROCESS_HEADER = "x-rideflow-process"
"""Names the API process that answered (`api-2`) when it was given a name (`rideflow up` does):
which of the processes sharing the port took the connection. A constant header uvicorn writes
with its own; nothing is computed per request."""
BACKLOG = 2048
"""uvicorn's own default listen backlog."""


def bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """This process's listening socket (with `reuse_port`, on a port others bind as well)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def serve(settings: Settings, sock: socket.socket, name: str | None) -> None:
    """Serve the API on `sock` until stopped, as `uvicorn.run` would (exit 3 when it could not
    start)."""
    import uvicorn

    from rideflow.api.serving import server_options

    config = uvicorn.Config(
        "rideflow.api.app:create_app",
        factory=True,
        headers=[(PROCESS_HEADER, name)] if name else [],
        backlog=BACKLOG,
        **server_options(settings),
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE
