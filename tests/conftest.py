from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from openai_server import OpenAIServer

# =============================================================================================
# Model requests and the network (llm.py's fixtures)
#
# Every test runs with a fake OPENAI_API_KEY, without OPENAI_BASE_URL, and with TCP/IP
# connections to anything but loopback refused, so no test can reach a real provider.
# Unix sockets (the Docker engine at /var/run/docker.sock) are untouched.
# =============================================================================================

FAKE_OPENAI_KEY = "sk-test-not-a-real-key"
_INET_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def _is_local(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    host = host.strip("[]").split("%", 1)[0]  # IPv6 brackets and zone ids
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # any other host name would need DNS, which is the network too
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def _refuse(address: object) -> None:
    raise RuntimeError(f"tests must not reach the network (tried to connect to {address!r})")


@pytest.fixture(autouse=True)
def _block_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_OPENAI_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)

    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_create_connection = socket.create_connection

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if self.family in _INET_FAMILIES and not _is_local(address[0]):
            _refuse(address)
        real_connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in _INET_FAMILIES and not _is_local(address[0]):
            _refuse(address)
        return real_connect_ex(self, address)

    def guarded_create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        if not _is_local(address[0]):
            _refuse(address)
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "create_connection", guarded_create_connection)
    yield


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A started local OpenAI-compatible server; script it with `.script(...)`."""
    server = OpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


# =============================================================================================
# End of llm.py's fixtures
# =============================================================================================
