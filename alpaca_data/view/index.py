"""One revision made ready to browse: its records in a memory-mapped Arrow file, and a DuckDB index beside it.

Built once per revision (before the port opens for every revision a ref points to; later on first use):
- the records are streamed from the verified Parquet file into an uncompressed Arrow IPC file in the viewer's
  private temporary folder (never in the store) and memory-mapped: a page at any depth is a `take` of its rows;
- an in-memory DuckDB holds, per record, a few small columns (`meta_N`: has input, characters, words per field,
  script, the instruction's hash, token count, low-cardinality provenance columns as facets) and an inverted
  index (`post_N`: term, position, term frequency; sorted by term so a term's postings are a few row groups).

Search: every word of the query must occur somewhere in the record (any string column; not as a phrase), ranked
by BM25 (k1 1.2, b 0.75). Words are Unicode letters/digits runs, lower-cased; Han, kana and Hangul characters are
words of one character each (Chinese has no spaces). The query is cut into words by the same SQL expression as
the records, so both sides always agree. Every value a request carries reaches DuckDB as a bound parameter;
table and column names come from this module only.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from alpaca_data.records import CORE_FIELDS
from alpaca_data.store import Manifest, Store
from alpaca_data.store.tables import table_to_records

_CJK = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]"
_WORD = r"[\p{L}\p{N}_]+"
MAX_QUERY_WORDS = 32
FACET_MAX_VALUES = 40  # a provenance column with more distinct values is not offered as a facet
BM25_K1, BM25_B = 1.2, 0.75

# name -> (label, lowest characters, highest characters or None)
LENGTHS = {"0-199": (0, 199), "200-999": (200, 999), "1000-4999": (1000, 4999), "5000+": (5000, None)}
SCRIPTS = (  # first match wins
    ("Japanese (kana)", r"[\p{Hiragana}\p{Katakana}]"), ("Han (Chinese)", r"\p{Han}"), ("Korean", r"\p{Hangul}"),
    ("Cyrillic", r"\p{Cyrillic}"), ("Arabic", r"\p{Arabic}"), ("Devanagari", r"\p{Devanagari}"),
    ("Greek", r"\p{Greek}"), ("Hebrew", r"\p{Hebrew}"), ("Thai", r"\p{Thai}"), ("Latin", r"\p{Latin}"),
)
SORTS = {"position": "m.pos", "length": "m.chars, m.pos", "-length": "m.chars DESC, m.pos"}
WORD_BINS = ((0, 0), (1, 4), (5, 9), (10, 19), (20, 49), (50, 99), (100, 199), (200, 499), (500, 999), (1000, None))


def tokenise_sql(expression: str) -> str:
    """SQL giving the list of search words of a text expression (records and queries alike)."""
    return (f"regexp_extract_all(lower(regexp_replace({expression}, '({_CJK})', ' \\1 ', 'g')), '{_WORD}')")


def _words_sql(column: str) -> str:
    return f"len(regexp_extract_all({column}, '\\S+'))::INTEGER"


def _script_sql(column: str) -> str:
    cases = " ".join(f"WHEN regexp_matches({column}, '{pattern}') THEN '{label}'" for label, pattern in SCRIPTS)
    return f"CASE {cases} ELSE 'other' END"


@dataclass
class Filters:
    """What a records request narrows to (already checked by the caller)."""

    words: list[str] = field(default_factory=list)
    has_input: bool | None = None
    length: str | None = None
    script: str | None = None
    columns: dict[str, str] = field(default_factory=dict)  # facet column name -> value (as text)
    verb: str | None = None
    object: str | None = None


class RevisionIndex:
    """The records of one revision and its index; every method is safe to call from many threads."""

    def __init__(self, manifest: Manifest, table: pa.Table, database: duckdb.DuckDBPyConnection, number: int,
                 facets: list[str]):
        self.manifest, self.table, self.database, self.number = manifest, table, database, number
        self.facets = facets  # provenance columns offered as facets (f0, f1, ... in meta_N)
        self.count = table.num_rows
        self.verbs_state: dict[str, Any] = {"state": "none"}
        self.verbs_lock = threading.Lock()

    # ------------------------------------------------------------------ building

    @classmethod
    def build(cls, store: Store, manifest: Manifest, database: duckdb.DuckDBPyConnection, number: int,
              folder: Path) -> RevisionIndex:
        path = folder / f"{number}.arrow"
        schema = store.data_schema(manifest)  # verifies the data file against its hash
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch in store.iter_batches(manifest):
                writer.write_batch(batch)
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()  # zero-copy: pages are read when rows are taken
        strings = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        candidates = [f.name for f in schema if f.name not in CORE_FIELDS and (
            pa.types.is_string(f.type) or pa.types.is_integer(f.type) or pa.types.is_boolean(f.type))]
        names = {name: f"c{i}" for i, name in enumerate(dict.fromkeys([*CORE_FIELDS, *strings, *candidates]))}
        source_table = pa.table({"pos": pa.array(range(table.num_rows), pa.int32()),
                                 **{alias: table.column(name) for name, alias in names.items()}})
        cursor = database.cursor()
        try:
            cursor.register("src", source_table)
            facets = []
            for name in candidates:
                distinct = cursor.execute(f"SELECT count(DISTINCT {names[name]}) FROM src").fetchone()[0]
                if 0 < distinct <= FACET_MAX_VALUES:
                    facets.append(name)
            text = "concat_ws(' ', " + ", ".join(names[name] for name in [*CORE_FIELDS, *(
                s for s in strings if s not in CORE_FIELDS)]) + ")"
            facet_columns = "".join(f", {names[name]}::VARCHAR AS f{i}" for i, name in enumerate(facets))
            c_ins, c_inp, c_out = (names[name] for name in CORE_FIELDS)
            cursor.execute(f"""CREATE TABLE doc_{number} AS SELECT pos, {tokenise_sql(text)} AS terms FROM src""")
            cursor.execute(f"""CREATE TABLE meta_{number} AS SELECT s.pos,
                    {c_inp} <> '' AS has_input,
                    (length({c_ins}) + length({c_inp}) + length({c_out}))::INTEGER AS chars,
                    {_words_sql(c_ins)} AS w_instruction, {_words_sql(c_inp)} AS w_input,
                    {_words_sql(c_out)} AS w_output,
                    {_script_sql(f"({c_ins} || ' ' || {c_out})")} AS script,
                    hash({c_ins}) AS ihash, len(d.terms)::INTEGER AS doclen {facet_columns}
                FROM src s JOIN doc_{number} d USING (pos) ORDER BY s.pos""")
            cursor.execute(f"""CREATE TABLE post_{number} AS SELECT term, pos, count(*)::INTEGER AS tf
                FROM (SELECT pos, unnest(terms) AS term FROM doc_{number}) GROUP BY term, pos ORDER BY term, pos""")
            cursor.execute(f"DROP TABLE doc_{number}")
            cursor.unregister("src")
        finally:
            cursor.close()
        return cls(manifest, table, database, number, facets)

    # ------------------------------------------------------------------ reading

    def rows(self, positions: list[int]) -> list[dict[str, Any]]:
        """Whole records at these positions, in this order."""
        if not positions:
            return []
        return table_to_records(self.table.take(pa.array(positions, pa.int64())))

    def query_words(self, text: str) -> list[str]:
        cursor = self.database.cursor()
        try:
            words = cursor.execute(f"SELECT {tokenise_sql('?')}", [text]).fetchone()[0]
        finally:
            cursor.close()
        return list(dict.fromkeys(words))[:MAX_QUERY_WORDS]

    def _where(self, filters: Filters, leave_out: str | None = None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if filters.has_input is not None and leave_out != "has_input":
            clauses.append("m.has_input = ?")
            params.append(filters.has_input)
        if filters.length is not None and leave_out != "length":
            low, high = LENGTHS[filters.length]
            clauses.append("m.chars >= ?" + ("" if high is None else " AND m.chars <= ?"))
            params.extend([low] if high is None else [low, high])
        if filters.script is not None and leave_out != "script":
            clauses.append("m.script = ?")
            params.append(filters.script)
        for name, value in filters.columns.items():
            if leave_out != f"col.{name}":
                clauses.append(f"m.f{self.facets.index(name)} = ?")
                params.append(value)
        if (filters.verb is not None or filters.object is not None) and self.verbs_table():
            if filters.verb is not None:
                clauses.append(f"m.pos IN (SELECT pos FROM verbs_{self.number} WHERE verb = ?)")
                params.append(filters.verb)
            if filters.object is not None:
                clauses.append(f"m.pos IN (SELECT pos FROM verbs_{self.number} WHERE object = ?)")
                params.append(filters.object)
        return (" AND ".join(clauses) or "TRUE"), params

    def _source(self, filters: Filters) -> tuple[str, list[Any]]:
        """FROM clause (alias m, with `score`) for the filters' words, and its parameters."""
        n = self.number
        if not filters.words:
            return f"(SELECT *, 0.0 AS score FROM meta_{n}) m", []
        marks = ", ".join("?" for _ in filters.words)
        average = f"(SELECT greatest(avg(doclen), 1) FROM meta_{n})"
        sql = f"""(SELECT meta.*, hits.score FROM (
                SELECT p.pos, sum(d.idf * p.tf * {BM25_K1 + 1} / (p.tf + {BM25_K1} * (1 - {BM25_B} + {BM25_B}
                       * mm.doclen / {average}))) AS score
                FROM post_{n} p
                JOIN (SELECT term, ln(1 + ({self.count} - count(*) + 0.5) / (count(*) + 0.5)) AS idf
                      FROM post_{n} WHERE term IN ({marks}) GROUP BY term) d USING (term)
                JOIN meta_{n} mm USING (pos)
                GROUP BY p.pos HAVING count(*) = {len(filters.words)}) hits
            JOIN meta_{n} meta USING (pos)) m"""
        return sql, list(filters.words)

    def search(self, filters: Filters, offset: int, limit: int, sort: str | None) -> dict[str, Any]:
        """Positions (and scores) of one page of matching records, and how many match."""
        plain = filters == Filters()
        if plain and sort in (None, "position"):  # the whole revision in order: no query at all, any depth
            end = min(self.count, offset + limit)
            return {"total": self.count, "positions": list(range(offset, end)), "scores": None}
        source, params = self._source(filters)
        where, where_params = self._where(filters)
        order = "m.score DESC, m.pos" if sort in (None, "relevance") and filters.words else SORTS.get(sort or "position",
                                                                                                     "m.pos")
        cursor = self.database.cursor()
        try:
            total = cursor.execute(f"SELECT count(*) FROM {source} WHERE {where}", params + where_params).fetchone()[0]
            found = cursor.execute(f"SELECT m.pos, m.score FROM {source} WHERE {where} ORDER BY {order} "
                                   "LIMIT ? OFFSET ?", params + where_params + [limit, offset]).fetchall()
        finally:
            cursor.close()
        return {"total": int(total), "positions": [int(p) for p, _ in found],
                "scores": [round(float(s), 4) for _, s in found] if filters.words else None}

    def facet_counts(self, filters: Filters) -> dict[str, list[list[Any]]]:
        """For each facet, [value, count] of the records the other filters leave (values of this revision)."""
        source, params = self._source(filters)
        names = {"has_input": "m.has_input::VARCHAR", "length": self._length_case(), "script": "m.script",
                 **{f"col.{name}": f"m.f{i}" for i, name in enumerate(self.facets)}}
        counts: dict[str, list[list[Any]]] = {}
        cursor = self.database.cursor()
        try:
            for facet, expression in names.items():
                where, where_params = self._where(filters, leave_out=facet)
                rows = cursor.execute(f"SELECT {expression} AS v, count(*) FROM {source} WHERE {where} AND v IS NOT "
                                      "NULL GROUP BY v ORDER BY count(*) DESC, v", params + where_params).fetchall()
                counts[facet] = [[value, int(count)] for value, count in rows]
        finally:
            cursor.close()
        return counts

    @staticmethod
    def _length_case() -> str:
        parts = []
        for name, (low, high) in LENGTHS.items():
            parts.append(f"WHEN m.chars >= {low}" + ("" if high is None else f" AND m.chars <= {high}") +
                         f" THEN '{name}'")
        return f"CASE {' '.join(parts)} END"

    def facet_values(self) -> dict[str, list[str]]:
        """Every value each facet can take in this revision (what a request may ask for)."""
        cursor = self.database.cursor()
        try:
            values = {"script": [r[0] for r in cursor.execute(f"SELECT DISTINCT script FROM meta_{self.number}")
                                 .fetchall()]}
            for i, name in enumerate(self.facets):
                values[f"col.{name}"] = [r[0] for r in cursor.execute(
                    f"SELECT DISTINCT f{i} FROM meta_{self.number} WHERE f{i} IS NOT NULL").fetchall()]
        finally:
            cursor.close()
        return values

    def find_instruction(self, instruction: str) -> int | None:
        """The first record whose instruction is exactly this text."""
        cursor = self.database.cursor()
        try:
            found = cursor.execute(f"SELECT pos FROM meta_{self.number} WHERE ihash = hash(?) ORDER BY pos LIMIT 8",
                                   [instruction]).fetchall()
        finally:
            cursor.close()
        for (position,) in found:
            if self.table.column("instruction")[position].as_py() == instruction:
                return int(position)
        return None

    def histograms(self) -> dict[str, Any]:
        """Words per field (instruction, input, output) in fixed bins, and characters per record."""
        cursor = self.database.cursor()
        result: dict[str, Any] = {"bins": [_bin_label(low, high) for low, high in WORD_BINS], "fields": {}}
        try:
            for name in CORE_FIELDS:
                cases = " ".join(f"WHEN w_{name} >= {low}" + ("" if high is None else f" AND w_{name} <= {high}")
                                 + f" THEN {i}" for i, (low, high) in enumerate(WORD_BINS))
                rows = dict(cursor.execute(f"SELECT CASE {cases} END AS b, count(*) FROM meta_{self.number} "
                                           "GROUP BY b").fetchall())
                summary = cursor.execute(f"SELECT avg(w_{name}), median(w_{name}), max(w_{name}) "
                                         f"FROM meta_{self.number}").fetchone()
                result["fields"][name] = {"counts": [int(rows.get(i, 0)) for i in range(len(WORD_BINS))],
                                          "mean": round(float(summary[0] or 0), 1),
                                          "median": float(summary[1] or 0), "max": int(summary[2] or 0)}
        finally:
            cursor.close()
        return result

    # ------------------------------------------------------------------ verbs (filled by the viewer)

    def verbs_table(self) -> bool:
        return self.verbs_state.get("state") == "ready"

    def store_verbs(self, pairs: list[tuple[str | None, str | None]]) -> None:
        table = pa.table({"pos": pa.array(range(len(pairs)), pa.int32()),
                          "verb": pa.array([v for v, _ in pairs], pa.string()),
                          "object": pa.array([o for _, o in pairs], pa.string())})
        cursor = self.database.cursor()
        try:
            cursor.register("verbs_src", table)
            cursor.execute(f"CREATE OR REPLACE TABLE verbs_{self.number} AS SELECT * FROM verbs_src")
            cursor.unregister("verbs_src")
        finally:
            cursor.close()


def _bin_label(low: int, high: int | None) -> str:
    if high is None:
        return f"{low}+"
    return str(low) if low == high else f"{low}-{high}"
