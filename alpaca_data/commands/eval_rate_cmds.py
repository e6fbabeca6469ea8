"""`alpaca-data eval rate A B`: blind pairwise comparison by people, in a web page (see `alpaca_data.eval.rating`)."""
from __future__ import annotations

import sys

import typer

from alpaca_data.commands._common import open_store
from alpaca_data.errors import UserError
from alpaca_data.eval.pairs import compare
from alpaca_data.eval.rating import RatingSession, build_app, default_dataset, listen, parse_raters, serve, url_of
from alpaca_data.progress import is_quiet, stderr_console


def _say(message: str) -> None:
    if not is_quiet():
        stderr_console.print(message, highlight=False, markup=False)


def _report_commit(session: RatingSession) -> None:
    """Commit the journal and print the annotations revision id (stdout, last line)."""
    result = session.commit()
    if result is None:
        _say(f"no judgments yet: nothing committed (journal {session.journal.path})")
        return
    progress = ", ".join(f"{rater} {done}/{len(session.keys)}" for rater, done in session.progress().items())
    state = "new revision" if result.created else "unchanged"
    _say(f"{session.dataset}@{result.short_id}: {result.manifest.record_count} judgments ({progress}); {state}")
    print(result.id, flush=True)


def rate(
    ref_1: str = typer.Argument(..., help="Outputs revision of output_1 (the baseline), e.g. davinci@main."),
    ref_2: str = typer.Argument(..., help="Outputs revision of output_2 (the model being evaluated)."),
    raters: str = typer.Option(None, "--raters", help="Comma-separated rater names (default: any name typed in)."),
    dataset: str = typer.Option(None, "--dataset", help="Annotations dataset (default ratings-<A>-vs-<B>)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port; 0 picks any free one."),
    seed: int = typer.Option(0, "--seed", help="Seeds each rater's item order (placements come from a secret key "
                                               "made with the journal)."),
    limit: int = typer.Option(None, "--limit", min=1, help="Rate only the first N shared items."),
    commit_only: bool = typer.Option(False, "--commit-only", help="Commit the judgments journalled so far; no server."),
) -> None:
    """Blind pairwise rating by people: a page shows one instruction with two unnamed answers (random sides);
    raters choose A / B / tie (keys 1/2/3), can undo, and resume. Each listed rater gets a link of their own
    (printed as `NAME: URL`, carrying their token). Judgments are journalled as they are made;
    the annotations revision is committed on Ctrl-C / SIGTERM, on POST /api/commit, or with --commit-only."""
    names = parse_raters(raters)
    store = open_store(create=False)
    comparison = compare(store, ref_1, ref_2, limit=limit)
    session = RatingSession(store, comparison, dataset=dataset or default_dataset(comparison.manifest_1,
                                                                                 comparison.manifest_2),
                            seed=seed, raters=names, limit=limit)
    if commit_only:
        session.open(append=False)
        try:
            if not session.rows():
                raise UserError(f"{session.journal.path}: no judgments to commit yet")
            _report_commit(session)
        finally:
            session.close()
        return
    sock = listen(host, port)
    try:
        session.open()
        url = url_of(sock)
        _say(f"rating {len(session.keys)} items blind: {comparison.generator_1} ({comparison.manifest_1.dataset}@"
             f"{comparison.manifest_1.short_id}) vs {comparison.generator_2} ({comparison.manifest_2.dataset}@"
             f"{comparison.manifest_2.short_id}); journal {session.journal.path}")
        for name in names or []:  # each rater's own link: printed even with --quiet, the only way in
            print(f"{name}: {session.rater_url(url, name)}", file=sys.stderr, flush=True)
        if names is None:
            _say("no --raters: each browser claims the name typed in it, and only it can rate as that name")
        _say("Ctrl-C stops the server and commits the judgments")
        print(url, flush=True)
        serve(build_app(session), sock)
        try:
            _report_commit(session)
        except UserError as error:
            raise UserError(f"{error} (the judgments are kept in {session.journal.path}; commit them later with "
                            f"`eval rate {ref_1} {ref_2} --commit-only`)") from None
    finally:
        session.close()
        sock.close()
    sys.stdout.flush()


def register(eval_app: typer.Typer) -> None:
    eval_app.command("rate")(rate)
