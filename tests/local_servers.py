"""
The servers the test command uses without being told: PostgreSQL, MariaDB
(or MySQL) and Redis on this machine's default ports, as a user that needs no
password (PostgreSQL's "postgres" or yours, MariaDB's "root").

A server whose variable is in the environment (POSTGRES_HOST, MYSQL_HOST,
REDIS_URL; "" for none) is left as configured, and SQL_SESSIONS_TEST_LOCAL=0
looks for none. What was found, and why the others were not, is exported
with the servers' variables (FOUND), so that the summary can say so and the
processes a run starts do not look again.

Standard library only, speaking just enough of each server's protocol to log
in: noxfile.py asks before any driver is installed (it installs mysqlclient
for a MariaDB found here), and tests/settings.py when pytest runs without nox.
"""

from __future__ import annotations

import dataclasses
import getpass
import importlib.util
import json
import socket
import struct
from collections.abc import Callable, Mapping
from typing import BinaryIO

HOST = "127.0.0.1"
# A server on this machine answers at once; nothing there is refused at once.
TIMEOUT = 1.0
FOUND = "SQL_SESSIONS_TEST_LOCAL_FOUND"
SWITCH = "SQL_SESSIONS_TEST_LOCAL"


@dataclasses.dataclass(frozen=True)
class Server:
    name: str  # as in the summary and SQL_SESSIONS_TEST_REQUIRE
    variable: str  # the one that configures it
    port: int
    driver: str  # the module tests/settings.py needs to use it


SERVERS = (
    Server("postgresql", "POSTGRES_HOST", 5432, "psycopg"),
    Server("mysql", "MYSQL_HOST", 3306, "MySQLdb"),
    Server("redis", "REDIS_URL", 6379, "redis"),
)


def find(environ: Mapping[str, str], *, need_drivers: bool) -> dict[str, str]:
    """
    The variables for the servers found here that the environment does not
    configure, and FOUND; nothing if they were looked for already or
    SQL_SESSIONS_TEST_LOCAL is 0. With need_drivers, a server whose driver
    is not installed is left out.
    """
    if environ.get(SWITCH, "1") == "0" or FOUND in environ:
        return {}
    variables: dict[str, str] = {}
    found: dict[str, str] = {}
    missed: dict[str, str] = {}
    for server in SERVERS:
        if server.variable in environ:
            continue
        where = f"{HOST}:{server.port}"
        try:
            user = PROBES[server.name](server.port)
        except (OSError, ValueError, IndexError, struct.error):
            missed[server.name] = f"nothing answers on {where}"
            continue
        if user is None:
            missed[server.name] = f"{where} answers, but not to a user without a password"
        elif need_drivers and importlib.util.find_spec(server.driver) is None:
            missed[server.name] = f"{where} answers, but {server.driver} is not installed"
        elif server.name == "redis":
            variables["REDIS_URL"] = f"redis://{where}/0"
            found[server.name] = f"found on {where}"
        else:
            prefix = server.variable.removesuffix("_HOST")
            variables.update(
                {server.variable: HOST, f"{prefix}_PORT": str(server.port), f"{prefix}_USER": user}
            )
            found[server.name] = f"found on {where} as {user!r}"
    return {**variables, FOUND: json.dumps({"found": found, "missed": missed})}


def drop(variables: Mapping[str, str], name: str, why: str) -> dict[str, str]:
    """find()'s variables without a server found after all unusable, and why."""
    server = next(server for server in SERVERS if server.name == name)
    prefix = server.variable.removesuffix("_HOST")
    kept = {
        variable: value
        for variable, value in variables.items()
        if variable not in (server.variable, f"{prefix}_PORT", f"{prefix}_USER")
    }
    found, missed = found_here(variables), missed_here(variables)
    found.pop(name, None)
    missed[name] = why
    return {**kept, FOUND: json.dumps({"found": found, "missed": missed})}


def found_here(environ: Mapping[str, str]) -> dict[str, str]:
    """The servers found here, by name: where."""
    return dict(json.loads(environ.get(FOUND, "{}")).get("found", {}))


def missed_here(environ: Mapping[str, str]) -> dict[str, str]:
    """The servers looked for and not used, by name: why."""
    return dict(json.loads(environ.get(FOUND, "{}")).get("missed", {}))


def _exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise ValueError("the server closed the connection")
    return data


def _postgresql(port: int) -> str | None:
    """The first of 'postgres' and the current user that PostgreSQL lets in without a password."""
    for user in dict.fromkeys(["postgres", getpass.getuser()]):
        if _postgresql_lets_in(port, user):
            return user
    return None


def _postgresql_lets_in(port: int, user: str) -> bool:
    # The startup message of protocol 3.0, then the server's answers until it
    # is ready for a query (in) or sends an error or asks for a password.
    params = b"user\0" + user.encode() + b"\0database\0postgres\0\0"
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
        sock.sendall(struct.pack("!ii", 8 + len(params), 3 << 16) + params)
        with sock.makefile("rb") as stream:
            while True:
                kind = _exactly(stream, 1)
                (length,) = struct.unpack("!i", _exactly(stream, 4))
                body = _exactly(stream, length - 4)
                if kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                    return False  # a password (or another proof) is asked for
                if kind == b"E":
                    return False
                if kind == b"Z":
                    sock.sendall(b"X\0\0\0\4")  # Terminate
                    return True


def _mysql_packet(stream: BinaryIO) -> tuple[int, bytes]:
    header = _exactly(stream, 4)
    return header[3], _exactly(stream, int.from_bytes(header[:3], "little"))


def _mysql_send(sock: socket.socket, sequence: int, payload: bytes) -> None:
    sock.sendall(len(payload).to_bytes(3, "little") + bytes([sequence % 256]) + payload)


def _mysql(port: int) -> str | None:
    """'root' if MariaDB or MySQL lets it in without a password."""
    # The client's half of the handshake (protocol 4.1), with an empty
    # password, whose answer is empty in every authentication plugin.
    capabilities = 0x1 | 0x200 | 0x8000 | 0x80000  # long password, 4.1, secure, plugin auth
    with (
        socket.create_connection((HOST, port), timeout=TIMEOUT) as sock,
        sock.makefile("rb") as stream,
    ):
        sequence, greeting = _mysql_packet(stream)
        if greeting[:1] != b"\x0a":
            return None  # an error packet: this host is not let in
        response = (
            struct.pack("<IIB23x", capabilities, 1 << 24, 33) + b"root\0\0mysql_native_password\0"
        )
        _mysql_send(sock, sequence + 1, response)
        sequence, reply = _mysql_packet(stream)
        if reply[:1] == b"\xfe":  # switch to the account's plugin: still empty
            _mysql_send(sock, sequence + 1, b"")
            sequence, reply = _mysql_packet(stream)
        if reply[:1] != b"\x00":
            return None
        _mysql_send(sock, 0, b"\x01")  # COM_QUIT
        return "root"


def _redis(port: int) -> str | None:
    """'' if Redis answers PING without a password."""
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
        sock.sendall(b"PING\r\n")
        answer = sock.recv(64)
        if not answer:
            raise ValueError("the server closed the connection")
        return "" if answer.startswith(b"+PONG") else None


# Each asks the server on a port of HOST, and returns the user it lets in
# without a password ('' for Redis), or None; OSError when nothing answers.
PROBES: dict[str, Callable[[int], str | None]] = {
    "postgresql": _postgresql,
    "mysql": _mysql,
    "redis": _redis,
}
