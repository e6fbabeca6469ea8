"""Token prices in USD per million tokens, and the cost of a run.

A price table file (TOML or JSON) maps model names to {input, output} (per 1M tokens), e.g.
    [gpt-4o-mini]
    input = 0.15
    output = 0.60
Batch API prices (`batch_input`, `batch_output`) default to half the realtime ones (what OpenAI charges for its
Batch API); give them to override, e.g. `{"demo": {"input": 1.0, "output": 2.0, "batch_input": 0.6}}`.
Entries override the defaults below. Lookup is exact, then the longest default/entry that prefixes the
model name (so "gpt-4o-mini-2024-07-18" is priced as "gpt-4o-mini").
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from alpaca_data.errors import UserError

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-3.5-turbo-instruct": (1.50, 2.00),
    # the demo teacher's fake price, so budget caps can be exercised without spending anything
    "alpaca-demo-teacher": (0.50, 1.50),
}


BATCH_DISCOUNT = 0.5  # a Batch API token costs this much of a realtime one, unless the price table says


@dataclass(frozen=True)
class Price:
    input_per_m: float
    output_per_m: float
    batch_input_per_m: float | None = None   # None: BATCH_DISCOUNT of the realtime price
    batch_output_per_m: float | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int, *, batch: bool = False) -> float:
        if batch:
            rates = self.batch_rates()
            return (prompt_tokens * rates[0] + completion_tokens * rates[1]) / 1_000_000
        return (prompt_tokens * self.input_per_m + completion_tokens * self.output_per_m) / 1_000_000

    def batch_rates(self) -> tuple[float, float]:
        return (BATCH_DISCOUNT * self.input_per_m if self.batch_input_per_m is None else self.batch_input_per_m,
                BATCH_DISCOUNT * self.output_per_m if self.batch_output_per_m is None else self.batch_output_per_m)

    def as_dict(self) -> dict[str, float]:
        """What a manifest records: USD per 1M tokens, realtime and batch."""
        batch_input, batch_output = self.batch_rates()
        return {"input_per_m": self.input_per_m, "output_per_m": self.output_per_m,
                "batch_input_per_m": batch_input, "batch_output_per_m": batch_output}


def load_price_table(path: str | Path | None) -> dict[str, Price]:
    table = {name: Price(*prices) for name, prices in DEFAULT_PRICES.items()}
    if path is None:
        return table
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode()) if path.suffix.lower() == ".toml" else json.loads(raw)
    except OSError as error:
        raise UserError(f"{path}: cannot read price table: {error.strerror or error}") from None
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise UserError(f"{path}: not valid {'TOML' if path.suffix.lower() == '.toml' else 'JSON'}: {error}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a table of model -> {{input, output}}")
    for model, entry in data.items():
        if not isinstance(entry, dict):
            raise UserError(f"{path}: {model}: expected {{input, output}} prices per 1M tokens")
        try:
            input_price = float(entry.get("input", entry.get("input_per_1m", 0.0)))
            output_price = float(entry.get("output", entry.get("output_per_1m", 0.0)))
            batch = [None if entry.get(key) is None else float(entry[key]) for key in ("batch_input", "batch_output")]
        except (TypeError, ValueError):
            raise UserError(f"{path}: {model}: prices must be numbers") from None
        table[model] = Price(input_price, output_price, *batch)
    return table


def price_for(model: str, table: dict[str, Price]) -> Price | None:
    if model in table:
        return table[model]
    candidates = [name for name in table if model.startswith(name)]
    return table[max(candidates, key=len)] if candidates else None


def add_spend(spent: dict[str, dict[str, float]], price: Price | None, entry: Mapping[str, Any]) -> tuple[int, int, float]:
    """An answered journal entry's tokens and cost, at the price of the transport it came by (batch or
    realtime), added to `spent` under that transport. Returns (prompt tokens, completion tokens, cost)."""
    prompt_tokens, completion_tokens = int(entry.get("prompt_tokens") or 0), int(entry.get("completion_tokens") or 0)
    via = "batch" if entry.get("via") == "batch" else "realtime"
    cost = price.cost(prompt_tokens, completion_tokens, batch=via == "batch") if price else 0.0
    mine = spent.setdefault(via, {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0})
    mine["requests"] += 1
    mine["prompt_tokens"] += prompt_tokens
    mine["completion_tokens"] += completion_tokens
    mine["cost_usd"] += cost
    return prompt_tokens, completion_tokens, cost


def spent_report(spent: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """What was paid at which price (realtime, batch): requests, tokens and USD, for the manifest and card."""
    return {via: {**row, "cost_usd": round(row["cost_usd"], 6)} for via, row in sorted(spent.items())}
