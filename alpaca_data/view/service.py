"""What `alpaca-data view` answers: the JSON of each API route, from the store, read-only.

The store is only read: revisions through `Store.resolve` (every file verified against its hash), the
diversity parse cache read if present (never written), nothing else. Each revision's records and search index
live in memory and in a private temporary folder outside the store (`view.index`), built before the port opens
for every revision a ref (main or a tag) points to, and on first use for any other revision.

Requests are checked here: an unknown or repeated parameter, a malformed number or an out-of-range one is a
400 with one line; a revision that cannot be resolved is a 404. Nothing a request carries becomes SQL text.
"""
from __future__ import annotations

import io
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from alpaca_data.errors import UserError
from alpaca_data.records import CORE_FIELDS, key_of
from alpaca_data.store import DamagedRevision, Manifest, Store
from alpaca_data.view.index import LENGTHS, SORTS, Filters, RevisionIndex

MAX_LIMIT = 200
MAX_OFFSET = 10**9
MAX_QUERY_CHARS = 1000
MAX_REF_CHARS = 300
ANNOTATION_FIELDS = ("instruction", "generator_1", "generator_2", "annotator", "preference")
WINNERS = ("output_1", "output_2", "tie", "none")
DIFF_KINDS = ("added", "removed", "changed")
CONNECT_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
_NUMBER = re.compile(r"\A[0-9]{1,10}\Z")


class ViewError(Exception):
    """A request the API refuses: an HTTP status and one line."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------------- parameters


class Params:
    """A request's query parameters, checked: each name known to the route, given once."""

    def __init__(self, items: list[tuple[str, str]], allowed: set[str], prefixes: tuple[str, ...] = ()):
        self.values: dict[str, str] = {}
        for name, value in items:
            if name not in allowed and not name.startswith(prefixes):
                known = ", ".join(sorted(allowed) + [f"{p}NAME" for p in prefixes])
                raise ViewError(400, f"unknown parameter {name[:40]!r} (this route takes {known})")
            if name in self.values:
                raise ViewError(400, f"parameter {name[:40]!r} given twice")
            if len(value) > MAX_QUERY_CHARS:
                raise ViewError(400, f"parameter {name!r} is over {MAX_QUERY_CHARS} characters")
            self.values[name] = value

    def text(self, name: str, required: bool = False) -> str | None:
        value = self.values.get(name)
        if value is None and required:
            raise ViewError(400, f"parameter {name!r} is required")
        return value

    def number(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.values.get(name)
        if raw is None or raw == "":
            return default
        if not _NUMBER.match(raw) or not low <= int(raw) <= high:
            raise ViewError(400, f"parameter {name!r} must be a whole number from {low} to {high}")
        return int(raw)

    def choice(self, name: str, choices: Mapping[str, Any] | tuple[str, ...] | list[str]) -> Any:
        raw = self.values.get(name)
        if raw is None or raw == "":
            return None
        if raw not in choices:
            shown = ", ".join(str(c) for c in list(choices)[:12])
            raise ViewError(400, f"parameter {name!r} must be one of: {shown}")
        return choices[raw] if isinstance(choices, Mapping) else raw

    def prefixed(self, prefix: str) -> dict[str, str]:
        return {name[len(prefix):]: value for name, value in self.values.items() if name.startswith(prefix)}


# ---------------------------------------------------------------------------------------------- the viewer


class Viewer:
    """The store, the revisions made ready so far, and the answers that take a while (diffs, verbs, reports)."""

    def __init__(self, store: Store, *, verb_parser: Callable[[list[str], Callable[[int], None]], list] | None = None):
        self.store = store
        self.database = duckdb.connect(":memory:", config=dict(CONNECT_CONFIG))
        self.database.execute("SET enable_external_access = false")  # reads no file by path, writes none
        self.database.execute("SET lock_configuration = true")
        self.folder = Path(tempfile.mkdtemp(prefix="alpaca-view-"))
        self.indexes: dict[str, RevisionIndex] = {}
        self._building: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._cache: dict[tuple, Any] = {}
        self.verb_parser = verb_parser or parse_verbs

    def close(self) -> None:
        self.indexes.clear()
        self.database.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # ------------------------------------------------------------------ revisions

    def referenced(self) -> tuple[list[Manifest], list[str]]:
        """Every intact revision a ref points to (main, tags), and notes on what could not be read."""
        manifests, notes, seen = [], [], set()
        for name in self.store.datasets():
            try:
                targets = [self.store.main_id(name), *self.store.tags(name).values()]
            except UserError as error:
                notes.append(str(error))
                continue
            for revision_id in targets:
                if revision_id and revision_id not in seen:
                    seen.add(revision_id)
                    try:
                        manifests.append(self.store.load(name, revision_id))
                    except UserError as error:
                        notes.append(str(error))
        return manifests, notes

    def prepare(self, progress: Callable[[Manifest], None] = lambda m: None) -> list[str]:
        """Index every revision a ref points to (before the port opens); notes on damaged ones."""
        manifests, notes = self.referenced()
        for manifest in manifests:
            progress(manifest)
            try:
                self._index_of(manifest)
            except DamagedRevision as error:
                notes.append(str(error))
        return notes

    def manifest(self, ref: str | None, name: str = "rev") -> Manifest:
        if not ref:
            raise ViewError(400, f"parameter {name!r} is required (NAME@main, NAME@TAG or NAME@<id prefix>)")
        if len(ref) > MAX_REF_CHARS:
            raise ViewError(400, f"parameter {name!r} is over {MAX_REF_CHARS} characters")
        try:
            return self.store.resolve(ref)
        except DamagedRevision as error:
            raise ViewError(409, str(error)) from None
        except UserError as error:
            raise ViewError(404, str(error)) from None

    def index(self, ref: str | None, name: str = "rev") -> RevisionIndex:
        return self._index_of(self.manifest(ref, name))

    def _index_of(self, manifest: Manifest) -> RevisionIndex:
        found = self.indexes.get(manifest.id)
        if found is not None:
            return found
        with self._lock:
            building = self._building.setdefault(manifest.id, threading.Lock())
        with building:  # one build per revision, however many requests ask at once
            found = self.indexes.get(manifest.id)
            if found is None:
                with self._lock:
                    number = len(self._building)
                found = RevisionIndex.build(self.store, manifest, self.database, number, self.folder)
                self.indexes[manifest.id] = found
        return found

    # ------------------------------------------------------------------ datasets and revisions

    def datasets(self, params: Params) -> dict[str, Any]:
        result = []
        for name in self.store.datasets():
            entry: dict[str, Any] = {"name": name, "main": None, "tags": {}, "problem": None, "revisions": []}
            try:
                entry["main"] = self.store.main_id(name)
                entry["tags"] = self.store.tags(name)
            except UserError as error:
                entry["problem"] = str(error)
            manifests, damaged = self.store.scan(name)
            refs: dict[str, list[str]] = {}
            if entry["main"]:
                refs.setdefault(entry["main"], []).append("main")
            for tag, target in entry["tags"].items():
                refs.setdefault(target, []).append(tag)
            entry["revisions"] = [{**_brief(m), "refs": refs.get(m.id, [])} for m in manifests]
            entry["damaged"] = [{"id": rid, "problem": why} for rid, why in damaged]
            result.append(entry)
        return {"store": str(self.store.root), "datasets": result}

    def revision(self, params: Params) -> dict[str, Any]:
        from alpaca_data.hub.card import lineage

        manifest = self.manifest(params.text("rev"))
        data = manifest.data
        index = self._index_of(manifest)
        children = [_brief(m) for m in self.store.all_manifests()[0] if manifest.id in m.parents]
        return {**_brief(manifest), "recipe": data.get("recipe", {}), "extra": data.get("extra", {}),
                "stats": data.get("stats", {}), "columns": data.get("columns", []), "lineage": lineage(self.store,
                                                                                                          manifest),
                "children": children, "facets": {"has_input": ["true", "false"], "length": list(LENGTHS),
                                                 **index.facet_values()}}

    # ------------------------------------------------------------------ records

    def records(self, params: Params) -> dict[str, Any]:
        index = self.index(params.text("rev"))
        offset = params.number("offset", 0, 0, MAX_OFFSET)
        limit = params.number("limit", 50, 1, MAX_LIMIT)
        sort = params.choice("sort", ("relevance", *SORTS))
        filters = self.filters(index, params)
        found = index.search(filters, offset, limit, sort)
        rows = index.rows(found["positions"])
        answer = {"total": found["total"], "offset": offset, "rows": rows, "positions": found["positions"],
                  "scores": found["scores"], "words": filters.words}
        if params.choice("facets", ("0", "1")) == "1":
            answer["facets"] = index.facet_counts(filters)
        return answer

    def filters(self, index: RevisionIndex, params: Params) -> Filters:
        filters = Filters()
        query = params.text("q")
        if query and query.strip():
            filters.words = index.query_words(query)
            if not filters.words:
                raise ViewError(400, "parameter 'q' holds no word to search for (letters or digits)")
        filters.has_input = params.choice("has_input", {"true": True, "false": False})
        filters.length = params.choice("length", tuple(LENGTHS))
        values = None
        for name, value in params.prefixed("col.").items():
            if name not in index.facets:
                raise ViewError(400, f"col.{name[:40]}: not a facet column of this revision "
                                     f"(facets: {', '.join(index.facets) or 'none'})")
            filters.columns[name] = value
        if params.text("script"):
            values = values or index.facet_values()
            filters.script = params.choice("script", values["script"])
        filters.verb, filters.object = params.text("verb") or None, params.text("object") or None
        if (filters.verb or filters.object) and not index.verbs_table():
            raise ViewError(409, "the verb-object parse of this revision is not ready (GET /api/verbs first)")
        return filters

    def record(self, params: Params) -> dict[str, Any]:
        index = self.index(params.text("rev"))
        if index.count == 0:
            raise ViewError(404, "this revision holds no records")
        position = params.number("pos", 0, 0, index.count - 1)
        if params.text("pos") is None:
            raise ViewError(400, "parameter 'pos' is required")
        record = index.rows([position])[0]
        return {"position": position, "key": key_of(record), "record": record, "total": index.count}

    # ------------------------------------------------------------------ why dropped

    def rejections(self, params: Params) -> dict[str, Any]:
        manifest = self.manifest(params.text("rev"))
        offset = params.number("offset", 0, 0, MAX_OFFSET)
        limit = params.number("limit", 20, 1, MAX_LIMIT)
        table = self._rejections(manifest)
        reasons = table.group_by("reason").aggregate([("reason", "count")]).to_pylist()
        counts = sorted(([r["reason"], r["reason_count"]] for r in reasons), key=lambda r: (-r[1], r[0]))
        reason = params.choice("reason", [r for r, _ in counts])
        chosen = table.filter(pc.equal(table.column("reason"), reason)) if reason else table
        page = chosen.slice(offset, limit).to_pylist()
        rows = []
        for rejection in page:
            kept = self._kept(manifest, rejection.get("most_similar"))
            rows.append({"rejection": {k: v for k, v in rejection.items() if v is not None}, **kept})
        recipe = manifest.data.get("recipe", {})
        return {"total": chosen.num_rows, "offset": offset, "reasons": counts, "rows": rows,
                "command": recipe.get("command"), "steps": (recipe.get("options") or {}).get("steps", []),
                "parents": manifest.parents}

    def _rejections(self, manifest: Manifest) -> pa.Table:
        key = ("rejections", manifest.id)
        if key not in self._cache:
            try:
                path = manifest.sidecar_path("rejections")
            except DamagedRevision as error:
                raise ViewError(409, str(error)) from None
            if path is None:
                raise ViewError(404, f"{manifest.dataset}@{manifest.short_id} has no rejections (it was not made by "
                                     "a filter, dedup or generate step)")
            self._cache[key] = pq.read_table(path)
        return self._cache[key]

    def _kept(self, manifest: Manifest, instruction: str | None) -> dict[str, Any]:
        """The kept record a dropped one collided with: in this revision, else in a revision the step read."""
        if not instruction:
            return {"kept": None}
        sources = [manifest] + [m for m in (self._source_manifest(s) for s in manifest.data.get("recipe", {})
                                                                                          .get("sources", [])) if m]
        for candidate in sources:
            index = self._index_of(candidate)
            position = index.find_instruction(instruction)
            if position is not None:
                return {"kept": index.rows([position])[0], "kept_position": position,
                        "kept_in": f"{candidate.dataset}@{candidate.short_id}",
                        "kept_ref": f"{candidate.dataset}@{candidate.id}"}
        return {"kept": None, "kept_instruction": instruction}

    def _source_manifest(self, source: Mapping[str, Any]) -> Manifest | None:
        revision_id = source.get("revision") if isinstance(source, Mapping) else None
        if not isinstance(revision_id, str):
            return None
        for name in self.store.datasets():
            if revision_id in self.store.revision_ids(name):
                try:
                    return self.store.load(name, revision_id)
                except UserError:
                    return None
        return None

    # ------------------------------------------------------------------ diff

    def diff(self, params: Params) -> dict[str, Any]:
        a, b = self.index(params.text("a"), "a"), self.index(params.text("b"), "b")
        kind = params.choice("kind", DIFF_KINDS) or "changed"
        offset = params.number("offset", 0, 0, MAX_OFFSET)
        limit = params.number("limit", 20, 1, MAX_LIMIT)
        key = ("diff", a.manifest.id, b.manifest.id)
        if key not in self._cache:
            self._cache[key] = _diff_positions(a, b)
        lists = self._cache[key]
        chosen = lists[kind][offset:offset + limit]
        rows: list[dict[str, Any]] = []
        if kind == "added":
            rows = [{"after": r, "position_b": p} for r, p in zip(b.rows(chosen), chosen)]
        elif kind == "removed":
            rows = [{"before": r, "position_a": p} for r, p in zip(a.rows(chosen), chosen)]
        else:
            before, after = a.rows([p for p, _ in chosen]), b.rows([q for _, q in chosen])
            for (pa_, pb), old, new in zip(chosen, before, after):
                fields = [name for name in dict.fromkeys([*old, *new]) if old.get(name) != new.get(name)]
                rows.append({"before": old, "after": new, "fields": fields, "position_a": pa_, "position_b": pb})
        return {"a": _brief(a.manifest), "b": _brief(b.manifest), "counts": lists["counts"], "kind": kind,
                "total": len(lists[kind]), "offset": offset, "rows": rows}

    # ------------------------------------------------------------------ pictures

    def lengths(self, params: Params) -> dict[str, Any]:
        return self.index(params.text("rev")).histograms()

    def verbs(self, params: Params) -> dict[str, Any]:
        """The verb-object counts, parsed in the background on first ask (state: running, then ready)."""
        index = self.index(params.text("rev"))
        top = params.number("verbs", 20, 1, 100)
        objects = params.number("objects", 4, 1, 20)
        with index.verbs_lock:
            state = index.verbs_state
            if state["state"] in ("none", "failed") and params.choice("start", ("0", "1")) != "0":
                state = index.verbs_state = {"state": "running", "done": 0, "total": index.count}
                threading.Thread(target=self._parse_verbs, args=(index,), daemon=True).start()
        state = dict(index.verbs_state)
        pairs = state.pop("pairs", None)
        if state["state"] == "ready":
            state.update(_verb_summary(pairs, top, objects))
        return state

    def _parse_verbs(self, index: RevisionIndex) -> None:
        state = index.verbs_state

        def tick(count: int = 1) -> None:
            state["done"] = min(state["total"], state["done"] + count)

        try:
            instructions = index.table.column("instruction").to_pylist()
            pairs = self.verb_parser(instructions, tick, self.store.root)
            index.store_verbs(pairs)
            index.verbs_state = {"state": "ready", "done": index.count, "total": index.count, "pairs": pairs}
        except Exception as error:  # noqa: BLE001 - shown on the page (no spaCy model, ...), never a crash
            index.verbs_state = {"state": "failed", "error": str(error).splitlines()[0] if str(error) else
                                 type(error).__name__}

    # ------------------------------------------------------------------ eval

    def evaluation(self, params: Params) -> dict[str, Any]:
        manifest = self.manifest(params.text("rev"))
        missing = [name for name in ANNOTATION_FIELDS if name not in manifest.data.get("columns", [])]
        if missing:
            raise ViewError(404, f"{manifest.dataset}@{manifest.short_id} is not an annotations revision (no "
                                 f"{', '.join(missing)})")
        index = self._index_of(manifest)
        offset = params.number("offset", 0, 0, MAX_OFFSET)
        limit = params.number("limit", 20, 1, MAX_LIMIT)
        winners = _winners(index.table.column("preference"))
        categories = (index.table.column("category").to_pylist() if "category" in index.table.column_names
                      else [None] * index.count)
        winner = params.choice("winner", WINNERS)
        present = sorted({c for c in categories if c is not None})
        category = params.choice("category", present)
        keep = np.ones(index.count, bool)
        if winner:
            keep &= winners == winner
        if category:
            keep &= np.array([c == category for c in categories], bool)
        positions = np.flatnonzero(keep)[offset:offset + limit].tolist()
        rows = [{**row, "winner": str(winners[p])} for row, p in zip(index.rows(positions), positions)]
        return {"total": int(keep.sum()), "offset": offset, "rows": rows, "positions": positions,
                "winners": [[w, int((winners == w).sum())] for w in WINNERS],
                "categories": [[c, categories.count(c)] for c in present], **self._report(manifest)}

    def _report(self, manifest: Manifest) -> dict[str, Any]:
        from alpaca_data.eval.report import build_report

        key = ("report", manifest.id)
        if key not in self._cache:
            try:
                report = build_report(self.store, f"{manifest.dataset}@{manifest.id}")
                report.pop("lineage", None)
                self._cache[key] = {"report": report, "report_error": None}
            except UserError as error:
                self._cache[key] = {"report": None, "report_error": str(error)}
        return self._cache[key]

    def evaluation_figure(self, params: Params) -> bytes:
        from alpaca_data.eval.plots import report_figure

        manifest = self.manifest(params.text("rev"))
        report = self._report(manifest)["report"]
        if report is None:
            raise ViewError(404, f"{manifest.dataset}@{manifest.short_id} has no report to draw")
        key = ("figure", manifest.id)
        if key not in self._cache:
            buffer = io.BytesIO()
            report_figure(report).savefig(buffer, format="png", dpi=96)
            self._cache[key] = buffer.getvalue()
        return self._cache[key]


# ---------------------------------------------------------------------------------------------- helpers


def _brief(manifest: Manifest) -> dict[str, Any]:
    data = manifest.data
    columns = data.get("columns", [])
    return {"id": manifest.id, "short_id": manifest.short_id, "dataset": manifest.dataset,
            "ref": f"{manifest.dataset}@{manifest.short_id}", "created_at": data.get("created_at"),
            "message": data.get("message", ""), "records": manifest.record_count, "parents": manifest.parents,
            "command": (data.get("recipe") or {}).get("command"),
            "kind": "annotations" if all(name in columns for name in ANNOTATION_FIELDS) else "records",
            "has_rejections": manifest.has_sidecar("rejections")}


def _diff_positions(a: RevisionIndex, b: RevisionIndex) -> dict[str, Any]:
    """Added (positions in b), removed (in a), changed (pairs), as `store.ops.diff` decides them."""
    from alpaca_data.store.ops import diff_keys

    def first(index: RevisionIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keys, digests = diff_keys(index.table.select(list(CORE_FIELDS))) if index.count else (
            np.zeros(0, np.uint64), np.zeros(0, np.uint64))
        distinct, where = np.unique(keys, return_index=True)
        return distinct, where, digests[where]

    keys_a, first_a, digest_a = first(a)
    keys_b, first_b, digest_b = first(b)
    common, index_a, index_b = np.intersect1d(keys_a, keys_b, assume_unique=True, return_indices=True)
    differs = digest_a[index_a] != digest_b[index_b]
    added = np.sort(first_b[~np.isin(keys_b, keys_a, assume_unique=True)]).tolist()
    removed = np.sort(first_a[~np.isin(keys_a, keys_b, assume_unique=True)]).tolist()
    order = np.argsort(first_b[index_b[differs]])
    changed = list(zip(first_a[index_a[differs]][order].tolist(), first_b[index_b[differs]][order].tolist()))
    return {"added": added, "removed": removed, "changed": changed,
            "counts": {"added": len(added), "removed": len(removed), "changed": len(changed),
                       "unchanged": int(len(common) - differs.sum())}}


def _winners(preferences: pa.ChunkedArray) -> np.ndarray:
    values = preferences.to_pylist()
    out = []
    for value in values:
        if value is None or value != value:
            out.append("none")
        elif value == 0 or value == 1.5:
            out.append("tie")
        else:
            out.append("output_1" if value < 1.5 else "output_2")
    return np.array(out, dtype=object)


def _verb_summary(pairs: list[tuple[str | None, str | None]], verbs: int, objects: int) -> dict[str, Any]:
    from collections import Counter

    verb_counts = Counter(v for v, _ in pairs if v)
    pair_counts = Counter((v, o) for v, o in pairs if v and o)
    top = []
    for verb, count in verb_counts.most_common(verbs):
        best = Counter({o: n for (v, o), n in pair_counts.items() if v == verb}).most_common(objects)
        top.append({"verb": verb, "count": count, "objects": [{"object": o, "count": n} for o, n in best]})
    return {"verbs": top, "records": len(pairs), "no_verb": sum(1 for v, _ in pairs if not v),
            "no_object": sum(1 for v, o in pairs if v and not o), "distinct_verbs": len(verb_counts)}


def parse_verbs(instructions: list[str], tick: Callable[[int], None], store_root: Path) -> list:
    """(verb, object) of each instruction, as `alpaca-data diversity` parses them; the store's parse cache is
    read when present and never written (the viewer writes nothing into the store); parsed in this process."""
    from alpaca_data.analyze.diversity import VerbNounCounter

    with VerbNounCounter(instructions, processes=1, cache_root=store_root) as counter:
        parsed = dict(zip(counter.distinct, counter._parsed(tick)))  # stats() would also save the cache
        tick(counter.total - len(counter.distinct))
        answers = {**counter.known, **parsed}
    return [answers[text] for text in counter.texts]
