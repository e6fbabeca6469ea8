"""Filter and dedup steps over store revisions: each makes a new revision plus a rejection report.

The report is stored with the revision as the `rejections` sidecar table (queryable in `alpaca-data sql`),
and the counts go into the manifest under `extra.filter` / `extra.dedup`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alpaca_data.errors import UsageError
from alpaca_data.filters.heuristics import RuleSet
from alpaca_data.filters.report import FilterReport, make_rejection
from alpaca_data.store import CommitResult, Store

DEDUP_METHODS = ("exact", "minhash", "semantic")


def _as_source(manifest, role: str = "") -> dict[str, str]:
    """A revision read by a step, as a recipe source (its id is the sha256 of its records)."""
    label = f"{manifest.dataset}@{manifest.short_id}" + (f" ({role})" if role else "")
    return {"revision": manifest.id, "sha256": manifest.id, "path": label}


@dataclass
class StepResult:
    commit: CommitResult
    report: FilterReport
    source_records: int


def rouge_pass(records: list[dict[str, Any]], indices: list[int], threshold: float, pool_texts: list[str],
               on_no_tokens: str, progress: bool) -> tuple[list[int], list[dict[str, Any]], dict[str, int]]:
    """Greedy ROUGE-L novelty in record order: each instruction against the pool and the ones kept before it."""
    from alpaca_data.filters.rouge import RougeNoveltyIndex

    index = RougeNoveltyIndex(threshold=threshold, on_no_tokens=on_no_tokens)
    index.add(pool_texts)
    decisions = index.filter([record["instruction"] for record in records], with_stats=False, progress=progress)
    kept, rejections, counts = [], [], {}
    for position, (record, decision) in enumerate(zip(records, decisions)):
        if decision.keep:
            kept.append(position)
            continue
        rejections.append(make_rejection(decision.reason, record, indices[position],
                                         score=float(decision.max_score), most_similar=decision.most_similar))
        counts[decision.reason] = counts.get(decision.reason, 0) + 1
    return kept, rejections, counts


def filter_revision(store: Store, ref: str, *, rules: str | None = "default", rouge_threshold: float | None = 0.7,
                    pool_ref: str | None = None, on_no_tokens: str = "drop", dataset: str | None = None,
                    message: str = "", progress: bool = True) -> StepResult:
    """Heuristic rules, then (unless rouge_threshold is None) the greedy ROUGE-L novelty filter."""
    if rouge_threshold is not None and not 0.0 <= rouge_threshold <= 1.0:
        raise UsageError(f"--rouge-threshold {rouge_threshold}: expected a number between 0 and 1")
    if on_no_tokens not in ("drop", "keep"):
        raise UsageError(f"--rouge-no-tokens {on_no_tokens!r}: expected drop or keep")
    ruleset = RuleSet.from_spec(rules) if rules not in (None, "", "none") else RuleSet([])
    source = store.resolve(ref)
    pool = store.resolve(pool_ref) if pool_ref else None
    records = store.read_records(source)
    report = ruleset.apply(records, progress=progress)
    rouge_info: dict[str, Any] | None = None
    if rouge_threshold is not None:
        pool_texts = [r["instruction"] for r in store.read_records(pool)] if pool else []
        kept_positions, rejections, counts = rouge_pass(report.kept, report.kept_indices, rouge_threshold,
                                                        pool_texts, on_no_tokens, progress)
        report.kept = [report.kept[p] for p in kept_positions]
        report.kept_indices = [report.kept_indices[p] for p in kept_positions]
        report.rejections = sorted(report.rejections + rejections, key=lambda row: row["index"])
        for reason, count in counts.items():
            report.counts[reason] = report.counts.get(reason, 0) + count
        rouge_info = {"threshold": rouge_threshold, "pool": pool_ref, "pool_revision": pool.id if pool else None,
                      "pool_size": len(pool_texts), "on_no_tokens": on_no_tokens}
    options = {"rules": rules, "rule_settings": [{"name": r["name"], "params": r["params"]}
                                                 for r in ruleset.describe() if r["enabled"]],
               "rouge": rouge_info}
    summary = {"input_records": len(records), "kept": len(report.kept), "dropped": len(report.rejections),
               "counts": dict(sorted(report.counts.items())), "normalised": dict(sorted(report.normalised.items())),
               "rules": ruleset.names, "rouge": rouge_info}
    sources = [_as_source(source)] + ([_as_source(pool, "pool")] if pool else [])
    commit = store.commit(dataset or source.dataset, report.kept, parents=[source.id],
                          message=message or f"filter {source.dataset}@{source.short_id}: "
                                             f"kept {len(report.kept)} of {len(records)}",
                          recipe={"command": "filter", "options": options, "sources": sources},
                          extra={"filter": summary}, sidecars={"rejections": report.rejections})
    return StepResult(commit, report, len(records))


def dedup_revision(store: Store, ref: str, *, method: str = "exact", threshold: float | None = None,
                   dataset: str | None = None, message: str = "", progress: bool = True) -> StepResult:
    from alpaca_data.filters import dedup

    if method not in DEDUP_METHODS:
        raise UsageError(f"--method {method!r}: expected one of {', '.join(DEDUP_METHODS)}")
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise UsageError(f"--threshold {threshold}: expected a number in (0, 1]")
    source = store.resolve(ref)
    records = store.read_records(source)
    if method == "exact":
        report = dedup.dedup_exact(records, progress=progress)
    elif method == "minhash":
        report = dedup.dedup_minhash(records, threshold=threshold if threshold is not None else 0.8, progress=progress)
    else:
        report = dedup.dedup_semantic(records, threshold=threshold if threshold is not None else 0.95,
                                      progress=progress)
    options = {"method": method, "threshold": threshold}
    summary = {"input_records": len(records), "kept": len(report.kept), "dropped": len(report.rejections),
               "counts": dict(report.counts), "method": method, "threshold": threshold}
    commit = store.commit(dataset or source.dataset, report.kept, parents=[source.id],
                          message=message or f"dedup ({method}) {source.dataset}@{source.short_id}: "
                                             f"kept {len(report.kept)} of {len(records)}",
                          recipe={"command": "dedup", "options": options, "sources": [_as_source(source)]},
                          extra={"dedup": summary}, sidecars={"rejections": report.rejections})
    return StepResult(commit, report, len(records))
