"""`alpaca-data view` through its JSON API, against the real CLI server on 127.0.0.1 over a real store of 25,580
records (built here from the tests/data corpora: ten copies, some exact duplicates, a `source` column), filtered
and deduplicated into two more datasets. Search, deep paging, facets, record detail, why dropped, diff and eval
are checked against what the store itself says; requests that try to get around the API are refused; and the
store is byte-for-byte what it was before the server started."""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from alpaca_data.records import key_of
from alpaca_data.store import Store
from tests.conftest import CORPORA, RESPONSE_CORPORA, run_cli

KNOWN_POSITION = 21_000
KNOWN = {"instruction": "Describe the zephyrine quokka festival in one paragraph.",
         "input": "  keep   these  spaces\n\n\tand this tab\n", "output": "A made-up festival.\n\n  Indented line.",
         "source": "handmade"}
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # the one http:// string the page holds: a name, never fetched


def corpus_records() -> list[dict]:
    records = []
    for path in sorted(CORPORA.glob("*.json")):
        for row in json.loads(path.read_text(encoding="utf-8")):
            output = row.get("output", row.get("response")) if path.name in RESPONSE_CORPORA else row["output"]
            records.append({"instruction": row["instruction"], "input": row.get("input") or "",
                            "output": output or "", "source": path.stem})
    return records


def build_records() -> list[dict]:
    """Ten copies of the tests/data corpora (2,558 records): odd copies tagged (new keys), even ones exact."""
    base = corpus_records()
    records = []
    for copy in range(10):
        for record in base:
            instruction = record["instruction"] + (f" [variant {copy}]" if copy % 2 else "")
            records.append({**record, "instruction": instruction})
    records[KNOWN_POSITION] = dict(KNOWN)
    return records


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under the store, with the sha256 of each file's bytes."""
    result = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        result[relative] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return result


class ViewServer:
    """`python -m alpaca_data view --port 0` on a store; the URL is the line it prints on stdout."""

    def __init__(self, store_root: Path, *args: str, timeout: float = 120):
        env = {**os.environ, "ALPACA_STORE": str(store_root), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "alpaca_data", "view", "--port", "0", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.errors: list[str] = []
        threading.Thread(target=lambda: self.errors.extend(self.process.stderr), daemon=True).start()
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0].startswith("http://"):
            self.process.kill()
            raise AssertionError(f"the viewer did not start: {line} {''.join(self.errors)}")
        self.url = line[0].strip()
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname, parts.port

    def request(self, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def get(self, route: str, **params) -> tuple[int, dict]:
        status, _, body = self.request("GET", f"/api/{route}?{urlencode(params)}")
        return status, json.loads(body)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return -9


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from alpaca_data.filters.revision import dedup_revision, filter_revision

    root = tmp_path_factory.mktemp("view") / "store"
    store = Store.open(root)
    records = build_records()
    store.commit("big", records, message="25K records from tests/data")
    filter_revision(store, "big@main", rouge_threshold=None, dataset="big-clean", progress=False)
    dedup_revision(store, "big-clean@main", method="exact", dataset="big-dedup", progress=False)
    before = snapshot(root)
    server = ViewServer(root)
    yield server, store, records, before
    assert server.stop() == 0, "".join(server.errors)
    assert snapshot(root) == before, "the viewer changed the store"


def timed(server: ViewServer, route: str, **params) -> tuple[int, dict, float]:
    started = time.perf_counter()
    status, body = server.get(route, **params)
    return status, body, time.perf_counter() - started


def test_search_finds_a_record_by_three_of_its_words_anywhere_in_it(served):
    server, _, records, _ = served
    status, body, seconds = timed(server, "records", rev="big@main", q="festival QUOKKA zephyrine")
    assert status == 200, body
    assert body["total"] == 1 and body["positions"] == [KNOWN_POSITION]
    assert body["rows"] == [KNOWN]  # the whole record, whitespace kept
    assert seconds < 1.0
    # every word must occur (not a phrase, any field): one word from the input, one from the output
    status, body = server.get("records", rev="big@main", q="tab made-up zephyrine")
    assert body["positions"] == [KNOWN_POSITION]
    status, body = server.get("records", rev="big@main", q="zephyrine Natalia")  # words of two records: none
    assert status == 200 and body["total"] == 0 and body["rows"] == []


def test_search_ranks_and_counts_every_match(served):
    server, _, records, _ = served
    status, body = server.get("records", rev="big@main", q="python function", limit=200)
    expected = [i for i, r in enumerate(records)
                if {"python", "function"} <= set(" ".join(str(v) for v in r.values()).lower().replace("(", " ")
                                                .replace(".", " ").replace(",", " ").split())]
    assert body["total"] >= len(expected) > 0
    assert body["scores"] == sorted(body["scores"], reverse=True)
    for record in body["rows"]:
        text = " ".join(str(v) for v in record.values()).lower()
        assert "python" in text and "function" in text
    # Chinese: every Han character is a word
    zh = next(r for r in records if r["source"] == "alpaca_zh_10000")
    status, body = server.get("records", rev="big@main", q=zh["instruction"][:3], facets=1)
    assert status == 200 and body["total"] >= 1 and all(r["source"] == "alpaca_zh_10000" for r in body["rows"])


def test_a_page_at_offset_20000_is_fast_and_exact(served):
    server, _, records, _ = served
    status, body, seconds = timed(server, "records", rev="big@main", offset=20_000, limit=50)
    assert status == 200
    assert body["total"] == len(records) == 25_580
    assert body["rows"] == records[20_000:20_050] and body["positions"] == list(range(20_000, 20_050))
    assert seconds < 1.0
    status, body, seconds = timed(server, "records", rev="big@main", offset=20_000, limit=50, has_input="true")
    with_input = [r for r in records if r["input"]]
    assert body["total"] == len(with_input) and body["rows"] == with_input[20_000:20_050] and seconds < 1.0
    status, body = server.get("records", rev="big@main", offset=len(records), limit=50)
    assert status == 200 and body["rows"] == [] and body["total"] == len(records)


def test_facets_count_what_the_records_hold(served):
    server, _, records, _ = served
    status, body = server.get("records", rev="big@main", limit=1, facets=1)
    facets = {name: dict(map(tuple, values)) for name, values in body["facets"].items()}
    assert facets["has_input"] == {"true": sum(1 for r in records if r["input"]),
                                   "false": sum(1 for r in records if not r["input"])}
    assert facets["col.source"] == dict(Counter(r["source"] for r in records))
    assert facets["script"]["Han (Chinese)"] >= 6000
    status, body = server.get("records", rev="big@main", limit=5, **{"col.source": "gpteacher_codegen"},
                              script="Latin", facets=1)
    assert body["total"] == sum(1 for r in records if r["source"] == "gpteacher_codegen")
    assert all(r["source"] == "gpteacher_codegen" for r in body["rows"])
    status, body = server.get("records", rev="big@main", limit=5, length="5000+", sort="-length")
    lengths = [sum(len(r[f]) for f in ("instruction", "input", "output")) for r in body["rows"]]
    assert lengths == sorted(lengths, reverse=True) and all(n >= 5000 for n in lengths)


def test_record_detail_datasets_and_revision(served):
    server, store, records, _ = served
    status, body = server.get("record", rev="big@main", pos=KNOWN_POSITION)
    assert status == 200 and body["record"] == KNOWN and body["position"] == KNOWN_POSITION
    status, body = server.get("datasets")
    assert [d["name"] for d in body["datasets"]] == ["big", "big-clean", "big-dedup"]
    status, body = server.get("revision", rev="big-dedup@main")
    assert body["command"] == "dedup" and body["has_rejections"] and body["stats"]["record_count"] == body["records"]
    assert [step["dataset"] for step in body["lineage"]] == ["big", "big-clean", "big-dedup"]
    assert body["parents"] == [store.resolve("big-clean@main").id]


def test_why_dropped_shows_each_rejection_beside_the_kept_record(served):
    server, store, _, _ = served
    manifest = store.resolve("big-dedup@main")
    import pyarrow.parquet as pq

    sidecar = pq.read_table(manifest.sidecar_path("rejections")).to_pylist()
    status, body = server.get("rejections", rev="big-dedup@main", limit=50)
    assert status == 200 and body["total"] == len(sidecar) > 1000
    assert dict(map(tuple, body["reasons"])) == dict(Counter(r["reason"] for r in sidecar))
    for item in body["rows"]:
        rejection, kept = item["rejection"], item["kept"]
        assert rejection["reason"] == "exact_duplicate" and rejection["score"] == 1.0
        assert kept["instruction"] == rejection["most_similar"]  # the same key (case-folded), maybe not the same text
        assert key_of(kept) == rejection["key"]
        assert store.read_records(manifest)[item["kept_position"]] == kept
    status, body = server.get("rejections", rev="big-clean@main", reason="too_short", limit=3)
    assert body["total"] == dict(map(tuple, body["reasons"]))["too_short"] and body["rows"][0]["kept"] is None
    assert server.get("rejections", rev="big@main")[0] == 404  # an import has no rejections


def test_diff_agrees_with_the_store(served):
    from alpaca_data.store.ops import diff

    server, store, _, _ = served
    expected = diff(store, "big-clean@main", "big-dedup@main").summary()
    status, body = server.get("diff", a="big-clean@main", b="big-dedup@main", kind="removed", limit=5)
    assert status == 200 and body["counts"] == expected and body["total"] == expected["removed"]
    status, body = server.get("diff", a="big@main", b="big-clean@main", kind="changed", limit=200)
    assert body["total"] == body["counts"]["changed"] == diff(store, "big@main", "big-clean@main").summary()["changed"]
    for row in body["rows"]:
        assert row["fields"] and all(row["before"].get(f) != row["after"].get(f) for f in row["fields"])


def test_lengths(served):
    server, _, records, _ = served
    status, body = server.get("lengths", rev="big@main")
    assert status == 200 and sum(body["fields"]["output"]["counts"]) == len(records)
    assert body["fields"]["input"]["counts"][0] == sum(1 for r in records if not r["input"].split())


def test_bad_requests_get_one_line_and_nothing_else(served):
    server, _, _, _ = served
    cases = [
        ("records", {"rev": "big@main", "bogus": "1"}, 400), ("records", {"rev": "big@main", "limit": "100000"}, 400),
        ("records", {"rev": "big@main", "offset": "-5"}, 400), ("records", {"rev": "big@main", "limit": "1e3"}, 400),
        ("records", {"rev": "nope@main"}, 404), ("records", {"rev": "big@main'; DROP TABLE meta_0; --"}, 404),
        ("records", {"rev": "../../../etc/passwd"}, 404), ("records", {}, 400),
        ("records", {"rev": "big@main", "sort": "pos; DROP TABLE post_0"}, 400),
        ("records", {"rev": "big@main", "col.instruction) OR (1": "x"}, 400),
        ("records", {"rev": "big@main", "script": "Latin' OR '1'='1"}, 400),
        ("records", {"rev": "big@main", "q": "x" * 1001}, 400), ("records", {"rev": "big@main", "q": "?!"}, 400),
        ("record", {"rev": "big@main", "pos": "99999999"}, 400), ("diff", {"a": "big@main", "b": "zzz@main"}, 404),
        ("eval", {"rev": "big@main"}, 404), ("verbs", {"rev": "big@main", "verb": "x"}, 400),
    ]
    for route, params, expected in cases:
        status, body = server.get(route, **params)
        assert status == expected, (route, params, body)
        assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"]
    status, _, body = server.request("GET", "/api/records?rev=big@main&limit=1&limit=2")
    assert status == 400 and b"twice" in body
    # values are bound parameters, never SQL: an injection is just words to look for
    status, body = server.get("records", rev="big@main", q="') OR 1=1; DROP TABLE post_0; --", limit=1)
    assert status == 200 and body["words"] == ["or", "1", "drop", "table", "post_0"] and body["total"] == 0
    assert server.get("records", rev="big@main", q="zephyrine")[1]["total"] == 1  # the index is still there


def test_only_get_and_only_its_own_files(served):
    server, _, _, _ = served
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, body = server.request(method, "/api/records?rev=big@main",
                                               {"Content-Type": "application/json"}, b"{}")
        assert status == 405 and json.loads(body)["error"].startswith(method)
        status, _, _ = server.request(method, "/api/records?rev=big@main", {"Origin": "http://evil.example",
                                                                            "Content-Type": "application/json"}, b"{}")
        assert status == 403
    for path in ("/../../etc/passwd", "/static/../service.py", "/view.js/..%2f..%2fservice.py", "/%2e%2e/%2e%2e/STORE",
                 "/api/../view/service.py", "/api/records/../../etc/passwd", "//etc/passwd"):
        status, _, body = server.request("GET", path)
        assert status == 404, path
        assert b"import" not in body and b"STORE" not in body
    status, _, body = server.request("GET", "/api/datasets", {"Host": "evil.example"})  # DNS rebinding
    assert status == 403


def test_the_page_loads_nothing_from_the_network(served):
    server, _, _, _ = served
    status, headers, html = server.request("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert headers["x-content-type-options"] == "nosniff"
    for path in ("/", "/view.js", "/view.css"):
        text = server.request("GET", path)[2].decode().replace(SVG_NAMESPACE, "")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path
        assert ".innerHTML" not in text and "insertAdjacentHTML" not in text and "document.write" not in text


def test_eval_annotations_table_and_report(tmp_path):
    """An annotations revision (AlpacaEval's published GPT-4 judgments of Alpaca-7B-NEFT): its rows, winners and
    the report's win rate (61.64%, the leaderboard's), from a second, small server."""
    import gzip

    from alpaca_data.eval.annotations import annotation_record, commit_rows
    from tests.conftest import NEFT_GZ

    store = Store.open(tmp_path / "store")
    rows = [annotation_record(**{k: v for k, v in row.items() if k in (
        "instruction", "output_1", "generator_1", "output_2", "generator_2", "annotator", "preference")},
        category="general" if i % 2 else "other") for i, row in enumerate(json.loads(gzip.open(NEFT_GZ).read()))]
    commit_rows(store, "neft", rows, message="AlpacaEval annotations", recipe={"command": "eval import"})
    server = ViewServer(store.root)
    try:
        status, body = server.get("eval", rev="neft@main", winner="output_2", category="general", limit=5)
        assert status == 200, body
        winners = dict(map(tuple, body["winners"]))
        assert winners["output_2"] == sum(1 for r in rows if r["preference"] is not None and r["preference"] > 1.5)
        assert all(r["winner"] == "output_2" and r["category"] == "general" for r in body["rows"])
        assert round(body["report"]["win_rate"], 2) == 61.64
        status, headers, png = server.request("GET", "/api/eval/figure?rev=neft@main")
        assert status == 200 and png.startswith(b"\x89PNG") and len(png) > 5000
    finally:
        assert server.stop() == 0


def test_the_command_fails_in_one_line(tmp_path):
    store = Store.open(tmp_path / "store")
    result = run_cli("view", "--port", "0", store=tmp_path / "nothing")
    assert result.returncode == 1 and "no store here" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("view", "--port", "0", store=store.root)
    assert result.returncode == 1 and "holds no dataset" in result.stderr and len(result.stderr.splitlines()) == 1
    store.commit("tiny", [{"instruction": "a", "input": "", "output": "b"}])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        result = run_cli("view", "--port", str(taken.getsockname()[1]), store=store.root)
    assert result.returncode == 1 and "cannot listen on 127.0.0.1" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
