"""`alpaca-data eval rate`: the rating API against a real uvicorn server (in a thread, or the real CLI in a
subprocess), a real store and its journal. The page itself is driven in Chromium in test_eval_rate_browser.py."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from alpaca_data.errors import UsageError
from alpaca_data.eval.annotations import ANNOTATION_FIELDS, commit_rows, output_record
from alpaca_data.eval.pairs import compare
from alpaca_data.eval.rating import RatingSession, build_app, listen, parse_raters, url_of
from alpaca_data.generate.journal import read_journal
from alpaca_data.store import Store
from tests.conftest import EVAL_DATA, run_cli, snapshot

PREDICTIONS = EVAL_DATA / "self_instruct_predictions"
GENERATORS = ("model-alpha", "model-beta")
DATASETS = ("answers-first-x7", "answers-second-y9")  # names no answer text contains (checked below)


@dataclass
class Outputs:
    """Two outputs revisions of the same items and everything that must stay hidden from raters."""

    store_root: Path
    refs: tuple[str, str]
    ids: tuple[str, str]
    by_text: dict[tuple[str, str], tuple[str, str]]  # (instruction, input) -> (output_1, output_2)

    @property
    def secrets(self) -> list[str]:
        return [*GENERATORS, *DATASETS, *self.ids, *(i[:12] for i in self.ids)]


def _predictions(name: str, count: int) -> list[dict]:
    with open(PREDICTIONS / name, encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(count), handle)]


def build_outputs(store_root: Path, count: int = 20) -> Outputs:
    """The first `count` items of Self-Instruct's 252 set, answered by text-davinci-003 and -001."""
    store = Store.open(store_root)
    ids = []
    for dataset, generator, source in zip(DATASETS, GENERATORS, ("text-davinci-003.jsonl", "text-davinci-001.jsonl")):
        rows = [output_record(instruction=r["instruction"], input=r["input"], output=r["response"],
                              generator=generator, item_id=f"user_oriented_task_{i}")
                for i, r in enumerate(_predictions(source, count))]
        result = commit_rows(store, dataset, rows, message=f"{generator} on 20 items",
                             recipe={"command": "eval import", "generator": generator})
        ids.append(result.id)
    records = [store.read_records(f"{dataset}@main") for dataset in DATASETS]
    by_text = {(a["instruction"], a["input"]): (a["output"], b["output"]) for a, b in zip(*records)}
    everything = json.dumps(records)
    assert not any(name in everything for name in (*DATASETS, *ids)), "pick dataset names no record contains"
    return Outputs(store_root, (f"{DATASETS[0]}@main", f"{DATASETS[1]}@main"), tuple(ids), by_text)


def shown_order(outputs: Outputs, item: dict) -> str | None:
    """"12" when the left answer the rater was shown is output_1's text (shown trimmed), "21" when output_2's;
    None when both read the same (one item of the 20 differs in whitespace only)."""
    output_1, output_2 = (text.strip() for text in outputs.by_text[(item["instruction"], item["input"])])
    assert {item["left"], item["right"]} == {output_1, output_2}
    if output_1 == output_2:
        return None
    return "12" if item["left"] == output_1 else "21"


def stored_judgments(rows: list[dict], expected: dict) -> dict[tuple[str, str], tuple[int, str | None]]:
    """(annotator, instruction + input) -> (preference, order), the order left out where the page could not show
    which side was which (`shown_order` None)."""
    out = {}
    for row in rows:
        key = (row["annotator"], row["instruction"] + "\0" + row["input"])
        known = expected.get(key, (None, "?"))[1] is not None
        out[key] = (int(row["preference"]), row["order"] if known else None)
    return out


def expected_preference(outputs: Outputs, item: dict, choice: str) -> int:
    """The canonical preference a left/right/tie choice means, found from the texts the rater was shown."""
    if choice == "tie":
        return 0
    left_is_1 = shown_order(outputs, item) == "12"
    return 1 if (choice == "left") == left_is_1 else 2


# ---------------------------------------------------------------------------- a real server and client


@contextlib.contextmanager
def serving(session: RatingSession) -> Iterator[str]:
    """The rating app under a real uvicorn server in a thread, on a free port of 127.0.0.1."""
    import uvicorn

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(build_app(session), log_level="warning", access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


class Client:
    """A JSON client that keeps every answer's raw text, to prove none of them names a model. It sends the
    token of the rater a request names (`tokens`, or claimed with `claim`); `token=` overrides that ("": none)."""

    def __init__(self, base: str, tokens: dict[str, str] | None = None):
        self.base = base.rstrip("/")
        self.seen: list[str] = []
        self.tokens = dict(tokens or {})

    def claim(self, rater: str) -> str:
        status, answer = self.call("/api/raters", {"rater": rater})
        assert status == 200 and answer["rater"] == rater, answer
        self.tokens[rater] = answer["token"]
        return answer["token"]

    def _token(self, path: str, body: dict | None) -> str | None:
        if path.startswith("/api/commit"):
            return next(iter(self.tokens.values()), None)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        rater = (body or {}).get("rater") if isinstance(body, dict) else None
        return self.tokens.get(rater or (query.get("rater") or [""])[0])

    def call(self, path: str, body: dict | None = None, raw: bytes | None = None,
             token: str | None = None) -> tuple[int, dict]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        token = self._token(path, body) if token is None else token
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        request = urllib.request.Request(self.base + path, data=data, method="GET" if data is None else "POST",
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        self.seen.append(text)
        return status, json.loads(text)

    def ok(self, path: str, body: dict | None = None) -> dict:
        status, answer = self.call(path, body)
        assert status == 200, answer
        return answer

    def state(self, rater: str) -> dict:
        return self.ok(f"/api/state?rater={urllib.request.quote(rater)}")

    def judge(self, rater: str, item: str, choice: str) -> dict:
        return self.ok("/api/judge", {"rater": rater, "item": item, "choice": choice})


def rule_choice(step: int, item: dict) -> str:
    """A choice decided from what is shown: every fifth a tie (and when both read the same), else the longer."""
    if step % 5 == 4 or item["left"] == item["right"]:
        return "tie"
    return "left" if len(item["left"]) > len(item["right"]) else "right"


@pytest.fixture
def outputs(tmp_path: Path) -> Outputs:
    return build_outputs(tmp_path / "store")


def open_session(outputs: Outputs, raters: list[str] | None = None, seed: int = 0, dataset: str = "ratings",
                 ) -> RatingSession:
    store = Store.open(outputs.store_root)
    return RatingSession(store, compare(store, *outputs.refs), dataset=dataset, seed=seed, raters=raters).open()


# ---------------------------------------------------------------------------- the API


def test_choices_become_canonical_preferences_and_the_api_never_names_the_models(outputs: Outputs):
    session = open_session(outputs, raters=["ann", "bob"])
    expected: dict[tuple[str, str], tuple[int, str]] = {}
    shown_orders: dict[str, list[str]] = {}
    with serving(session) as url:
        client = Client(url, {rater: session.token(rater) for rater in ("ann", "bob")})
        page = urllib.request.urlopen(url, timeout=30).read().decode()
        assert client.ok("/api/config") == {"raters": ["ann", "bob"], "total": 20}
        for rater in ("ann", "bob"):
            state = client.state(rater)
            for step in range(20):
                assert state["done"] == step and state["total"] == 20 and not state["finished"]
                item = state["item"]
                assert set(item) == {"id", "instruction", "input", "left", "right"}
                shown_orders.setdefault(rater, []).append(item["id"])
                choice = rule_choice(step, item)
                expected[(rater, item["instruction"] + "\0" + item["input"])] = (
                    expected_preference(outputs, item, choice), shown_order(outputs, item))
                assert client.state(rater)["item"] == item, "a reload shows the same item, same sides"
                state = client.judge(rater, item["id"], choice)
            assert state["finished"] and state["item"] is None and state["done"] == 20
        committed = client.ok("/api/commit", {})
        for text in [page, *client.seen]:
            for secret in outputs.secrets:
                assert secret not in text
    session.close()

    assert shown_orders["ann"] != shown_orders["bob"] and sorted(shown_orders["ann"]) == sorted(shown_orders["bob"])
    store = Store.open(outputs.store_root)
    manifest = store.resolve("ratings@main")
    assert committed == {"records": 40, "revision": manifest.id, "created": True}
    rows = store.read_records(manifest)
    # the store leaves out columns with no value at all: here only `category` (the outputs have none)
    assert len(rows) == 40 and all(set(row) == set(ANNOTATION_FIELDS) - {"category"} for row in rows)
    assert stored_judgments(rows, expected) == expected
    assert {row["order"] for row in rows} == {"12", "21"}, "both placements occur"
    assert {int(row["preference"]) for row in rows} == {0, 1, 2}
    for row in rows:
        assert (row["generator_1"], row["generator_2"]) == GENERATORS and row["output"] == ""
        assert (row["output_1"], row["output_2"]) == outputs.by_text[(row["instruction"], row["input"])]
        assert row["item_id"].startswith("user_oriented_task_") and row["created_at"]
    recipe = manifest.data["recipe"]
    assert recipe["command"] == "eval rate" and recipe["raters"] == ["ann", "bob"] and recipe["seed"] == 0
    assert recipe["output_1"] == {"dataset": DATASETS[0], "revision_id": outputs.ids[0], "generator": GENERATORS[0]}
    assert recipe["output_2"] == {"dataset": DATASETS[1], "revision_id": outputs.ids[1], "generator": GENERATORS[1]}


def test_undo_withdraws_the_last_judgment_and_that_item_comes_back(outputs: Outputs):
    session = open_session(outputs)  # no --raters: any name
    with serving(session) as url:
        client = Client(url)
        client.claim("Zoë K")
        client.claim("someone else")
        first = client.state("Zoë K")["item"]
        second = client.judge("Zoë K", first["id"], "left")["item"]
        third = client.judge("Zoë K", second["id"], "tie")["item"]
        after = client.judge("Zoë K", third["id"], "right")
        assert after["done"] == 3 and after["can_undo"]
        undone = client.ok("/api/undo", {"rater": "Zoë K"})
        assert undone["done"] == 2 and undone["item"] == third
        assert client.ok("/api/undo", {"rater": "Zoë K"})["item"] == second
        assert client.judge("Zoë K", second["id"], "right")["item"] == third, "redo continues where it was"
        assert client.state("someone else")["done"] == 0, "undo and judgments are per rater"
        status, answer = client.call("/api/undo", {"rater": "someone else"})
        assert status == 409 and answer == {"error": "nothing to undo"}
    session.close()
    rows = {row["item_id"]: row for row in Store.open(outputs.store_root).read_records(session.commit().manifest)}
    by_key = {pair.key: pair.item_id for pair in session.comparison.pairs}
    assert {by_key[first["id"]], by_key[second["id"]]} == set(rows), "the undone third judgment is not stored"
    assert rows[by_key[first["id"]]]["raw"] == "left" and rows[by_key[second["id"]]]["raw"] == "right"
    entries = list(read_journal(session.journal.path))
    assert [e["type"] for e in entries] == ["start", "claim", "claim", "judgment", "judgment", "judgment", "undo",
                                            "undo", "judgment"]


def test_concurrent_raters_lose_and_duplicate_nothing(outputs: Outputs):
    session = open_session(outputs)
    raters = [f"rater{i}" for i in range(4)]
    with serving(session) as url:
        client = Client(url)
        for rater in raters:
            client.claim(rater)
        sequences = {rater: session.sequence(rater) for rater in raters}

        def send(rater: str, item: str) -> int:
            return client.call("/api/judge", {"rater": rater, "item": item, "choice": "tie"})[0]

        # every judgment sent twice at once (a double click, two tabs): exactly one of each pair is taken
        jobs = [(rater, item) for rater in raters for item in sequences[rater] for _ in range(2)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda job: send(*job), jobs))
        assert statuses.count(200) == 80 and statuses.count(409) == 80
        assert all(client.state(rater)["finished"] for rater in raters)
    session.close()
    judgments = [e for e in read_journal(session.journal.path) if e["type"] == "judgment"]
    assert len(judgments) == 80 and len({(e["rater"], e["item"]) for e in judgments}) == 80
    rows = Store.open(outputs.store_root).read_records(session.commit().manifest)
    assert len(rows) == 80 and len({(r["annotator"], r["instruction"], r["input"]) for r in rows}) == 80


def test_refusals_are_one_line_json_errors(outputs: Outputs):
    session = open_session(outputs, raters=["ann"])
    with serving(session) as url:
        client = Client(url, {"ann": session.token("ann")})
        item = client.state("ann")["item"]["id"]
        cases = [
            (("/api/state?rater=mallory", None), 403, "not one of this comparison's raters"),
            (("/api/state", None), 400, "choose a rater name first"),
            (("/api/judge", {"rater": "ann", "item": item, "choice": "both"}), 400, "choice must be one of"),
            (("/api/judge", {"rater": "ann", "item": "no-such-item", "choice": "tie"}), 404, "no such item"),
            (("/api/judge", {"rater": "ann"}), 400, "malformed request"),
            (("/api/undo", {"rater": "ann"}), 409, "nothing to undo"),
        ]
        for (path, body), status, message in cases:
            got_status, answer = client.call(path, body, token=session.token("ann"))
            assert got_status == status and message in answer["error"] and "\n" not in answer["error"], answer
        assert client.call("/api/judge", raw=b"{not json")[0] == 400
        client.judge("ann", item, "left")
        status, answer = client.call("/api/judge", {"rater": "ann", "item": item, "choice": "right"})
        assert status == 409 and "already judged" in answer["error"]
        assert client.ok("/api/commit", {})["records"] == 1
    session.close()
    rows = Store.open(outputs.store_root).read_records("ratings@main")
    assert [row["raw"] for row in rows] == ["left"], "the refused second choice changed nothing"


# ---------------------------------------------------------------------------- the command


class RateProcess:
    """`alpaca-data eval rate ...` as a real subprocess; the URL is read from its first stdout line, and with
    `--raters` each rater's own link (`NAME: URL?rater=NAME&token=TOKEN`) from stderr."""

    def __init__(self, store_root: Path, *args: str):
        env = {**os.environ, "ALPACA_STORE": str(store_root), "COLUMNS": "200"}
        self.process = subprocess.Popen([sys.executable, "-m", "alpaca_data", "eval", "rate", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.process.stdout.readline()
        if not re.match(r"^http://127\.0\.0\.1:\d+/$", line.strip()):
            self.process.kill()
            raise AssertionError(f"no URL printed: {line!r} {self.process.stderr.read()}")
        self.url = line.strip()
        self.links: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        raters = parse_raters(args[args.index("--raters") + 1]) if "--raters" in args else []
        while len(self.links) < len(raters):
            printed = self.process.stderr.readline()
            assert printed, "the rater links were not printed"
            match = re.match(r"^(.+): (http://\S+\?rater=\S+&token=(\w+))$", printed.rstrip("\n"))
            if match:
                self.links[match.group(1)], self.tokens[match.group(1)] = match.group(2), match.group(3)
        assert sorted(self.links) == sorted(raters)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        self.process.send_signal(sig)
        stdout, stderr = self.process.communicate(timeout=60)
        return self.process.returncode, stdout, stderr


def test_a_killed_server_loses_no_judgment_and_a_restart_resumes(outputs: Outputs):
    args = (*outputs.refs, "--raters", "ann", "--port", "0", "--dataset", "ratings")
    server = RateProcess(outputs.store_root, *args)
    assert server.links["ann"].startswith(f"{server.url}?rater=ann&token=")
    client = Client(server.url, server.tokens)
    shown = []
    state = client.state("ann")
    for step in range(5):
        shown.append(state["item"])
        state = client.judge("ann", state["item"]["id"], rule_choice(step, state["item"]))
    pending = state["item"]
    server.process.kill()  # SIGKILL: no commit, no clean shutdown; only the journal has the judgments
    server.process.communicate(timeout=30)
    assert "ratings" not in Store.open(outputs.store_root).datasets()

    tokens = server.tokens
    server = RateProcess(outputs.store_root, *args)
    assert server.tokens == tokens, "a rater's link keeps working after a restart"
    client = Client(server.url, server.tokens)
    state = client.state("ann")
    assert state["done"] == 5 and state["item"] == pending, "resumes at the first unjudged item, same sides"
    for step in range(5, 7):
        shown.append(state["item"])
        state = client.judge("ann", state["item"]["id"], rule_choice(step, state["item"]))
    code, stdout, stderr = server.stop(signal.SIGINT)
    assert code == 0, stderr
    revision_id = stdout.strip().splitlines()[-1]
    store = Store.open(outputs.store_root)
    manifest = store.resolve("ratings@main")
    assert manifest.id == revision_id and "7 judgments" in stderr
    rows = {(r["instruction"], r["input"]): int(r["preference"]) for r in store.read_records(manifest)}
    assert rows == {(item["instruction"], item["input"]): expected_preference(outputs, item, rule_choice(step, item))
                    for step, item in enumerate(shown)}

    again = run_cli("eval", "rate", *outputs.refs, "--raters", "ann", "--dataset", "ratings", "--commit-only",
                    store=outputs.store_root)
    assert again.returncode == 0 and again.last_line == revision_id, "the same journal commits the same revision"


def test_mistakes_are_one_line_and_write_nothing(outputs: Outputs, tmp_path: Path):
    store = outputs.store_root
    refs = outputs.refs

    def refused(*args: str, expect: str, code: int = 1) -> None:
        result = run_cli("eval", "rate", *args, store=store, timeout=60)
        assert result.returncode == code, (result.stdout, result.stderr)
        assert expect in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr

    before = snapshot(store)
    refused(refs[0], "nowhere@main", "--port", "0", expect="nowhere")
    refused(*refs, "--raters", "ann, ann", "--port", "0", expect="--raters: a name is given twice", code=2)
    refused(*refs, "--dataset", "../escape", "--port", "0", expect="invalid dataset name", code=2)
    refused(*refs, "--commit-only", expect="no judgments to commit yet")
    with socket_in_use() as port:
        refused(*refs, "--port", str(port), expect=f"cannot listen on 127.0.0.1:{port}")
    assert snapshot(store) == before, "a refused command leaves no journal, folder or revision"
    with pytest.raises(UsageError, match="give at least one name"):
        parse_raters(" , ")
    with pytest.raises(UsageError, match="not a usable name"):
        parse_raters("ann,<script>")

    server = RateProcess(store, *refs, "--port", "0", "--seed", "3")
    try:
        refused(*refs, "--port", "0", "--seed", "3", expect="another `eval rate` process is using this comparison")
        client = Client(server.url)
        client.claim("ann")
        client.judge("ann", client.state("ann")["item"]["id"], "tie")
    finally:
        code, _, stderr = server.stop()
    assert code == 0, stderr
    refused(*refs, "--port", "0", "--seed", "4", expect="was started with seed 3")
    assert Store.open(store).datasets() == sorted([*DATASETS, "ratings-answers-first-x7-vs-answers-second-y9"])


@contextlib.contextmanager
def socket_in_use() -> Iterator[int]:
    sock = listen("127.0.0.1", 0)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()
