"""CLI: validate, import, export (record files in and out of the store)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from alpaca_data.commands._common import field_map_option, open_store, print_json
from alpaca_data.errors import UsageError, UserError
from alpaca_data.importer import import_files
from alpaca_data.progress import is_quiet, stderr_console
from alpaca_data.store import Store
from alpaca_data.store.ops import EXPORT_FORMATS
from alpaca_data.store.ops import export as export_revision
from alpaca_data.validate import validate_files

MAP_HELP = "Field alias SOURCE=TARGET, e.g. response=output (repeatable)."
MAX_PROBLEMS_HELP = "Print at most this many problems (0: all that were kept)."


def _report_problems(problems: list, total: int, limit: int = 50) -> None:
    shown = problems if limit <= 0 else problems[:limit]
    for problem in shown:
        print(str(problem), file=sys.stderr)
    if total > len(shown):
        print(f"... and {total - len(shown)} more problems (--max-problems 0 prints up to 10,000 per file)",
              file=sys.stderr)


def validate(
    paths: List[str] = typer.Argument(..., help="JSON array, JSONL, Parquet or CSV files."),
    map_: Optional[List[str]] = typer.Option(None, "--map", help=MAP_HELP),
    strict: bool = typer.Option(False, "--strict", help="Unknown fields and empty outputs are errors too."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report on stdout."),
    max_problems: int = typer.Option(50, "--max-problems", help=MAX_PROBLEMS_HELP),
) -> None:
    """Check record files against the schema; report every problem as `path:record N: field: reason`.

    A file that validates imports: the same checks decide both (including one type per field)."""
    reports = validate_files(paths, field_map_option(map_), strict, show_progress=not is_quiet())
    problems = [p for report in reports for p in report.problems]
    total = sum(report.problem_count for report in reports)
    valid = sum(report.valid for report in reports)
    if as_json:
        print_json({"ok": not total, "problem_count": total,
                    "files": [{"path": r.path, "format": r.format, "kind": r.kind, "valid_records": r.valid,
                               "problems": r.problem_count, "sha256": r.sha256, "no_input": r.no_input}
                              for r in reports],
                    "problems": [str(p) for p in problems]})
    else:
        _report_problems(problems, total, max_problems)
        print(f"{len(paths)} file(s), {valid} valid record(s): {'valid' if not total else f'{total} problem(s)'}")
        no_input = sum(report.no_input for report in reports)
        if no_input:
            print(f"{no_input} record{'s' if no_input != 1 else ''} had no input field (read as input '')")
    if total:
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
    mapping = field_map_option(map_)
    Store.check_dataset_name(dataset)  # before anything is read or the store is created
    store = open_store()
    outcome = import_files(store, paths, dataset, message=message, field_map=mapping, strict=strict,
                           show_progress=not is_quiet())
    if not outcome.ok:
        _report_problems(outcome.problems, outcome.problem_count, max_problems)
        raise UserError(f"import refused: {outcome.problem_count} problem(s); the store is unchanged")
    result = outcome.result
    if not is_quiet():
        if result.created:
            what = f"new revision of {dataset}: {result.manifest.record_count} records"
        else:
            what = f"identical content already stored as {dataset}@{result.short_id}; nothing new written"
            if result.moved_main:
                what += " (main moved to it)"
        stderr_console.print(what, highlight=False, markup=False)
        if outcome.no_input:
            print(f"{outcome.no_input} record{'s' if outcome.no_input != 1 else ''} had no input field: imported "
                  "with input ''", file=sys.stderr)
    print(result.id)


def export(
    ref: str = typer.Argument(...),
    fmt: str = typer.Option("json", "--format", "-f", help=f"{', '.join(EXPORT_FORMATS)} (json: Alpaca-style array)."),
    out: Optional[Path] = typer.Option(None, "-o", "--output", help="File to write."),
    core_only: bool = typer.Option(False, "--core-only", help="Only instruction, input, output."),
    hub_layout: Optional[Path] = typer.Option(None, "--hub-layout",
                                              help="Write the files a Hub push would (shards, card, manifest) here."),
    license: Optional[str] = typer.Option(None, "--license", help="Hub layout: card licence (default cc-by-nc-4.0)."),
    language: Optional[str] = typer.Option(None, "--language", help="Hub layout: language code(s), comma-separated."),
    pretty_name: Optional[str] = typer.Option(None, "--pretty-name", help="Hub layout: card title."),
    repo: Optional[str] = typer.Option(None, "--repo", help="Hub layout: the repo USER/NAME the card will name."),
    shard_records: Optional[int] = typer.Option(None, "--shard-records", min=1,
                                                help="Hub layout: records per Parquet shard (default ~256 MB)."),
) -> None:
    """Write a revision to a file (streamed), or to a folder in the Hub's dataset layout."""
    if (out is None) == (hub_layout is None):
        raise UsageError("give either -o FILE or --hub-layout DIR")
    store = open_store(create=False)
    if hub_layout is not None:
        from alpaca_data.hub import write_hub_layout

        layout = write_hub_layout(store, ref, hub_layout, shard_records=shard_records, license=license,
                                  language=language, pretty_name=pretty_name, repo_id=repo)
        if not is_quiet():
            stderr_console.print(f"wrote {layout.manifest.dataset}@{layout.manifest.short_id} "
                                 f"({layout.manifest.record_count} records, {len(layout.shards)} shard(s)) to "
                                 f"{hub_layout}; load with datasets.load_dataset({str(hub_layout)!r})",
                                 highlight=False, markup=False, soft_wrap=True)
        print(layout.manifest.id)
        return
    manifest, count = export_revision(store, ref, fmt, out, core_only=core_only, progress=not is_quiet())
    if not is_quiet():
        stderr_console.print(f"wrote {count} records of {manifest.dataset}@{manifest.short_id} to {out}",
                             highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command("import")(import_)
    app.command()(export)
