"""CLI: validate, import, log, show, tag, diff, export, fsck, sql, datasets."""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from alpaca_data.analyze.sql import analysis_sql, list_analyses, run_sql
from alpaca_data.commands._common import field_map_option, open_store, print_json, print_table, shorten
from alpaca_data.errors import UsageError, UserError
from alpaca_data.importer import import_files
from alpaca_data.progress import is_quiet, stderr_console
from alpaca_data.store import Manifest
from alpaca_data.store.ops import diff as diff_revisions
from alpaca_data.store.ops import export as export_revision
from alpaca_data.store.ops import fsck as fsck_store
from alpaca_data.validate import validate_file

MAP_HELP = "Field alias SOURCE=TARGET, e.g. response=output (repeatable)."
MAX_PROBLEMS_HELP = "Print at most this many problems (0: all)."


def _report_problems(problems: list, limit: int = 50) -> None:
    shown = problems if limit <= 0 else problems[:limit]
    for problem in shown:
        print(str(problem), file=sys.stderr)
    if len(problems) > len(shown):
        print(f"... and {len(problems) - len(shown)} more problems (--max-problems 0 prints all)", file=sys.stderr)


def validate(
    paths: List[str] = typer.Argument(..., help="JSON array, JSONL, Parquet or CSV files."),
    map_: Optional[List[str]] = typer.Option(None, "--map", help=MAP_HELP),
    strict: bool = typer.Option(False, "--strict", help="Unknown fields and empty outputs are errors too."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report on stdout."),
    max_problems: int = typer.Option(50, "--max-problems", help=MAX_PROBLEMS_HELP),
) -> None:
    """Check record files against the schema; report every problem as `path:record N: field: reason`."""
    mapping = field_map_option(map_)
    total_records, all_problems, files = 0, [], []
    for path in paths:
        report = validate_file(path, mapping, strict=strict, show_progress=not is_quiet())
        total_records += len(report.records)
        all_problems.extend(report.problems)
        files.append({"path": path, "format": report.format, "kind": report.kind, "valid_records": len(report.records),
                      "problems": len(report.problems), "sha256": report.sha256})
    if as_json:
        print_json({"ok": not all_problems, "files": files, "problems": [str(p) for p in all_problems]})
    else:
        _report_problems(all_problems, max_problems)
        verdict = "valid" if not all_problems else f"{len(all_problems)} problem(s)"
        print(f"{len(paths)} file(s), {total_records} valid record(s): {verdict}")
    if all_problems:
        raise typer.Exit(1)


def import_(
    paths: List[str] = typer.Argument(..., help="Files to import as one revision, in this order."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name in the store."),
    message: str = typer.Option("", "-m", "--message", help="What this revision is."),
    map_: Optional[List[str]] = typer.Option(None, "--map", help=MAP_HELP),
    strict: bool = typer.Option(False, "--strict"),
    max_problems: int = typer.Option(50, "--max-problems", help=MAX_PROBLEMS_HELP),
) -> None:
    """Validate files, then store them as a new revision (printed as the last line)."""
    store = open_store()
    outcome = import_files(store, paths, dataset, message=message, field_map=field_map_option(map_),
                           strict=strict, show_progress=not is_quiet())
    if not outcome.ok:
        _report_problems(outcome.problems, max_problems)
        raise UserError(f"import refused: {len(outcome.problems)} problem(s); the store is unchanged")
    result = outcome.result
    if not is_quiet():
        if result.created:
            what = f"new revision of {dataset}: {result.record_count} records"
        else:
            what = f"identical content already stored as {dataset}@{result.short_id}; nothing new written"
            if result.moved_main:
                what += " (main moved to it)"
        stderr_console.print(what)
    print(result.id)


def log(
    dataset: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Revisions of a dataset, newest first."""
    store = open_store(create=False)
    manifests = store.log(dataset)
    main = store.main_id(dataset)
    tags = {}
    for tag, target in store.tags(dataset).items():
        tags.setdefault(target, []).append(tag)
    if as_json:
        print_json([{**_brief(m), "main": m.id == main, "tags": tags.get(m.id, [])} for m in manifests])
        return
    rows = [(m.short_id, ("main " if m.id == main else "") + " ".join(tags.get(m.id, [])), m.data["created_at"][:19],
             m.record_count, m.data["recipe"].get("command", ""), ",".join(p[:12] for p in m.parents),
             shorten(m.data.get("message", ""), 50)) for m in manifests]
    print_table(["id", "refs", "created (UTC)", "records", "command", "parents", "message"], rows, title=dataset)


def _brief(manifest: Manifest) -> dict:
    data = manifest.data
    return {"id": data["id"], "dataset": data["dataset"], "created_at": data["created_at"],
            "records": data["record_count"], "command": data["recipe"].get("command"),
            "parents": data["parents"], "message": data.get("message", "")}


def show(
    ref: str = typer.Argument(..., help="NAME, NAME@main, NAME@TAG or NAME@<id prefix>."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole manifest as JSON."),
) -> None:
    """A revision's manifest: lineage, recipe, stats and files."""
    store = open_store(create=False)
    manifest = store.resolve(ref)
    if as_json:
        print_json(manifest.data)
        return
    data = manifest.data
    stats = data["stats"]
    rows = [("id", data["id"]), ("dataset", data["dataset"]), ("created", data["created_at"]),
            ("message", data.get("message", "")), ("parents", ", ".join(data["parents"]) or "-"),
            ("records", data["record_count"]), ("with input", f"{stats['with_input']} ({stats['with_input_share']:.1%})"),
            ("duplicate instructions", stats["duplicate_instructions"]), ("empty outputs", stats["empty_output"]),
            ("columns", ", ".join(data["columns"])), ("command", data["recipe"].get("command")),
            ("options", json.dumps(data["recipe"].get("options", {}), ensure_ascii=False)),
            ("sources", "; ".join(f"{s.get('path', s.get('revision', '?'))} sha256:{s['sha256'][:12]}"
                                  for s in data["recipe"].get("sources", [])) or "-"),
            ("tool version", data["recipe"].get("tool_version")), ("files", ", ".join(data["files"])),
            ("location", str(manifest.path))]
    for name, summary in stats["words"].items():
        rows.append((f"{name} words", f"mean {summary['mean']}, median {summary['median']}, p95 {summary['p95']}"))
    for key, value in data.get("extra", {}).items():
        rows.append((key, shorten(json.dumps(value, ensure_ascii=False), 200)))
    print_table(["field", "value"], rows, title=f"{data['dataset']}@{manifest.short_id}")


def tag(
    ref: str = typer.Argument(...),
    name: str = typer.Argument(..., help="Tag name, e.g. v1."),
    force: bool = typer.Option(False, "--force", help="Move the tag if it already exists."),
) -> None:
    """Name a revision: NAME@TAG then resolves to it."""
    manifest = open_store(create=False).tag(ref, name, force=force)
    if not is_quiet():
        stderr_console.print(f"{manifest.dataset}@{name} -> {manifest.short_id}")
    print(manifest.id)


def diff(
    ref_a: str = typer.Argument(...),
    ref_b: str = typer.Argument(...),
    examples: int = typer.Option(3, "--examples", "-n", help="Examples to show per kind of change."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Added / removed / changed records between two revisions (keyed by normalised instruction + input)."""
    result = diff_revisions(open_store(create=False), ref_a, ref_b)
    if as_json:
        print_json({"a": result.a.id, "b": result.b.id, **result.summary(),
                    "examples": {"added": result.added[:examples], "removed": result.removed[:examples],
                                 "changed": [{"before": a, "after": b} for a, b in result.changed[:examples]]}})
        return
    counts = result.summary()
    print(f"{result.a.dataset}@{result.a.short_id} -> {result.b.dataset}@{result.b.short_id}: "
          + ", ".join(f"{value} {name}" for name, value in counts.items()))
    for sign, records in (("+", result.added), ("-", result.removed)):
        for record in records[:examples]:
            print(f"  {sign} {shorten(record['instruction'])}")
    for before, after in result.changed[:examples]:
        print(f"  ~ {shorten(after['instruction'])}\n      output: {shorten(before['output'], 40)!r} -> "
              f"{shorten(after['output'], 40)!r}")


def export(
    ref: str = typer.Argument(...),
    fmt: str = typer.Option("json", "--format", "-f", help="json (Alpaca-style array), jsonl or parquet."),
    out: Optional[Path] = typer.Option(None, "-o", "--output", help="File to write."),
    core_only: bool = typer.Option(False, "--core-only", help="Only instruction, input, output."),
    hub_layout: Optional[Path] = typer.Option(None, "--hub-layout",
                                              help="Write the files a Hub push would (shards, card, manifest) here."),
) -> None:
    """Write a revision to a file, or to a folder in the Hub's dataset layout."""
    if (out is None) == (hub_layout is None):
        raise UsageError("give either -o FILE or --hub-layout DIR")
    store = open_store(create=False)
    if hub_layout is not None:
        from alpaca_data.hub import write_hub_layout

        layout = write_hub_layout(store, ref, hub_layout)
        if not is_quiet():
            stderr_console.print(f"wrote {len(layout.files)} files to {hub_layout} "
                                 f"(load with datasets.load_dataset({str(hub_layout)!r}))")
        return
    manifest, count = export_revision(store, ref, fmt, out, core_only=core_only)
    if not is_quiet():
        stderr_console.print(f"wrote {count} records of {manifest.dataset}@{manifest.short_id} to {out}")


def fsck(
    fast: bool = typer.Option(False, "--fast", help="Check file hashes only, not the record hash of each revision."),
) -> None:
    """Verify every file of every revision against its hash, and every ref."""
    store = open_store(create=False)
    report = fsck_store(store, deep=not fast)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    for problem in report.problems:
        print(problem, file=sys.stderr)
    if report.problems:
        raise UserError(f"fsck: {len(report.problems)} problem(s) in {report.checked_revisions} revision(s) of {store.root}")
    print(f"fsck: {report.checked_revisions} revision(s) ok")


def sql(
    query: Optional[str] = typer.Argument(None, help="SQL; views: records, rejections; table: revisions."),
    rev: Optional[str] = typer.Option(None, "--rev", "-r", help="Revision the `records` view reads."),
    analysis: Optional[str] = typer.Option(None, "--analysis", "-a", help="A named query from analyses/."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
) -> None:
    """Query revisions with DuckDB."""
    if (query is None) == (analysis is None):
        names = ", ".join(list_analyses())
        raise UsageError(f"give either a query or --analysis NAME (analyses: {names})")
    if fmt not in ("table", "csv", "json"):
        raise UsageError(f"--format {fmt!r}: expected table, csv or json")
    text = query if query is not None else analysis_sql(analysis)
    result = run_sql(open_store(create=False), text, rev)
    if fmt == "json":
        print_json(result.as_dicts())
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
        sys.stdout.write(buffer.getvalue())
    else:
        print_table(result.columns, result.rows, title=analysis)


def datasets(as_json: bool = typer.Option(False, "--json")) -> None:
    """Datasets in the store with their main revision."""
    store = open_store(create=False)
    rows = []
    for name in store.datasets():
        main = store.main_id(name)
        count = store.resolve(f"{name}@main").record_count if main else 0
        rows.append({"dataset": name, "main": main, "records": count, "revisions": len(store.revision_ids(name)),
                     "tags": sorted(store.tags(name))})
    if as_json:
        print_json(rows)
    else:
        print_table(["dataset", "main", "records", "revisions", "tags"],
                    [(r["dataset"], (r["main"] or "-")[:12], r["records"], r["revisions"], " ".join(r["tags"]))
                     for r in rows], title=str(store.root))


def diversity(
    ref: str = typer.Argument(...),
    verbs: int = typer.Option(20, "--verbs", help="How many root verbs to show."),
    nouns: int = typer.Option(4, "--nouns", help="Direct objects per verb."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the verb/object chart to this PNG."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Root verb / direct object diversity of the instructions (spaCy), as in the Alpaca analysis."""
    from alpaca_data.analyze.diversity import plot_verb_noun, verb_noun_stats
    from alpaca_data.progress import progress_bar

    store = open_store(create=False)
    manifest = store.resolve(ref)
    instructions = [r["instruction"] for r in store.read_records(manifest)]
    with progress_bar("parsing instructions", total=len(instructions), enabled=not is_quiet()) as tick:
        stats = verb_noun_stats(instructions, tick=tick)
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
        stderr_console.print(f"chart written to {plot}")


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command("import")(import_)
    for command in (log, show, tag, diff, export, fsck, sql, datasets, diversity):
        app.command()(command)
