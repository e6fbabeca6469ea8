"""`alpaca-data eval rate` stays blind and per rater: placements keyed by a secret kept beside the journal (never
sent), every rater call carrying that rater's own token, bodies capped, no cross-site writes. A real uvicorn server
on 127.0.0.1 in a thread (`serving`), a real store and journal; raw sockets where a client misbehaves."""
from __future__ import annotations

import json
import socket
import stat
import time
from pathlib import Path

from alpaca_data.eval.rating import _seeded_int
from alpaca_data.eval.rating_journal import secret_path
from alpaca_data.generate.journal import read_journal
from alpaca_data.store import Store
from tests.test_eval_rate import Client, Outputs, open_session, outputs, serving  # noqa: F401

RATERS = ["ann", "bob"]


def placements(session) -> dict[tuple[str, str], str]:
    return {(rater, key): session.placement(rater, key) for rater in RATERS for key in session.keys}


def seed_placement(seed: int, rater: str, key: str) -> str:
    """The placement every journal used before this change: computable by anyone who knows the seed."""
    return "12" if _seeded_int("side", seed, rater, key) % 2 == 0 else "21"


def test_placements_come_from_a_secret_beside_the_journal_never_sent_and_kept_on_resume(outputs):  # noqa: F811
    first = open_session(outputs, raters=RATERS, dataset="ratings-one")
    second = open_session(outputs, raters=RATERS, dataset="ratings-two")
    one, two = placements(first), placements(second)
    assert one != two, "two fresh sessions on the same comparison place the answers differently"
    assert one != {(r, k): seed_placement(0, r, k) for r, k in one}, "placements cannot be computed from the seed"
    assert {"12", "21"} == set(one.values())
    key_file = secret_path(first.journal.path)
    assert key_file.parent == first.journal.path.parent and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    secret = key_file.read_text().strip()
    assert len(bytes.fromhex(secret)) == 32

    with serving(first) as url:
        client = Client(url, {rater: first.token(rater) for rater in RATERS})
        page = client.base + "/"
        for rater in RATERS:
            state = client.state(rater)
            for _ in range(3):
                state = client.judge(rater, state["item"]["id"], "left")
        client.ok("/api/config")
        import urllib.request

        texts = [*client.seen, urllib.request.urlopen(page, timeout=30).read().decode()]
    assert not any(secret in text or secret[:16] in text for text in texts), "the key is never sent"
    first.close()
    stored = [e for e in read_journal(first.journal.path) if e["type"] == "judgment"]
    assert secret not in first.journal.path.read_text()

    resumed = open_session(outputs, raters=RATERS, dataset="ratings-one")
    assert placements(resumed) == one, "a resumed session keeps its placements"
    assert all(e["order"] == one[(e["rater"], e["item"])] for e in stored)
    resumed.close()
    second.close()


def test_a_journal_from_before_keeps_its_seed_placements_and_a_lost_key_is_refused(outputs):  # noqa: F811
    session = open_session(outputs, raters=RATERS, dataset="old-ratings", seed=5)
    session.close()
    path, identity = session.journal.path, session.identity
    key = session.keys[0]
    old = [{"type": "start", "time": 1.0, "pid": 1, "identity": identity},  # no "placements": made before
           {"type": "judgment", "time": 2.0, "pid": 1, "rater": "ann", "item": key, "choice": "left",
            "order": seed_placement(5, "ann", key), "preference": 1, "at": "2025-01-01T00:00:00+00:00"}]
    path.write_text("".join(json.dumps(entry) + "\n" for entry in old))
    secret_path(path).unlink()

    resumed = open_session(outputs, raters=RATERS, dataset="old-ratings", seed=5)
    assert placements(resumed) == {(r, k): seed_placement(5, r, k) for r in RATERS for k in resumed.keys}
    with serving(resumed) as url:  # the key made on resume serves the tokens
        assert Client(url, {"ann": resumed.token("ann")}).state("ann")["done"] == 1
    resumed.close()

    fresh = open_session(outputs, raters=RATERS, dataset="new-ratings")
    fresh.close()
    secret_path(fresh.journal.path).unlink()
    try:
        open_session(outputs, raters=RATERS, dataset="new-ratings")
    except Exception as error:  # noqa: BLE001 - the message is what matters
        assert "key of this rating journal is missing" in str(error)
    else:
        raise AssertionError("a journal with keyed placements resumed without its key")


def test_every_rater_call_needs_that_raters_token(outputs):  # noqa: F811
    session = open_session(outputs, raters=RATERS)
    ann, bob = session.token("ann"), session.token("bob")
    with serving(session) as url:
        client = Client(url)
        item = session.sequence("ann")[0]
        calls = [("/api/state?rater=ann", None), ("/api/judge", {"rater": "ann", "item": item, "choice": "tie"}),
                 ("/api/undo", {"rater": "ann"}), ("/api/commit", {})]
        for path, body in calls:
            status, answer = client.call(path, body, token="")
            assert status == 401 and "token" in answer["error"], (path, status, answer)
            status, answer = client.call(path, body, token="not-a-token")
            assert status == 401, (path, status, answer)
        for path, body in calls[:3]:
            status, answer = client.call(path, body, token=bob)
            assert status == 403 and answer == {"error": "this token belongs to another rater"}, (path, answer)
        assert client.call("/api/raters", {"rater": "mallory"})[0] == 403, "listed raters only, by their links"
        assert client.call("/api/state?rater=ann", token=ann)[0] == 200
        status, judged = client.call("/api/judge", {"rater": "ann", "item": item, "choice": "tie"}, token=ann)
        assert status == 200 and judged["done"] == 1 and set(judged) == {"rater", "done", "total", "finished",
                                                                         "can_undo", "item"}
        assert client.call("/api/undo", {"rater": "ann"}, token=ann)[0] == 200
        assert client.call("/api/commit", {}, token=bob)[0] == 200
    session.close()
    assert [e["type"] for e in read_journal(session.journal.path)] == ["start", "judgment", "undo"]


def test_a_typed_name_belongs_to_the_browser_that_claimed_it_across_restarts(outputs):  # noqa: F811
    session = open_session(outputs)  # no --raters
    with serving(session) as url:
        zoe, other = Client(url), Client(url)
        token = zoe.claim("Zoë K")
        other.claim("Omar")
        status, answer = other.call("/api/raters", {"rater": "Zoë K"})
        assert status == 409 and "taken" in answer["error"]
        assert other.call("/api/state?rater=Zo%C3%AB%20K", token="")[0] == 401
        assert other.call("/api/state?rater=Zo%C3%AB%20K", token=other.tokens["Omar"])[0] == 403
        assert other.call("/api/state?rater=nobody", token=other.tokens["Omar"])[0] == 403
        zoe.judge("Zoë K", zoe.state("Zoë K")["item"]["id"], "right")
    session.close()
    again = open_session(outputs)
    with serving(again) as url:
        client = Client(url, {"Zoë K": token})
        assert client.state("Zoë K")["done"] == 1, "the browser's token still works after a restart"
        assert client.call("/api/raters", {"rater": "Zoë K"})[0] == 409, "and the name is still taken"
    again.close()
    rows = Store.open(outputs.store_root).read_records(again.commit().manifest)
    assert [row["annotator"] for row in rows] == ["Zoë K"]


def raw_request(url: str, head: str, body: bytes = b"", timeout: float = 10) -> bytes:
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode() + body)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionError, TimeoutError):
            pass
    return data


def test_bodies_are_capped_and_writes_come_from_the_page_only(outputs):  # noqa: F811
    session = open_session(outputs, raters=RATERS)
    ann = session.token("ann")
    with serving(session) as url:
        client = Client(url, {"ann": ann})
        host = url.removeprefix("http://").rstrip("/")
        big = json.dumps({"rater": "ann", "item": "x" * 200_000, "choice": "tie"}).encode()
        status, answer = client.call("/api/judge", raw=big)
        assert status == 413 and "64 KiB" in answer["error"]
        started = time.monotonic()  # 200 MB announced, none sent: refused at once, nothing read
        head = (f"POST /api/judge HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {ann}\r\nContent-Length: {200 * 1024 * 1024}\r\n\r\n")
        answer = raw_request(url, head)
        assert answer.startswith(b"HTTP/1.1 413") and b'"error"' in answer and time.monotonic() - started < 5
        chunked = head.replace(f"Content-Length: {200 * 1024 * 1024}", "Transfer-Encoding: chunked")
        answer = raw_request(url, chunked, b"%x\r\n%s\r\n" % (100_000, b" " * 100_000))  # never finished
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]

        item = session.sequence("ann")[0]
        body = json.dumps({"rater": "ann", "item": item, "choice": "tie"}).encode()
        import urllib.error
        import urllib.request

        for headers, expected in (({"Content-Type": "text/plain"}, 415),
                                  ({"Content-Type": "application/json", "Origin": "https://evil.example"}, 403),
                                  ({"Content-Type": "application/json", "Origin": url.rstrip("/")}, 200)):
            request = urllib.request.Request(url + "api/judge", data=body, method="POST",
                                             headers={"Authorization": f"Bearer {ann}", **headers})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            assert status == expected, (headers, status)
    session.close()
    assert [e["type"] for e in read_journal(session.journal.path)] == ["start", "judgment"]


def test_the_secret_file_is_not_in_the_annotations_revision(outputs: Outputs, tmp_path: Path):  # noqa: F811
    session = open_session(outputs, raters=RATERS)
    with serving(session) as url:
        client = Client(url, {"ann": session.token("ann")})
        client.judge("ann", client.state("ann")["item"]["id"], "tie")
    session.close()
    manifest = session.commit().manifest
    secret = secret_path(session.journal.path).read_text().strip()
    assert secret not in json.dumps(manifest.data) and secret not in json.dumps(
        Store.open(outputs.store_root).read_records(manifest))
