from __future__ import annotations

import dataclasses
import importlib.util
import socket
import threading
from collections.abc import Iterator

import pytest

from tests import local_servers
from tests.servers import free_port


def only(name: str, port: int) -> tuple[local_servers.Server, ...]:
    """SERVERS with just the named one, on another port."""
    server = next(s for s in local_servers.SERVERS if s.name == name)
    return (dataclasses.replace(server, port=port),)


@pytest.fixture
def answering(request: pytest.FixtureRequest) -> Iterator[int]:
    """A port of HOST where a server answers every connection with request.param."""
    listener = socket.create_server((local_servers.HOST, 0))
    listener.settimeout(0.05)
    port: int = listener.getsockname()[1]
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.sendall(request.param)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    stopping.set()
    thread.join()
    listener.close()


def test_turned_off_or_done_it_looks_for_nothing() -> None:
    assert local_servers.find({local_servers.SWITCH: "0"}, need_drivers=False) == {}
    assert local_servers.find({local_servers.FOUND: "{}"}, need_drivers=False) == {}


def test_a_server_the_environment_names_is_left_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[int] = []
    monkeypatch.setattr(local_servers, "PROBES", dict.fromkeys(local_servers.PROBES, asked.append))
    environ = {"POSTGRES_HOST": "", "MYSQL_HOST": "db.example", "REDIS_URL": "redis://x/0"}
    found = local_servers.find(environ, need_drivers=False)
    assert asked == []
    assert found == {local_servers.FOUND: '{"found": {}, "missed": {}}'}


def test_a_port_where_nothing_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setattr(local_servers, "SERVERS", only("postgresql", port))
    found = local_servers.find({}, need_drivers=False)
    assert "POSTGRES_HOST" not in found
    assert local_servers.missed_here(found) == {
        "postgresql": f"nothing answers on 127.0.0.1:{port}"
    }


@pytest.mark.parametrize("answering", [b"-NOAUTH Authentication required.\r\n"], indirect=True)
def test_a_redis_that_wants_a_password(monkeypatch: pytest.MonkeyPatch, answering: int) -> None:
    monkeypatch.setattr(local_servers, "SERVERS", only("redis", answering))
    found = local_servers.find({}, need_drivers=False)
    assert "REDIS_URL" not in found
    assert local_servers.missed_here(found) == {
        "redis": f"127.0.0.1:{answering} answers, but not to a user without a password"
    }


@pytest.mark.parametrize("answering", [b"+PONG\r\n"], indirect=True)
def test_a_redis_that_answers(monkeypatch: pytest.MonkeyPatch, answering: int) -> None:
    monkeypatch.setattr(local_servers, "SERVERS", only("redis", answering))
    found = local_servers.find({}, need_drivers=False)
    assert found["REDIS_URL"] == f"redis://127.0.0.1:{answering}/0"
    assert local_servers.found_here(found) == {"redis": f"found on 127.0.0.1:{answering}"}
    # Without its driver, when pytest runs (nox installs the drivers first).
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    found = local_servers.find({}, need_drivers=True)
    assert local_servers.missed_here(found) == {
        "redis": f"127.0.0.1:{answering} answers, but redis is not installed"
    }


@pytest.mark.parametrize("answering", [b"not a server we know"], indirect=True)
def test_a_port_that_speaks_another_protocol(
    monkeypatch: pytest.MonkeyPatch, answering: int
) -> None:
    monkeypatch.setattr(local_servers, "SERVERS", only("mysql", answering))
    found = local_servers.find({}, need_drivers=False)
    assert "MYSQL_HOST" not in found


def test_a_found_server_dropped_says_why() -> None:
    found = {
        "MYSQL_HOST": "127.0.0.1",
        "MYSQL_PORT": "3306",
        "MYSQL_USER": "root",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        local_servers.FOUND: '{"found": {"mysql": "found on 127.0.0.1:3306 as \'root\'", '
        '"redis": "found on 127.0.0.1:6379"}, "missed": {}}',
    }
    dropped = local_servers.drop(found, "mysql", "mysqlclient did not build")
    assert set(dropped) == {"REDIS_URL", local_servers.FOUND}
    assert local_servers.found_here(dropped) == {"redis": "found on 127.0.0.1:6379"}
    assert local_servers.missed_here(dropped) == {"mysql": "mysqlclient did not build"}
