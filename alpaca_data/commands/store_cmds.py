"""CLI: datasets, log, show, tag, diff, fsck (what the store holds, and whether it is intact)."""
from __future__ import annotations

import json
import sys

import typer

from alpaca_data.commands._common import open_store, print_json, print_table, shorten
from alpaca_data.errors import UserError
from alpaca_data.progress import is_quiet, stderr_console
from alpaca_data.store import Manifest
from alpaca_data.store.ops import diff as diff_revisions
from alpaca_data.store.ops import fsck as fsck_store


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def datasets(as_json: bool = typer.Option(False, "--json")) -> None:
    """Datasets in the store with their main revision (a damaged dataset is reported alone)."""
    store = open_store(create=False)
    rows = []
    for name in store.datasets():
        row = {"dataset": name, "main": None, "records": None, "revisions": len(store.revision_ids(name)),
               "tags": sorted(store.tags(name)), "problem": None}
        try:
            row["main"] = store.main_id(name)
            if row["main"]:
                row["records"] = store.load(name, row["main"]).record_count
        except UserError as error:
            row["problem"] = str(error)
            _note(str(error))
        rows.append(row)
    if as_json:
        print_json(rows)
    else:
        print_table(["dataset", "main", "records", "revisions", "tags"],
                    [(r["dataset"], "damaged" if r["problem"] else (r["main"] or "-")[:12],
                      "-" if r["records"] is None else r["records"], r["revisions"], " ".join(r["tags"]))
                     for r in rows], title=str(store.root))


def log(
    dataset: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Revisions of a dataset, newest first (damaged ones are named on stderr)."""
    store = open_store(create=False)
    manifests, damaged = store.scan(dataset)
    for _, reason in damaged:
        _note(reason)
    try:
        main = store.main_id(dataset)
    except UserError as error:
        main = None
        _note(str(error))
    tags: dict[str, list[str]] = {}
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
            ("columns", ", ".join(data.get("columns", []))), ("command", data["recipe"].get("command")),
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
    name: str = typer.Argument(..., help="Tag name, e.g. v1 (not 'main', and not like a revision id)."),
    force: bool = typer.Option(False, "--force", help="Move (or repair) the tag if it already exists."),
) -> None:
    """Name a revision: NAME@TAG then resolves to it."""
    manifest = open_store(create=False).tag(ref, name, force=force)
    if not is_quiet():
        stderr_console.print(f"{manifest.dataset}@{name} -> {manifest.short_id}", highlight=False, markup=False)
    print(manifest.id)


def diff(
    ref_a: str = typer.Argument(...),
    ref_b: str = typer.Argument(...),
    examples: int = typer.Option(3, "--examples", "-n", help="Examples to show per kind of change."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Added / removed / changed records between two revisions (keyed by normalised instruction + input)."""
    result = diff_revisions(open_store(create=False), ref_a, ref_b, examples=max(examples, 0))
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


def fsck(
    fast: bool = typer.Option(False, "--fast", help="Check file hashes only, not the record hash of each revision."),
    repair: bool = typer.Option(False, "--repair", help="Reset a damaged main to the newest intact revision, "
                                                        "remove damaged tags and interrupted writes."),
) -> None:
    """Verify every file of every revision against its hash, and every ref."""
    store = open_store(create=False)
    report = fsck_store(store, deep=not fast, repair=repair)
    for note in report.notes:
        _note(note)
    for repaired in report.repairs:
        print(f"repaired: {repaired}", file=sys.stderr)
    for problem in report.problems:
        print(problem, file=sys.stderr)
    if report.problems:
        raise UserError(f"fsck: {len(report.problems)} problem(s) in {report.checked_revisions} revision(s) of {store.root}")
    print(f"fsck: {report.checked_revisions} revision(s) ok" + (f", {len(report.repairs)} repair(s)" if report.repairs else ""))


def register(app: typer.Typer) -> None:
    for command in (datasets, log, show, tag, diff, fsck):
        app.command()(command)
