"""The service's listening socket, bound before the service starts.

Binding first means a busy port is reported at once with its own exit code (before the data
directory is locked or a worker started), and the service's "started" line is logged only once
the port already accepts connections (they queue in the backlog until the app is ready).
"""

from __future__ import annotations

import errno
import socket

from overlord.errors import ConfigError

BACKLOG = 2048


class PortInUse(ConfigError):
    """The port is already in use."""


def bind_listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; ``PortInUse`` or ``ConfigError`` saying why not."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"Cannot listen on {host}:{port}: unknown address ({exc.strerror})") from None
    # "localhost" may resolve to ::1 first: prefer IPv4, which clients of 127.0.0.1 reach
    family, kind, proto, _name, address = sorted(infos, key=lambda info: info[0] != socket.AF_INET)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"Port {port} on {host} is already in use (another Overlord, or a Druid Overlord?); "
                "stop it, or pick another port with --port or druid.plaintextPort"
            ) from None
        raise ConfigError(f"Cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(False)
    return sock
