"""The listening socket a server (or each of its workers) binds, and the URL it answers on."""

from __future__ import annotations

import socket

from mlopsctl.errors import MlopsError


def bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to host:port (IPv6 when the host has a colon); with ``reuse_port``,
    SO_REUSEPORT, so that other sockets (workers, the next server) can bind the same port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise MlopsError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            "pick another --port (0 picks a free one) or stop what is using it",
        ) from None
    return sock


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
