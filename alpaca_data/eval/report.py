"""`eval report`: what an annotations revision says about two models, and where those models came from.

Names follow AlpacaEval: generator_2 is "the model", generator_1 "the baseline", and the win rate is the
model's. Every annotation row counts once, as AlpacaEval counts the rows of its annotations (an item judged in
both orders, or by several raters, gives several rows); the bootstrap resamples whole items so those repeated
rows do not narrow the interval.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from alpaca_data.errors import UserError
from alpaca_data.eval import metrics
from alpaca_data.records import key_of
from alpaca_data.store import Store

REQUIRED_FIELDS = ("instruction", "generator_1", "generator_2", "annotator", "preference")
COUNTING = ("each annotation row counts once, as AlpacaEval counts its annotation rows (an item judged in both "
            "orders or by several raters gives several rows); the bootstrap resamples whole items")
UNCATEGORISED = "(none)"


def _item(row: dict[str, Any]) -> str:
    return str(row["item_id"]) if row.get("item_id") is not None else key_of(row)


def _annotation_rows(store: Store, ref: str) -> tuple[Any, list[dict[str, Any]]]:
    manifest = store.resolve(ref)
    missing = [field for field in REQUIRED_FIELDS if field not in manifest.data.get("columns", [])]
    if missing:
        raise UserError(f"{manifest.dataset}@{manifest.short_id} is not an annotations revision: it has no "
                        f"{', '.join(missing)} field(s) (make one with `eval import`, `eval judge` or `eval rate`)")
    rows = store.read_records(manifest)
    if not rows:
        raise UserError(f"{manifest.dataset}@{manifest.short_id} holds no annotation rows")
    pairs = sorted({(row.get("generator_1"), row.get("generator_2")) for row in rows}, key=str)
    if len(pairs) > 1:
        shown = "; ".join(f"{a} vs {b}" for a, b in pairs[:5])
        raise UserError(f"{manifest.dataset}@{manifest.short_id} holds judgments of {len(pairs)} pairs of "
                        f"generators ({shown}); a report compares one baseline with one model")
    return manifest, rows


def _lineage_link(store: Store, side: str, link: Any) -> dict[str, Any]:
    """One outputs revision named by the annotations' recipe, followed to its model and training data; every
    missing piece is reported as unknown (None), never raised."""
    out: dict[str, Any] = {"side": side, "dataset": None, "revision_id": None, "short_id": None, "generator": None,
                           "found": False, "model": None, "training_data": None}
    if not isinstance(link, dict):
        return out
    out.update(dataset=link.get("dataset"), revision_id=link.get("revision_id"), generator=link.get("generator"))
    if out["revision_id"]:
        out["short_id"] = str(out["revision_id"])[:12]
    try:
        manifest = store.load(str(out["dataset"]), str(out["revision_id"]))
    except Exception:  # a revision of another store, or damaged: the chain stops here, shown as unknown
        return out
    out["found"] = True
    recipe = manifest.data.get("recipe") or {}
    out["generator"] = out["generator"] or recipe.get("generator")
    model = recipe.get("model")
    if isinstance(model, dict):
        out["model"] = {"spec": model.get("spec"), "path": model.get("path")}
        lineage = model.get("lineage")
        data = lineage.get("dataset") if isinstance(lineage, dict) else None
        if isinstance(data, dict):
            out["training_data"] = {"ref": data.get("ref"), "dataset": data.get("dataset"),
                                    "revision_id": data.get("revision_id")}
    return out


def _lineage(store: Store, manifest: Any) -> dict[str, Any]:
    recipe = manifest.data.get("recipe") or {}
    return {"annotations": {"dataset": manifest.dataset, "revision_id": manifest.id, "short_id": manifest.short_id,
                            "command": recipe.get("command")},
            "outputs": [_lineage_link(store, side, recipe.get(side)) for side in ("output_1", "output_2")]}


def _headline(baseline: str, model: str, wins: int, losses: int, ties: int, rate: float | None,
              error: float | None) -> str:
    if rate is None:
        return f"{baseline} vs {model}: no verdicts (no row has a preference)"
    if wins > losses:
        verdict = f"{model} wins {wins} vs {losses}"
    elif losses > wins:
        verdict = f"{baseline} wins {losses} vs {wins}"
    else:
        verdict = f"even: {wins} wins each"
    figure = f"win rate of {model} {rate:.1f}%" + (f" +- {error:.1f}" if error is not None else "")
    return f"{baseline} vs {model}: {verdict}, {ties} ties ({figure})"


def _categories(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[float | None]] = defaultdict(list)
    for row in rows:
        groups[row.get("category") or UNCATEGORISED].append(row.get("preference"))
    out = []
    for name in sorted(groups):
        figures = metrics.alpaca_eval_winrate(groups[name])
        out.append({"category": name, "wins": figures["n_wins"], "losses": figures["n_wins_base"],
                    "ties": figures["n_draws"], "n_total": figures["n_total"], "win_rate": figures["win_rate"],
                    "standard_error": figures["standard_error"]})
    return out


def _avg_length(rows: list[dict[str, Any]]) -> int | None:
    """The leaderboard's avg_length: the model's mean output length in characters, truncated to an int."""
    texts = [row["output_2"] for row in rows if row.get("output_2") is not None]
    return int(sum(map(len, texts)) / len(texts)) if texts else None


def build_report(store: Store, ref: str, *, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Everything `eval report` shows, as one JSON-safe dict (see the module docstring for how rows count)."""
    manifest, rows = _annotation_rows(store, ref)
    baseline, model = str(rows[0].get("generator_1")), str(rows[0].get("generator_2"))
    preferences = [row.get("preference") for row in rows]
    figures = metrics.alpaca_eval_winrate(preferences)
    scores = metrics.model_scores(preferences)
    judged = [(row, float(score)) for row, score in zip(rows, scores) if score == score]  # NaN: excluded
    items = [_item(row) for row, _ in judged]
    interval = metrics.bootstrap_interval([s for _, s in judged], items, resamples=resamples, seed=seed)
    lengths = [(row, len(row.get("output_1") or ""), len(row.get("output_2") or "")) for row in rows]
    if all(row.get("output_1") is not None and row.get("output_2") is not None for row in rows):
        length = metrics.length_controlled_winrate(preferences, [a for _, a, _ in lengths], [b for _, _, b in lengths])
    else:
        length = {"length_controlled_winrate": None, "formula": metrics.LC_FORMULA, "glm": metrics.LC_NAME,
                  "note": "not computed: some rows do not carry both output texts"}
    wins, losses, ties = figures["n_wins"], figures["n_wins_base"], figures["n_draws"]
    return {
        "ref": ref, "dataset": manifest.dataset, "revision_id": manifest.id, "short_id": manifest.short_id,
        "baseline": baseline, "model": model,
        "headline": _headline(baseline, model, wins, losses, ties, figures["win_rate"], figures["standard_error"]),
        "counting": COUNTING,
        "rows": len(rows), "excluded_rows": figures["n_excluded"], "items": len(set(items)),
        "annotators": sorted({str(row.get("annotator")) for row in rows}),
        "wins": wins, "losses": losses, "ties": ties,
        "win_rate": figures["win_rate"], "standard_error": figures["standard_error"],
        "bootstrap_95": list(interval) if interval else None, "bootstrap": {"resamples": resamples, "seed": seed,
                                                                             "unit": "item"},
        "sign_test": {"wins": wins, "losses": losses, "p_value": metrics.sign_test(wins, losses),
                      "test": "exact two-sided binomial test, ties dropped"},
        "alpaca_eval": {**figures, "length_controlled_winrate": length["length_controlled_winrate"],
                        "avg_length": _avg_length(rows)},
        "length_controlled": length,
        "agreement": metrics.rater_agreement([(item, str(row.get("annotator")), score)
                                              for item, (row, score) in zip(items, judged)]),
        "orders": metrics.order_agreement([(item, str(row.get("annotator")), row.get("order"), score)
                                           for item, (row, score) in zip(items, judged)]),
        "categories": _categories(rows),
        "lineage": _lineage(store, manifest),
    }


# ------------------------------------------------------------------------------------------ text rendering

def _num(value: Any, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _link_text(link: dict[str, Any]) -> str:
    role = "baseline" if link["side"] == "output_1" else "model"
    if not link["dataset"]:
        return f"{role} ({link['side']}): outputs revision unknown"
    text = f"{role} ({link['side']}): {link['dataset']}@{link['short_id'] or '?'} generator {link['generator'] or '?'}"
    if not link["found"]:
        return text + " (not in this store; model unknown)"
    model = link["model"]
    text += " <- model " + ("unknown" if not model or not model.get("spec") else
                            f"{model['spec']}" + (f" (checkpoint {model['path']})" if model.get("path") else ""))
    data = link["training_data"]
    if data:
        text += (f" <- trained on {data.get('ref') or data.get('dataset') or '?'} "
                 f"(revision {str(data.get('revision_id') or '?')[:12]})")
    elif model and model.get("spec"):
        text += " <- training data unknown"
    return text


def render_text(report: dict[str, Any]) -> str:
    """The report for people: the verdict first, then AlpacaEval's figures, agreement, categories, lineage."""
    ae, lc = report["alpaca_eval"], report["length_controlled"]
    low_high = report["bootstrap_95"]
    p_value = report["sign_test"]["p_value"]
    lines = [report["headline"], "",
             f"revision      {report['dataset']}@{report['short_id']}: {report['rows']} rows, {report['items']} items judged, "
             f"{report['excluded_rows']} without a verdict (excluded); annotators: {', '.join(report['annotators'])}",
             f"counting      {report['counting']}",
             f"win rate      {_num(report['win_rate'], 2, '%')} (draws as half), standard error "
             f"{_num(report['standard_error'])}"
             + (f", bootstrap 95% [{low_high[0]:.2f}, {low_high[1]:.2f}] ({report['bootstrap']['resamples']} "
                f"resamples of items, seed {report['bootstrap']['seed']})" if low_high else ""),
             f"sign test     {report['wins']} wins vs {report['losses']} losses: p = "
             + ("-" if p_value is None else f"{p_value:.4g}") + " (exact two-sided, ties dropped)",
             "", "AlpacaEval metrics",
             f"  win_rate {_num(ae['win_rate'], 4)}  standard_error {_num(ae['standard_error'], 4)}  "
             f"discrete_win_rate {_num(ae['discrete_win_rate'], 4)}",
             f"  n_wins {ae['n_wins']}  n_wins_base {ae['n_wins_base']}  n_draws {ae['n_draws']}  n_total {ae['n_total']}"
             f"  avg_length {ae['avg_length'] if ae['avg_length'] is not None else '-'}",
             f"  length-controlled win rate {_num(lc['length_controlled_winrate'], 2, '%')}: {lc['glm']}",
             f"    {lc['formula']}",
             "    (not alpaca_eval's published LC figure, which needs per-instruction difficulty weights)"]
    if lc.get("note"):
        lines.append(f"    {lc['note']}")
    agreement = report["agreement"]
    if agreement["cohen_kappa"]:
        lines += ["", "agreement between raters"]
        for pair in agreement["cohen_kappa"]:
            lines.append(f"  Cohen's kappa {pair['raters'][0]} / {pair['raters'][1]}: {_num(pair['kappa'], 3)} on "
                         f"{pair['items']} shared items (observed agreement {_num(pair['observed_agreement'], 3)})")
        fleiss = agreement["fleiss_kappa"]
        lines.append(f"  Fleiss' kappa over {len(fleiss['raters'])} raters: {_num(fleiss['kappa'], 3)} on "
                     f"{fleiss['items']} items rated by all")
    orders = report["orders"]
    if orders:
        lines += ["", "judge orders",
                  f"  {orders['agreeing']} of {orders['pairs']} items judged in both orders agree "
                  f"({_num(orders['agreement'], 3)})",
                  f"  the output shown first wins {orders['first_shown_wins']} of {orders['decided_rows']} decided "
                  f"rows ({_num(orders['first_shown_win_share'], 3)}; 0.5 = no position bias)"]
    if len(report["categories"]) > 1 or report["categories"][0]["category"] != UNCATEGORISED:
        lines += ["", f"  {'category':<28} {'wins':>5} {'ties':>5} {'losses':>6} {'n':>5} {'win rate':>9} {'se':>6}"]
        for row in report["categories"]:
            lines.append(f"  {row['category'][:28]:<28} {row['wins']:>5} {row['ties']:>5} {row['losses']:>6} "
                         f"{row['n_total']:>5} {_num(row['win_rate'], 1):>9} {_num(row['standard_error'], 1):>6}")
    chain = report["lineage"]
    lines += ["", "lineage",
              f"  annotations {chain['annotations']['dataset']}@{chain['annotations']['short_id']} "
              f"({chain['annotations']['command'] or 'unknown command'})"]
    lines += [f"  {_link_text(link)}" for link in chain["outputs"]]
    return "\n".join(lines)
