"""`alpaca-train serve` refuses what a hostile page or client sends: cross-site writes, bodies over the cap (read
no further than the cap, chunked too), JSON that broke the server, slow clients; and it shows no paths of its
machine. A real server process on 127.0.0.1 with the tiny trained checkpoint, raw sockets and real HTTP.
The shared helper (`alpaca_data.web`) is also run on its own under uvicorn, for the connection cap."""
from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from alpaca_data.web import BadJSON, Guard, parse_json, server_config
from tests.serve_fixtures import ServeProcess, trained_checkpoint  # noqa: F401

KEY = "sk-web-security-key-7"
HEADER_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def server(trained_checkpoint, tmp_path_factory):  # noqa: F811
    flags = tmp_path_factory.mktemp("web-flags") / "flags.jsonl"
    with ServeProcess(trained_checkpoint.path, "--moderation", "none", "--watermark", "off", "--api-key-env", "KEY",
                      "--flags-file", flags, "--header-timeout", str(HEADER_TIMEOUT), "--max-tokens", "16",
                      env={"KEY": KEY}) as process:
        process.flags_file = flags
        process.model = httpx.get(process.base_url + "/v1/models", headers=auth(), timeout=30).json()["data"][0]["id"]
        yield process


def auth(**headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}", **headers}


def post(server, path: str, content: bytes | str, **headers: str) -> httpx.Response:
    return httpx.post(server.base_url + path, content=content, headers=auth(**headers), timeout=60)


def address(server) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def assert_openai_error(response: httpx.Response, status: int, needle: str = "") -> None:
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and needle in error["message"], error


def flag_body(answer: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": "hi"}], "answer": answer, "reason": "incorrect"})


def test_cross_site_writes_are_refused(server):
    own = server.base_url
    refused = [
        (post(server, "/api/flags", flag_body("planted by text/plain"), **{"Content-Type": "text/plain"}), 415),
        (post(server, "/api/flags", flag_body("planted by a form"),
              **{"Content-Type": "application/x-www-form-urlencoded"}), 415),
        (post(server, "/api/flags", flag_body("planted cross-site"), **{"Content-Type": "application/json",
                                                                        "Origin": "https://evil.example"}), 403),
        (post(server, "/api/flags", flag_body("planted from a null origin"),
              **{"Content-Type": "application/json", "Origin": "null"}), 403),
        (post(server, "/api/flags", flag_body("planted from another port"),
              **{"Content-Type": "application/json", "Origin": own.rsplit(":", 1)[0] + ":1"}), 403),
        (post(server, "/api/flags", flag_body("planted by DNS rebinding"), **{
            "Content-Type": "application/json", "Origin": "http://rebound.example:80", "Host": "rebound.example"}), 403),
        (post(server, "/v1/chat/completions", json.dumps({"model": server.model, "messages": [
            {"role": "user", "content": "hi"}]}), **{"Content-Type": "text/plain"}), 415),
    ]
    for response, status in refused:
        assert_openai_error(response, status)
    # a script (no Origin) and the server's own page (its own Origin) are served
    assert post(server, "/api/flags", flag_body("from a script"), **{"Content-Type": "application/json"}).is_success
    assert post(server, "/api/flags", flag_body("from the page"), **{"Content-Type": "application/json; charset=utf-8",
                                                                     "Origin": own}).is_success
    answers = [json.loads(line)["answer"] for line in server.flags_file.read_text(encoding="utf-8").splitlines()]
    assert answers == ["from a script", "from the page"]


@contextlib.contextmanager
def raw_socket(server, timeout: float = 10) -> Iterator[socket.socket]:
    sock = socket.create_connection(address(server), timeout=timeout)
    try:
        yield sock
    finally:
        sock.close()


def read_response(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionError, TimeoutError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def request_head(server, path: str, **headers: str) -> bytes:
    host, port = address(server)
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Authorization: Bearer {KEY}",
             "Content-Type: application/json", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_bodies_over_the_cap_are_refused_before_and_while_they_are_read(server):
    # a 300 MB Content-Length is refused at once, without waiting for (or reading) any of it
    with raw_socket(server) as sock:
        sock.sendall(request_head(server, "/v1/completions", **{"Content-Length": str(300 * 1024 * 1024)}))
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 413") and b"invalid_request_error" in answer, answer[:300]
    assert b"connection: close" in answer.lower()

    # a chunked body is read up to the cap, then refused while the client is still sending
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * (64 * 1024))
    sent, answer = 0, b""
    with raw_socket(server) as sock:
        sock.sendall(request_head(server, "/v1/completions", **{"Transfer-Encoding": "chunked"}))
        try:
            while sent < 64 * 1024 * 1024 and not select.select([sock], [], [], 0)[0]:
                sock.sendall(chunk)
                sent += 64 * 1024
        except ConnectionError:
            pass  # the server closed the connection: it reads no further
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 413") and b"over 1 MiB" in answer, answer[:300]
    assert sent < 64 * 1024 * 1024, "refused before the (never finished) body ended"
    assert_openai_error(post(server, "/v1/completions", b"x" * (1024 * 1024 + 1),
                             **{"Content-Type": "application/json"}), 413)


def test_hostile_json_and_edge_values_are_4xx_or_answers_never_500(server):
    json_headers = {"Content-Type": "application/json"}
    deep = post(server, "/v1/chat/completions", b"[" * 100_000 + b"]" * 100_000, **json_headers)
    assert_openai_error(deep, 400, "nested")
    deep_object = post(server, "/api/flags", ('{"a":' * 1000) + "1" + "}" * 1000, **json_headers)
    assert_openai_error(deep_object, 400, "nested")
    surrogate = post(server, "/v1/completions", '{"model": "%s", "prompt": "hi \\ud800"}' % server.model,
                     **json_headers)
    assert_openai_error(surrogate, 400, "surrogate")
    chat = post(server, "/v1/chat/completions", '{"model": "%s", "messages": [{"role": "user", "content": '
                '"\\udfff"}]}' % server.model, **json_headers)
    assert_openai_error(chat, 400, "surrogate")
    flag = post(server, "/api/flags", '{"answer": "\\ud83d", "reason": "incorrect"}', **json_headers)
    assert_openai_error(flag, 400, "surrogate")
    assert_openai_error(post(server, "/v1/completions", b"\xff\xfe{}", **json_headers), 400, "not valid JSON")

    for body in ({"model": server.model, "prompt": "", "max_tokens": 4},
                 {"model": server.model, "prompt": "The sky is", "max_tokens": 4, "temperature": 1e-300},
                 {"model": server.model, "prompt": "The sky is", "max_tokens": 4, "temperature": 5e-324}):
        answer = post(server, "/v1/completions", json.dumps(body), **json_headers)
        assert answer.status_code == 200, (body, answer.text)
        assert answer.json()["usage"]["completion_tokens"] >= 1
    greedy = {"model": server.model, "prompt": "The sky is", "max_tokens": 4}
    texts = {post(server, "/v1/completions", json.dumps({**greedy, "temperature": t}), **json_headers)
             .json()["choices"][0]["text"] for t in (0, 1e-300)}
    assert len(texts) == 1, "a vanishing temperature decodes greedily"
    assert "Traceback" not in server.log and "internal error" not in server.log, server.log


def test_slow_clients_are_cut_off_and_do_not_stall_others(server):
    host, port = address(server)
    partial = f"GET /api/info HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer".encode()
    slow: list[socket.socket] = []
    try:
        for _ in range(200):
            sock = socket.create_connection((host, port), timeout=10)
            sock.sendall(partial)  # headers never finished
            slow.append(sock)
        started = time.monotonic()
        answer = httpx.get(server.base_url + "/api/info", headers=auth(), timeout=10)
        assert answer.status_code == 200 and time.monotonic() - started < 2, "200 slow sockets stall nobody"

        trickle = socket.create_connection((host, port), timeout=10)
        slow.append(trickle)
        closed_after = None
        started = time.monotonic()
        for byte in partial + b" x\r\nX-Slow: " + b"a" * 200:  # a byte every 50 ms: never a complete header block
            try:
                trickle.sendall(bytes([byte]))
            except ConnectionError:
                closed_after = time.monotonic() - started
                break
            if select.select([trickle], [], [], 0.05)[0] and trickle.recv(1) == b"":
                closed_after = time.monotonic() - started
                break
        assert closed_after is not None and closed_after < HEADER_TIMEOUT + 3, "trickling does not extend the time"

        deadline = time.monotonic() + HEADER_TIMEOUT + 5
        open_ones = list(slow[:-1])
        while open_ones and time.monotonic() < deadline:
            readable = select.select(open_ones, [], [], 0.2)[0]
            for sock in readable:
                with contextlib.suppress(ConnectionError):
                    if sock.recv(1) != b"":
                        continue
                open_ones.remove(sock)
        assert not open_ones, f"{len(open_ones)} slow-header sockets still open after {HEADER_TIMEOUT + 5} s"
    finally:
        for sock in slow:
            sock.close()
    assert httpx.get(server.base_url + "/api/info", headers=auth(), timeout=10).status_code == 200


def test_info_and_models_show_names_not_paths_and_only_the_page_is_open(server, trained_checkpoint):  # noqa: F811
    folder = trained_checkpoint.path.resolve()
    for path in ("/api/info", "/v1/models"):
        text = httpx.get(server.base_url + path, headers=auth(), timeout=30).text
        assert str(folder.parent) not in text and str(trained_checkpoint.path.parent) not in text, text
        assert "/" + folder.name not in text and folder.name in text
    lineage = httpx.get(server.base_url + "/api/info", headers=auth(), timeout=30).json()["lineage"]
    assert lineage["checkpoint"] == folder.name and lineage["output_dir"] == folder.name
    assert lineage["dataset"]["revision_id"] == trained_checkpoint.revision_id
    for method, path in (("GET", "/api/info"), ("GET", "/api/stats"), ("GET", "/v1/models"),
                         ("GET", f"/v1/models/{server.model}"), ("POST", "/v1/completions"),
                         ("POST", "/v1/chat/completions"), ("POST", "/v1/watermark/detect"), ("POST", "/api/flags")):
        response = httpx.request(method, server.base_url + path, content=b"{}",
                                 headers={"Content-Type": "application/json"}, timeout=30)
        assert_openai_error(response, 401)
    assert httpx.get(server.base_url + "/", timeout=30).status_code == 200


# ---------------------------------------------------------------------------- the helper on its own


def test_parse_json_refuses_what_would_break_the_code_after_it():
    assert parse_json(b'{"a": [1, {"b": "\\u00e9"}]}') == {"a": [1, {"b": "é"}]}
    assert parse_json(json.dumps([[[["ok"]]]])) == [[[["ok"]]]]
    for raw, needle in ((b"[" * 100_000 + b"]" * 100_000, "nested"), (b"[" * 65 + b"]" * 65, "nested"),
                        (b'{"\\ud800": 1}', "surrogate"), (b'["a", "\\udc00b"]', "surrogate"),
                        (b"{nope", "not valid JSON"), (b"\xff\xfe", "not valid JSON")):
        with pytest.raises(BadJSON, match=needle):
            parse_json(raw)


async def tiny_app(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok %d" % len(body)})


@contextlib.contextmanager
def helper_server(max_connections: int) -> Iterator[str]:
    import uvicorn

    from alpaca_data.eval.rating import listen

    def error(status: int, message: str):
        from starlette.responses import PlainTextResponse

        return PlainTextResponse(message, status_code=status)

    sock = listen("127.0.0.1", 0)
    app = Guard(tiny_app, max_body=1024, error=error)
    server = uvicorn.Server(server_config(app, header_timeout=HEADER_TIMEOUT, max_connections=max_connections,
                                          log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


def test_the_connection_cap_answers_503_at_once_until_slow_clients_are_cut_off():
    with helper_server(max_connections=20) as url:
        port = int(url.rsplit(":", 1)[1])
        assert httpx.post(url, content=b"{}", headers={"Content-Type": "application/json"}).text == "ok 2"
        slow = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(25)]
        try:
            for sock in slow:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            started = time.monotonic()
            assert httpx.get(url, timeout=5).status_code == 503 and time.monotonic() - started < 2
            deadline = time.monotonic() + HEADER_TIMEOUT + 5
            status = 503
            while status == 503 and time.monotonic() < deadline:
                status = httpx.get(url, timeout=5).status_code
                if status == 503:
                    time.sleep(0.1)
            assert status == 200, "the cut-off slow clients freed their places"
        finally:
            for sock in slow:
                sock.close()
        # the same checks as the servers': a cross-site write, a foreign Host, a body past the cap (streamed)
        assert httpx.post(url, content=b"{}", headers={"Content-Type": "application/json",
                                                       "Origin": "http://evil.example"}).status_code == 403
        assert httpx.get(url, headers={"Host": "evil.example"}).status_code == 403
        assert httpx.post(url, content=iter([b" " * 600, b" " * 600]),
                          headers={"Content-Type": "application/json"}).status_code == 413
