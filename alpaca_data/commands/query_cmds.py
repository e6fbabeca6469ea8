"""CLI: sql (read-only DuckDB over revisions) and diversity (root verb / direct object)."""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Optional

import typer

from alpaca_data.analyze.sql import QueryResult, analysis_sql, list_analyses, run_sql
from alpaca_data.commands._common import open_store, print_json, print_table
from alpaca_data.durable import atomic_file
from alpaca_data.errors import UsageError, UserError
from alpaca_data.progress import is_quiet, stderr_console

RESULT_FORMATS = ("table", "csv", "json", "parquet")


def _csv_text(result: QueryResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # Unix line ends: `7473`, not `7473\r`
    writer.writerow(result.columns)
    writer.writerows(result.rows)
    return buffer.getvalue()


def _write_result(result: QueryResult, out: Path, fmt: str, store_root: Path) -> None:
    if out.resolve().is_relative_to(store_root.resolve()):
        raise UserError(f"{out}: is inside the store ({store_root}); the store is read-only to queries")
    if out.is_dir() or not out.parent.is_dir():
        raise UserError(f"{out}: give a file path in an existing folder")
    with atomic_file(out) as handle:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(result.as_dicts()), handle)
        elif fmt == "json":
            import json

            handle.write((json.dumps(result.as_dicts(), indent=2, ensure_ascii=False, default=str) + "\n").encode())
        else:
            handle.write(_csv_text(result).encode("utf-8"))


def sql(
    query: Optional[str] = typer.Argument(None, help="SQL (queries only); views: records, rejections; table: revisions."),
    rev: Optional[str] = typer.Option(None, "--rev", "-r", help="Revision the `records` view reads."),
    analysis: Optional[str] = typer.Option(None, "--analysis", "-a", help="A named query from analyses/."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json (with -o: csv, json or parquet)."),
    out: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the result to this file (outside the store)."),
) -> None:
    """Query revisions with DuckDB. The store is read-only to queries."""
    if (query is None) == (analysis is None):
        raise UsageError(f"give either a query or --analysis NAME (analyses: {', '.join(list_analyses())})")
    if fmt not in RESULT_FORMATS or (fmt == "parquet" and out is None):
        raise UsageError(f"--format {fmt!r}: expected table, csv or json (parquet with -o FILE)")
    store = open_store(create=False)
    result = run_sql(store, query if query is not None else analysis_sql(analysis), rev)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if out is not None:
        chosen = fmt if fmt != "table" else {".json": "json", ".parquet": "parquet"}.get(out.suffix.lower(), "csv")
        _write_result(result, out, chosen, store.root)
        if not is_quiet():
            stderr_console.print(f"wrote {len(result.rows)} row(s) to {out}", highlight=False, markup=False)
    elif fmt == "json":
        print_json(result.as_dicts())
    elif fmt == "csv":
        sys.stdout.write(_csv_text(result))
    else:
        print_table(result.columns, result.rows, title=analysis)


def diversity(
    ref: str = typer.Argument(...),
    verbs: int = typer.Option(20, "--verbs", help="How many root verbs to show."),
    nouns: int = typer.Option(4, "--nouns", help="Direct objects per verb."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the verb/object chart to this PNG."),
    processes: int = typer.Option(0, "--processes", "-j", help="spaCy worker processes (0: one per core)."),
    as_json: bool = typer.Option(False, "--json"),
    no_cache: bool = typer.Option(False, "--no-cache", help="Parse every instruction again, ignoring (and not "
                                                            "updating) the store's parse cache."),
) -> None:
    """Root verb / direct object diversity of the instructions (spaCy), as in the Alpaca analysis. Each
    instruction's parse is kept in the store's cache: texts seen before are not parsed again."""
    from alpaca_data.analyze.diversity import VerbNounCounter, plot_verb_noun
    from alpaca_data.progress import progress_bar

    if plot is not None and (plot.is_dir() or not plot.parent.is_dir()):
        raise UserError(f"--plot {plot}: give a file path in an existing folder")
    store = open_store(create=False)
    manifest = store.resolve(ref)
    # only the instruction column, a batch at a time (not every record as a dict)
    instructions = [text for batch in store.iter_batches(manifest) for text in batch.column("instruction").to_pylist()]
    # the parse workers are forked before the progress bar starts its thread
    with VerbNounCounter(instructions, processes=processes, cache_root=None if no_cache else store.root) as counter:
        with progress_bar("parsing instructions", total=counter.total, enabled=not is_quiet()) as tick:
            stats = counter.stats(tick)
    top = stats.top(verbs, nouns)
    summary = {"instructions": stats.total, "distinct_root_verbs": stats.distinct_verbs,
               "distinct_verb_object_pairs": len(stats.pairs), "no_verb_root": stats.no_verb_root,
               "verb_without_object": stats.no_object,
               "top": [{"verb": v, "count": c, "objects": dict(o)} for v, c, o in top]}
    if plot is not None:
        plot_verb_noun(stats, plot, verbs, nouns, title=f"{manifest.dataset}@{manifest.short_id}: root verbs and objects")
    if as_json:
        print_json(summary)
        return
    print(f"{stats.total} instructions: {stats.distinct_verbs} distinct root verbs, {len(stats.pairs)} verb-object "
          f"pairs; {stats.no_verb_root} without a verb root, {stats.no_object} verbs without a direct object")
    print_table(["verb", "count", "top direct objects"],
                [(v, c, ", ".join(f"{noun} ({n})" for noun, n in o)) for v, c, o in top])
    if plot is not None and not is_quiet():
        stderr_console.print(f"chart written to {plot}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command()(sql)
    app.command()(diversity)
