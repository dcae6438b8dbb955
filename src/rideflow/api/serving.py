"""How uvicorn serves the app: the one set of server options `rideflow api` and the tests use."""

from __future__ import annotations

from typing import Any

from rideflow.config import Settings


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for RideFlow's API (`uvicorn.run` / `uvicorn.Config` keywords)."""
    return {
        "loop": "uvloop",
        "http": "httptools",
        "ws": "websockets-sansio",
        # A compressor and decompressor per socket (zlib state) for messages of a few hundred
        # bytes: off unless configured (figure 17 measures a socket's memory).
        "ws_per_message_deflate": settings.ws_compression,
        "ws_max_size": settings.ws_max_message_bytes,
        "access_log": False,
        # Client addresses are RideFlow's to derive, from its own trusted-proxy list: uvicorn
        # would otherwise believe X-Forwarded-For from any local peer.
        "proxy_headers": False,
        "log_level": "warning",
    }
