"""Dataset cards: YAML metadata the Hub and `datasets` understand, and a body rendered from cards/dataset_card.md.j2.

Everything on the card comes from the store: the revision's manifest, the manifests of its ancestors (how it was
made: imports, generation, filters with their drop counts), and the `overview` SQL analysis.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from alpaca_data.errors import UserError
from alpaca_data.prompt_template import PROMPT_INPUT, PROMPT_NO_INPUT
from alpaca_data.resources import resource_dir
from alpaca_data.store import Manifest, Store

CARD_TEMPLATE = resource_dir("cards") / "dataset_card.md.j2"
DEFAULT_LICENSE = "cc-by-nc-4.0"
DEFAULT_LANGUAGE = "en"
MAX_LINEAGE = 25
LANGUAGE_PATTERN = re.compile(r"\A[a-z]{2,3}(-[A-Za-z0-9]{2,8})*\Z")
LICENSE_PATTERN = re.compile(r"\A[a-z0-9][a-z0-9.+-]*\Z")


@dataclass
class CardOptions:
    license: str = DEFAULT_LICENSE
    language: list[str] = field(default_factory=lambda: [DEFAULT_LANGUAGE])
    pretty_name: str | None = None
    repo_id: str | None = None  # where the card will live, for the citation URL
    endpoint: str = "https://huggingface.co"

    @classmethod
    def make(cls, license: str | None = None, language: str | list[str] | None = None,
             pretty_name: str | None = None, repo_id: str | None = None, endpoint: str | None = None) -> CardOptions:
        languages = language if isinstance(language, list) else [part.strip() for part in (language or "").split(",")]
        languages = [lang for lang in languages if lang] or [DEFAULT_LANGUAGE]
        for lang in languages:
            if not LANGUAGE_PATTERN.fullmatch(lang):
                raise UserError(f"--language {lang!r}: expected an ISO 639 code such as en, zh or pt-BR", exit_code=2)
        license = (license or DEFAULT_LICENSE).strip().lower()
        if not LICENSE_PATTERN.fullmatch(license):
            raise UserError(f"--license {license!r}: expected a Hub licence id such as cc-by-nc-4.0 or apache-2.0",
                            exit_code=2)
        return cls(license=license, language=languages, pretty_name=pretty_name or None, repo_id=repo_id,
                   endpoint=(endpoint or "https://huggingface.co").rstrip("/"))


def size_category(count: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"),
                         (1_000_000_000, "100M<n<1B")):
        if count < limit:
            return label
    return "n>1T" if count >= 10**12 else "1B<n<10B"


def features_yaml(schema: pa.Schema) -> list[dict[str, Any]]:
    """`dataset_info.features` exactly as `datasets` writes it for this Arrow schema."""
    from datasets import Features

    return Features.from_arrow_schema(schema)._to_yaml_list()


def card_metadata(manifest: Manifest, schema: pa.Schema, num_bytes: int, download_size: int,
                  options: CardOptions) -> dict[str, Any]:
    count = manifest.record_count
    return {
        "license": options.license,
        "language": options.language,
        "task_categories": ["text-generation"],
        "size_categories": [size_category(count)],
        "pretty_name": pretty_name(manifest, options),
        "tags": ["alpaca", "instruction-tuning", "alpaca-kit"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
        "dataset_info": {
            "features": features_yaml(schema),
            "splits": [{"name": "train", "num_bytes": int(num_bytes), "num_examples": int(count)}],
            "download_size": int(download_size),
            "dataset_size": int(num_bytes),
        },
    }


def pretty_name(manifest: Manifest, options: CardOptions) -> str:
    return options.pretty_name or f"{manifest.dataset} ({manifest.short_id})"


# ---------------------------------------------------------------------------------------------- lineage


def lineage(store: Store, manifest: Manifest) -> list[dict[str, Any]]:
    """The revision and its ancestors in this store, oldest first (first parent line; merges listed as parents)."""
    chain, seen, current = [], set(), manifest
    while current is not None and current.id not in seen and len(chain) < MAX_LINEAGE:
        seen.add(current.id)
        chain.append(describe_step(current))
        parent = current.parents[0] if current.parents else None
        current = _find(store, parent) if parent else None
        if parent and current is None:
            chain.append({"id": parent, "short_id": parent[:12], "missing": True})
    return list(reversed(chain))


def _find(store: Store, revision_id: str) -> Manifest | None:
    for dataset in store.datasets():
        if revision_id in store.revision_ids(dataset):
            return store.resolve(f"{dataset}@{revision_id}")
    return None


def describe_step(manifest: Manifest) -> dict[str, Any]:
    data = manifest.data
    recipe, extra = data.get("recipe", {}), data.get("extra", {}) or {}
    step: dict[str, Any] = {
        "id": manifest.id, "short_id": manifest.short_id, "dataset": manifest.dataset, "missing": False,
        "command": recipe.get("command", "unknown"), "created_at": data.get("created_at", ""),
        "message": data.get("message", ""), "records": manifest.record_count, "parents": manifest.parents,
        "sources": [s.get("path") or s.get("revision", "?") for s in recipe.get("sources", [])],
        "options": recipe.get("options", {}), "tool_version": recipe.get("tool_version", ""),
    }
    generation = extra.get("generation")
    if isinstance(generation, dict):
        decoding = generation.get("decoding") or {}
        step["generation"] = {
            "teacher": generation.get("teacher") or extra.get("teacher"),
            "model": generation.get("model"), "api": generation.get("api"),
            "decoding": ", ".join(f"{k}={v}" for k, v in decoding.items()) if isinstance(decoding, dict) else decoding,
            "seed": generation.get("seed"), "seed_file_sha256": generation.get("seed_file_sha256"),
            "seed_file": next(iter(step["sources"]), None),
            "counts": generation.get("counts") or {}, "cost_usd": generation.get("cost_usd"),
            "tokens": generation.get("tokens") or {}, "filters": generation.get("filters") or {},
            "spent": _spent_lines(generation),
        }
    for kind in ("filter", "dedup"):
        summary = extra.get(kind)
        if isinstance(summary, dict):
            step[kind] = {"input_records": summary.get("input_records"), "kept": summary.get("kept"),
                          "dropped": summary.get("dropped"), "counts": summary.get("counts") or {},
                          "normalised": summary.get("normalised") or {}, "rules": summary.get("rules") or [],
                          "method": summary.get("method"), "threshold": summary.get("threshold"),
                          "rouge": summary.get("rouge")}
    hub = extra.get("hub")
    if isinstance(hub, dict):
        step["hub"] = hub
    return step


# ---------------------------------------------------------------------------------------------- rendering


def overview_rows(store: Store, manifest: Manifest) -> tuple[list[str], list[list[Any]]]:
    from alpaca_data.analyze.sql import analysis_sql, run_sql

    result = run_sql(store, analysis_sql("overview"), f"{manifest.dataset}@{manifest.id}")
    return result.columns, [list(row) for row in result.rows]


def _md(value: Any) -> str:
    """A value safe inside a Markdown table cell."""
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _bibtex_key(manifest: Manifest) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", manifest.dataset) + "_" + manifest.id[:8]


def render_card(store: Store, manifest: Manifest, *, schema: pa.Schema, num_bytes: int, download_size: int,
                shards: list[str], options: CardOptions) -> str:
    import jinja2
    from huggingface_hub import DatasetCardData

    metadata = card_metadata(manifest, schema, num_bytes, download_size, options)
    metadata_yaml = DatasetCardData(**metadata).to_yaml()
    columns, rows = overview_rows(store, manifest)
    steps = lineage(store, manifest)
    sources = sorted({source for step in steps if step.get("command") == "import" for source in step["sources"]})
    url = f"{options.endpoint}/datasets/{options.repo_id}" if options.repo_id else None
    created = manifest.data.get("created_at", "")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(CARD_TEMPLATE.parent)), autoescape=False,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.ChainableUndefined)
    env.filters["md"] = _md
    env.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False, sort_keys=True)
    try:
        template = env.get_template(CARD_TEMPLATE.name)
    except jinja2.TemplateNotFound:
        raise UserError(f"{CARD_TEMPLATE}: dataset card template is missing") from None
    text = template.render(
        metadata_yaml=metadata_yaml.strip(), title=pretty_name(manifest, options), manifest=manifest.data,
        short_id=manifest.short_id, stats=manifest.data.get("stats", {}), columns=manifest.data.get("columns", []),
        features=metadata["dataset_info"]["features"], overview_columns=columns, overview_rows=rows,
        steps=steps, import_sources=sources, shards=shards, options=options, url=url,
        year=created[:4] if created[:4].isdigit() else str(dt.date.today().year),
        bibtex_key=_bibtex_key(manifest), size_category=metadata["size_categories"][0],
        generated=any("generation" in step for step in steps),
        prompt_input=PROMPT_INPUT.rstrip("\n"), prompt_no_input=PROMPT_NO_INPUT.rstrip("\n"),
    )
    return text


def _spent_lines(generation: dict[str, Any]) -> list[str]:
    """What a generation paid at which price, e.g. "batch: 50 requests, $0.0125 at $0.50/$1.00 per 1M tokens"."""
    spent, price = generation.get("spent"), generation.get("priced_as") or {}
    if not isinstance(spent, dict):
        return []
    lines = []
    for via, row in sorted(spent.items()):
        rates = (price.get(f"{via}_input_per_m"), price.get(f"{via}_output_per_m")) if via == "batch" else (
            price.get("input_per_m"), price.get("output_per_m"))
        at = f" at ${rates[0]:.2f}/${rates[1]:.2f} per 1M input/output tokens" if None not in rates else ""
        lines.append(f"{via}: {row.get('requests', 0)} requests, ${row.get('cost_usd', 0.0):.4f}{at}")
    return lines
