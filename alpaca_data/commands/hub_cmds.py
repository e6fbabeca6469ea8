"""CLI: push, pull, card (publishing to the Hugging Face Hub; `export --hub-layout` writes the files locally)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from alpaca_data.commands._common import open_store, print_json
from alpaca_data.progress import is_quiet, stderr_console

LICENSE_HELP = "Licence id for the card metadata (default cc-by-nc-4.0)."
LANGUAGE_HELP = "Language code(s), comma-separated (default en)."
PRETTY_HELP = "Card title / pretty_name (default: DATASET (ID PREFIX))."
SHARD_HELP = "Records per Parquet shard (default: shards of about 256 MB)."


def _quiet_hub() -> None:
    from huggingface_hub.utils import disable_progress_bars

    if is_quiet():
        disable_progress_bars()


def push(
    ref: str = typer.Argument(..., help="Revision to publish, e.g. alpaca@main or alpaca@v1."),
    repo: str = typer.Option(..., "--repo", help="Hub dataset repo USER/NAME (created if needed)."),
    tag: Optional[List[str]] = typer.Option(None, "--tag", help="Also tag the Hub commit (repeatable)."),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
    branch: str = typer.Option("main", "--branch", help="Branch to commit to (created from main if missing)."),
    license: Optional[str] = typer.Option(None, "--license", help=LICENSE_HELP),
    language: Optional[str] = typer.Option(None, "--language", help=LANGUAGE_HELP),
    pretty_name: Optional[str] = typer.Option(None, "--pretty-name", help=PRETTY_HELP),
    shard_records: Optional[int] = typer.Option(None, "--shard-records", min=1, help=SHARD_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Publish a revision: Parquet shards, README.md card and alpaca_manifest.json in one Hub commit, tagged rev-<id>.

    Token from HF_TOKEN (or `hf auth login`), endpoint from HF_ENDPOINT. Pushing the same revision again is a no-op.
    Prints the Hub commit id last.
    """
    from alpaca_data.hub.push import push as push_revision

    _quiet_hub()
    result = push_revision(open_store(create=False), ref, repo, tags=list(tag or []), private=private, branch=branch,
                           shard_records=shard_records, license=license, language=language, pretty_name=pretty_name)
    if as_json:
        print_json({"revision": result.manifest.id, "repo": result.repo_id, "branch": result.branch,
                    "commit": result.commit, "created": result.created, "tags": result.tags,
                    "new_tags": result.new_tags, "url": result.url})
        return
    if not is_quiet():
        what = "pushed" if result.created else "already on the Hub (no new commit)"
        stderr_console.print(f"{result.manifest.dataset}@{result.manifest.short_id} {what}: {result.url} "
                             f"@ {result.commit[:12]} (tags: {', '.join(result.tags)})", highlight=False, soft_wrap=True)
    print(result.commit)


def pull(
    spec: str = typer.Argument(..., help="USER/NAME or USER/NAME@REV (branch, tag or commit; default main)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d",
                                          help="Dataset to commit into (default: the pushed dataset's name)."),
    message: str = typer.Option("", "-m", "--message"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Download a pinned Hub revision, verify and validate it, and store it as a revision (id printed last)."""
    from alpaca_data.hub.pull import pull as pull_revision

    _quiet_hub()
    outcome = pull_revision(spec, dataset=dataset, message=message)  # opens the store only once all is checked
    result = outcome.result
    if as_json:
        print_json({"revision": result.manifest.id, "dataset": result.manifest.dataset, "repo": outcome.repo_id,
                    "commit": outcome.commit, "created": result.created, "verified": outcome.verified})
        return
    if not is_quiet():
        check = "records match the published revision id" if outcome.verified else "no alpaca-kit manifest"
        state = "new revision" if result.created else "already stored"
        stderr_console.print(f"{outcome.repo_id}@{outcome.commit[:12]} -> {result.manifest.dataset}@"
                             f"{result.manifest.short_id} ({state}, {result.manifest.record_count} records; {check})",
                             highlight=False, soft_wrap=True)
    print(result.manifest.id)


def card(
    ref: str = typer.Argument(...),
    out: Optional[Path] = typer.Option(None, "-o", "--output", help="File to write (default: stdout)."),
    license: Optional[str] = typer.Option(None, "--license", help=LICENSE_HELP),
    language: Optional[str] = typer.Option(None, "--language", help=LANGUAGE_HELP),
    pretty_name: Optional[str] = typer.Option(None, "--pretty-name", help=PRETTY_HELP),
    repo: Optional[str] = typer.Option(None, "--repo", help="Hub repo USER/NAME the card will live in (citation URL)."),
) -> None:
    """Render a revision's dataset card (README.md) without pushing."""
    from alpaca_data.durable import atomic_write
    from alpaca_data.errors import UserError
    from alpaca_data.hub import card_text

    text = card_text(open_store(create=False), ref, license=license, language=language, pretty_name=pretty_name,
                     repo_id=repo)
    if out is None:
        typer.echo(text, nl=False)
        return
    if out.is_dir() or not out.parent.exists():
        raise UserError(f"{out}: give a file path in an existing folder")
    atomic_write(out, text.encode("utf-8"))
    if not is_quiet():
        stderr_console.print(f"wrote the card of {ref} to {out}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("push")(push)
    app.command("pull")(pull)
    app.command("card")(card)
