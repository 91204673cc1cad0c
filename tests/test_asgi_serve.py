"""dbos_asgi_serve over real HTTP: a uvicorn server on 127.0.0.1 (ephemeral port) runs in a
thread of the test, DBOS runs on SQLite, and httpx talks to the server.

The routes are declared at import time, as an application would, so this module registers
one DBOSASGI receiver for the whole test session.
"""

import re
import socket
import threading
import time
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import ASGIApp

from dbos_asgi_serve import DBOSASGI, AuthenticationError
from dbos_sdk import DBOS, DBOSConfig, DBOSConfigurationError

TOKENS = {"alice": ["admin", "user"], "bob": ["user"]}


async def authenticate(request: Request) -> tuple[str, list[str]] | None:
    """Bearer <user>: the test's whole identity provider."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    user = header.removeprefix("Bearer ")
    if user not in TOKENS:
        raise AuthenticationError(f"unknown token for {user!r}")
    return user, TOKENS[user]


api = DBOSASGI(authenticate=authenticate)
greet_runs: list[str] = []


@api.post("/greet")
@DBOS.workflow(name="asgi_test.greet")
def greet(name: str, times: int = 1, punctuation: str | None = None) -> dict[str, object]:
    greet_runs.append(name)
    time.sleep(0.2)  # long enough for concurrent duplicates to overlap
    return {
        "greeting": " ".join([f"hello {name}"] * times) + (punctuation or ""),
        "workflow_id": DBOS.workflow_id,
        "user": DBOS.authenticated_user,
    }


@api.get("/add/{a:int}")
@DBOS.workflow(name="asgi_test.add")
async def add(a: int, b: int, scale: float = 1.0, tags: list[str] | None = None) -> object:
    return {"sum": (a + b) * scale, "tags": tags}


@api.post("/admin")
@DBOS.workflow(name="asgi_test.admin_only")
@DBOS.required_roles(["admin"])
def admin_only(note: str) -> dict[str, object]:
    return {"note": note, "user": DBOS.authenticated_user, "role": DBOS.assumed_role}


@api.post("/fail")
@DBOS.workflow(name="asgi_test.fail")
def fail(reason: str) -> None:
    raise RuntimeError(f"secret detail: {reason}")


@api.get("/whoami")
def whoami() -> dict[str, object]:
    """Not a workflow: called directly, in the authenticated context."""
    return {"user": DBOS.authenticated_user, "roles": list(DBOS.authenticated_roles or [])}


@contextmanager
def uvicorn_server(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1, on a port the OS picks; yield the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def sqlite_config(tmp_path: Path) -> DBOSConfig:
    return DBOSConfig("asgi-test", system_database_url=f"sqlite:///{tmp_path}/sys.sqlite")


@pytest.fixture
def client(tmp_path: Path) -> Generator[httpx.Client, None, None]:
    """An HTTP client for api.app, served by uvicorn, with DBOS launched on SQLite."""
    greet_runs.clear()
    DBOS(sqlite_config(tmp_path))
    DBOS.launch()
    with uvicorn_server(api.app) as url, httpx.Client(base_url=url, timeout=20) as http:
        yield http
    DBOS.shutdown(workflow_timeout_s=2)


def test_post_runs_the_workflow_with_json_arguments_and_echoes_the_request_id(
    client: httpx.Client,
) -> None:
    r = client.post("/greet", json={"name": "ann", "times": 2}, headers={"x-request-id": "req-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["greeting"] == "hello ann hello ann"
    assert r.headers["x-request-id"] == "req-1"
    wfid = r.headers["dbos-workflow-id"]
    assert body["workflow_id"] == wfid
    status = DBOS.retrieve_workflow(wfid).get_status()
    assert status.status == "SUCCESS" and status.name == "asgi_test.greet"


def test_idempotency_key_is_the_workflow_id_and_concurrent_retries_run_it_once(
    client: httpx.Client,
) -> None:
    headers = {"dbos-idempotency-key": "order-42"}

    def call(_: int) -> httpx.Response:
        return client.post("/greet", json={"name": "bo"}, headers=headers)

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(call, range(4)))
    responses.append(call(5))  # a retry after the first finished
    assert [r.status_code for r in responses] == [200] * 5
    assert {r.headers["dbos-workflow-id"] for r in responses} == {"order-42"}
    assert all(r.json() == responses[0].json() for r in responses)
    assert responses[0].json()["workflow_id"] == "order-42"
    assert greet_runs == ["bo"]
    assert DBOS.retrieve_workflow("order-42").get_result() == responses[0].json()


def test_idempotency_key_of_another_functions_workflow_is_a_409(client: httpx.Client) -> None:
    headers = {"dbos-idempotency-key": "shared-key"}
    assert client.post("/greet", json={"name": "a"}, headers=headers).status_code == 200
    r = client.post(
        "/admin", json={"note": "n"}, headers={**headers, "authorization": "Bearer alice"}
    )
    assert r.status_code == 409, r.text
    assert DBOS.retrieve_workflow("shared-key").get_status().name == "asgi_test.greet"


def test_get_takes_path_and_query_arguments_converted_by_the_signature(
    client: httpx.Client,
) -> None:
    r = client.get("/add/2", params={"b": "3", "scale": "1.5", "tags": ["x", "y"]})
    assert r.status_code == 200, r.text
    assert r.json() == {"sum": 7.5, "tags": ["x", "y"]}
    assert client.get("/add/2", params={"b": "-1"}).json() == {"sum": 1.0, "tags": None}


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/greet", b"{not json", "not valid JSON"),
        ("/greet", b'["ann"]', "must be a JSON object"),
        ("/greet", b"{}", "needs argument 'name'"),
        ("/greet", b'{"name": "a", "colour": "red"}', "takes no argument 'colour'"),
        ("/greet", b'{"name": "a", "times": "two"}', "argument 'times' must be int"),
        ("/greet", b'{"name": "a", "times": true}', "argument 'times' must be int"),
        ("/greet", b'{"name": 7}', "argument 'name' must be str"),
        ("/greet", b'{"name": "a", "punctuation": 1}', "'punctuation' must be"),
        ("/greet?name=a", b'{"name": "b"}', "given twice"),
    ],
)
def test_bad_json_or_arguments_are_400_and_start_no_workflow(
    client: httpx.Client, path: str, body: bytes, message: str
) -> None:
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
    assert r.json()["request_id"] == r.headers["x-request-id"]
    assert greet_runs == []
    assert DBOS.list_workflows(name="asgi_test.greet") == []


def test_bad_query_arguments_are_400(client: httpx.Client) -> None:
    r = client.get("/add/2", params={"b": "three"})
    assert r.status_code == 400 and "argument 'b' must be int" in r.json()["error"]
    r = client.get("/add/2")
    assert r.status_code == 400 and "needs argument 'b'" in r.json()["error"]


def test_authentication_hook_feeds_the_authed_context_and_required_roles(
    client: httpx.Client,
) -> None:
    alice = {"authorization": "Bearer alice"}
    bob = {"authorization": "Bearer bob"}

    r = client.post("/greet", json={"name": "x"}, headers=alice)
    assert r.status_code == 200 and r.json()["user"] == "alice"
    status = DBOS.retrieve_workflow(r.headers["dbos-workflow-id"]).get_status()
    assert status.authenticated_user == "alice"
    assert list(status.authenticated_roles or []) == ["admin", "user"]

    r = client.post("/admin", json={"note": "hi"}, headers=alice)
    assert r.status_code == 200
    assert r.json() == {"note": "hi", "user": "alice", "role": "admin"}

    for headers in (bob, {}):
        r = client.post("/admin", json={"note": "hi"}, headers=headers)
        assert r.status_code == 403, r.text
        assert "admin" in r.json()["error"]
        assert "dbos-workflow-id" not in r.headers  # nothing was started

    r = client.post("/admin", json={"note": "hi"}, headers={"authorization": "Bearer eve"})
    assert r.status_code == 401 and "unknown token" in r.json()["error"]

    assert client.get("/whoami", headers=bob).json() == {"user": "bob", "roles": ["user"]}
    assert client.get("/whoami").json() == {"user": None, "roles": []}


def test_workflow_error_is_500_without_the_exception_text(client: httpx.Client) -> None:
    r = client.post("/fail", json={"reason": "db down"}, headers={"x-request-id": "req-500"})
    assert r.status_code == 500
    assert r.json() == {"error": "internal server error", "request_id": "req-500"}
    assert "secret" not in r.text
    assert r.headers["x-request-id"] == "req-500"
    status = DBOS.retrieve_workflow(r.headers["dbos-workflow-id"]).get_status()
    assert status.status == "ERROR"


def test_request_id_is_generated_when_absent_and_echoed_on_router_errors(
    client: httpx.Client,
) -> None:
    r = client.post("/greet", json={"name": "z"})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    r = client.get("/no-such-route", headers={"x-request-id": "req-404"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "req-404"
    r = client.get("/greet", headers={"x-request-id": "req-405"})
    assert r.status_code == 405 and r.headers["x-request-id"] == "req-405"


def test_routes_answer_503_until_dbos_is_launched(tmp_path: Path) -> None:
    DBOS(sqlite_config(tmp_path))
    with uvicorn_server(api.app) as url, httpx.Client(base_url=url, timeout=20) as http:
        r = http.get("/whoami")
        assert r.status_code == 503 and "not launched" in r.json()["error"]
        DBOS.launch()
        assert http.get("/whoami").status_code == 200
        DBOS.shutdown(workflow_timeout_s=2)
        assert http.get("/whoami").status_code == 503


def test_routes_mount_in_another_starlette_app(client: httpx.Client) -> None:
    outer = Starlette(routes=api.routes)
    with uvicorn_server(outer) as url:
        r = httpx.post(f"{url}/greet", json={"name": "m"}, headers={"x-request-id": "req-m"})
    assert r.status_code == 200 and r.json()["greeting"] == "hello m"
    assert r.headers["x-request-id"] == "req-m"


def test_bad_route_configuration_is_rejected_at_decoration() -> None:
    local = DBOSASGI(name="bad-config")
    with pytest.raises(DBOSConfigurationError, match="must be a string starting with '/'"):
        local.route("no-slash", methods=["GET"])(whoami)
    with pytest.raises(DBOSConfigurationError, match="must be a non-empty list"):
        local.route("/x", methods=[])(whoami)
    with pytest.raises(DBOSConfigurationError, match="already serves"):
        api.post("/greet")(whoami)
    with pytest.raises(DBOSConfigurationError, match="request_id_header"):
        DBOSASGI(request_id_header="bad header")
