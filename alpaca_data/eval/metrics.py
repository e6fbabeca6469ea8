"""Pairwise-evaluation statistics, pure functions over plain numbers (no store, no I/O).

Preferences use AlpacaEval's encoding: 1 = output_1 (the baseline) better, 2 = output_2 (the model) better,
0 or 1.5 = draw, fractional values in [1, 2] allowed, None / NaN = no verdict (excluded). A preference maps to
the model's *score* `preference - 1` in [0, 1] (draws 0.5); the win rate is the mean score times 100.

`alpaca_eval_winrate` reproduces `alpaca_eval.metrics.get_winrate` (AbsoluteScoringRule.describe_head2head plus
ZeroOneScoringRule's discrete win rate), so a published annotations file gives the leaderboard's `win_rate`.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

LABELS = ("baseline", "draw", "model")  # a verdict as a category (for kappa, order agreement)
LC_FORMULA = ("logit P(model wins) = theta + phi * tanh(delta_len / sd(delta_len)), delta_len = len(output_1) - "
              "len(output_2) in characters; LC win rate = 100 * sigmoid(theta) (the fit at delta_len = 0)")
BOUND = 30.0  # |coefficient| cap: a separable sample stops here instead of running to infinity
DIVERGED = 10.0  # beyond this a coefficient on a feature in [-1, 1] makes verdicts near-certain: a diverging fit
LC_NAME = "alpaca_eval length_controlled_minimal (no instruction-difficulty term), unregularised maximum likelihood"


def _as_float_array(preferences: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if p is None else float(p) for p in preferences], dtype=float)


def model_scores(preferences: Sequence[float | None]) -> np.ndarray:
    """`preference - 1` with draws (0) as 0.5; NaN where the preference is missing or outside [1, 2]."""
    values = _as_float_array(preferences)
    values[values == 0] = 1.5
    valid = (values >= 1) & (values <= 2)
    return np.where(valid, values - 1, np.nan)


def _head2head(values: np.ndarray) -> dict[str, Any]:
    """AlpacaEval's describe_head2head on values already mapped 0 -> 1.5 (NaN, out of range: dropped)."""
    n_draws = int(np.sum(values == 1.5))
    valid = (values >= 1) & (values <= 2)
    scores = values[valid] - 1
    n_total = int(scores.size)
    return {"win_rate": float(scores.mean() * 100) if n_total else None,
            # pandas' Series.sem: ddof=1, undefined for one value
            "standard_error": float(scores.std(ddof=1) / math.sqrt(n_total) * 100) if n_total > 1 else None,
            "n_wins": int(np.sum(scores > 0.5)), "n_wins_base": int(np.sum(scores < 0.5)),
            "n_draws": n_draws, "n_total": n_total}


def alpaca_eval_winrate(preferences: Sequence[float | None]) -> dict[str, Any]:
    """win_rate, standard_error, n_wins, n_wins_base, n_draws, n_total, discrete_win_rate, as alpaca_eval gives them.

    win_rate: mean of (preference - 1) * 100 over rows with a preference in [1, 2] (0 counted as 1.5);
    standard_error: the standard error of that mean (ddof=1), times 100; discrete_win_rate: the same after
    rounding each preference to 1, 2 or a draw (1.5 exactly; NumPy rounds half to even, as pandas does)."""
    values = _as_float_array(preferences)
    values[values == 0] = 1.5
    out = _head2head(values)
    discrete = values.copy()
    discrete[discrete == 1.5] = 0
    discrete = np.round(discrete)
    discrete[discrete == 0] = 1.5
    out["discrete_win_rate"] = _head2head(discrete)["win_rate"]
    out["n_excluded"] = len(preferences) - out["n_total"]
    return out


def label_of(score: float) -> str:
    """A score in [0, 1] as a verdict: above 0.5 the model wins (AlpacaEval's n_wins), below the baseline."""
    return "model" if score > 0.5 else "baseline" if score < 0.5 else "draw"


def bootstrap_interval(scores: Sequence[float], groups: Sequence[Hashable] | None = None, *, resamples: int = 2000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the win rate (x100). With `groups` (the item of each row) whole items
    are resampled, so several ratings of one item do not pass for independent evidence."""
    values = np.asarray(scores, dtype=float)
    if values.size == 0:
        return None
    keys = list(range(values.size)) if groups is None else list(groups)
    index = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    cluster = np.array([index[key] for key in keys])
    sums = np.bincount(cluster, weights=values, minlength=len(index))
    counts = np.bincount(cluster, minlength=len(index)).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(index), size=(resamples, len(index)))
    rates = sums[draws].sum(axis=1) / counts[draws].sum(axis=1) * 100
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(rates, [tail, 100 - tail])
    return float(low), float(high)


def sign_test(wins: int, losses: int) -> float | None:
    """Exact two-sided binomial test of wins against losses (ties dropped); None when nothing was decided."""
    from scipy.stats import binomtest

    if wins + losses == 0:
        return None
    return float(binomtest(wins, wins + losses, 0.5, alternative="two-sided").pvalue)


def cohen_kappa(labels_a: Sequence[Hashable], labels_b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items; None when chance agreement is certain (1 - pe = 0)."""
    if len(labels_a) != len(labels_b):
        raise ValueError("both raters need a label for every item")
    n = len(labels_a)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(labels_a, labels_b)) / n
    count_a, count_b = Counter(labels_a), Counter(labels_b)
    expected = sum(count_a[label] * count_b[label] for label in count_a) / (n * n)
    if math.isclose(expected, 1.0):
        return None
    return (observed - expected) / (1 - expected)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa from an items x categories table of how many raters put each item in each category (the
    same number of raters for every item); None when undefined (fewer than 2 raters, or one category only)."""
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0:
        return None
    raters = table.sum(axis=1)
    if not np.all(raters == raters[0]):
        raise ValueError("Fleiss' kappa needs the same number of ratings for every item")
    n = raters[0]
    if n < 2:
        return None
    per_item = (np.square(table).sum(axis=1) - n) / (n * (n - 1))
    shares = table.sum(axis=0) / table.sum()
    expected = float(np.square(shares).sum())
    if math.isclose(expected, 1.0):
        return None
    return (float(per_item.mean()) - expected) / (1 - expected)


def rater_agreement(ratings: Sequence[tuple[Hashable, str, float]]) -> dict[str, Any]:
    """Cohen's kappa for each pair of raters on the items both rated, Fleiss' kappa over the items every rater
    rated. `ratings`: (item, rater, score); a rater's several rows for one item (both orders) are averaged."""
    sums: dict[tuple[Hashable, str], list[float]] = defaultdict(list)
    for item, rater, score in ratings:
        sums[(item, rater)].append(score)
    labels: dict[str, dict[Hashable, str]] = defaultdict(dict)
    for (item, rater), scores in sums.items():
        labels[rater][item] = label_of(float(np.mean(scores)))
    raters = sorted(labels)
    pairs = []
    for i, first in enumerate(raters):
        for second in raters[i + 1:]:
            shared = [item for item in labels[first] if item in labels[second]]
            a = [labels[first][item] for item in shared]
            b = [labels[second][item] for item in shared]
            pairs.append({"raters": [first, second], "items": len(shared),
                          "observed_agreement": (sum(x == y for x, y in zip(a, b)) / len(shared)) if shared else None,
                          "kappa": cohen_kappa(a, b)})
    fleiss = None
    if len(raters) >= 2:
        common = [item for item in labels[raters[0]] if all(item in labels[r] for r in raters[1:])]
        table = [[sum(labels[r][item] == label for r in raters) for label in LABELS] for item in common]
        fleiss = {"raters": raters, "items": len(common), "kappa": fleiss_kappa(table) if common else None}
    return {"raters": raters, "cohen_kappa": pairs, "fleiss_kappa": fleiss}


def order_agreement(rows: Sequence[tuple[Hashable, str, str | None, float]]) -> dict[str, Any] | None:
    """How judgments depend on which output was shown first. `rows`: (item, annotator, order, score) with order
    "12" (output_1 shown first) or "21". Agreement: for each item and annotator judged in both orders, whether
    the two verdicts match. Position bias: among decided rows with a known order, how often the output shown
    first won (0.5 = no bias). None when no row has an order."""
    by_order: dict[tuple[Hashable, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    first_wins = decided = 0
    for item, annotator, order, score in rows:
        if order not in ("12", "21"):
            continue
        by_order[(item, annotator)][order].append(score)
        label = label_of(score)
        if label != "draw":
            decided += 1
            first_wins += (order == "12") == (label == "baseline")
    if not by_order:
        return None
    both = [orders for orders in by_order.values() if "12" in orders and "21" in orders]
    agreeing = sum(label_of(float(np.mean(o["12"]))) == label_of(float(np.mean(o["21"]))) for o in both)
    return {"pairs": len(both), "agreeing": agreeing, "agreement": agreeing / len(both) if both else None,
            "decided_rows": decided, "first_shown_wins": first_wins,
            "first_shown_win_share": first_wins / decided if decided else None}


def length_controlled_winrate(preferences: Sequence[float | None], len_1: Sequence[int],
                              len_2: Sequence[int]) -> dict[str, Any]:
    """Length-controlled win rate with alpaca_eval's minimal GLM (its `length_controlled_minimal` formula):

        logit P(model wins) = theta + phi * tanh(delta_len / sd(delta_len)),  delta_len = len(output_1) - len(output_2)

    fitted by maximum likelihood with the score (preference - 1, draws 0.5) as a soft label, as alpaca_eval does;
    sd over every row (ddof=1), the fit over rows with a preference. LC win rate = 100 * sigmoid(theta), the
    model's predicted win rate had both outputs the same length. alpaca_eval's default (`length_controlled_v1`)
    adds per-instruction difficulty weights and a regularised cross-validated fit, so this figure is not its
    published LC number; alpaca_eval fits the minimal formula with an L1 penalty chosen by 5-fold CV, we fit it
    unregularised (the two agree closely unless the data are nearly separable). A diverging fit gives None and a
    `note`; an extrapolating one (every model output longer, or every one shorter) keeps its figure with a note."""
    from scipy.optimize import minimize

    scores = model_scores(preferences)
    delta = np.asarray(len_1, dtype=float) - np.asarray(len_2, dtype=float)
    sd = float(delta.std(ddof=1)) if delta.size > 1 else 0.0
    feature = np.tanh(delta / sd) if sd > 0 else np.zeros_like(delta)
    keep = ~np.isnan(scores)
    y, x = scores[keep], feature[keep]
    if y.size == 0:
        return {"length_controlled_winrate": None, "theta": None, "phi": None, "n": 0, "formula": LC_FORMULA,
                "glm": LC_NAME}
    design = np.column_stack([np.ones_like(x), x])

    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        z = design @ beta
        value = float(np.sum(np.logaddexp(0, z) - y * z))
        gradient = design.T @ (1 / (1 + np.exp(-z)) - y)
        return value, gradient

    fit = minimize(loss, np.zeros(2), jac=True, method="L-BFGS-B", bounds=[(-BOUND, BOUND), (-BOUND, BOUND)])
    theta, phi = (float(v) for v in fit.x)
    out = {"length_controlled_winrate": 100 / (1 + math.exp(-theta)), "theta": theta, "phi": phi,
           "n": int(y.size), "formula": LC_FORMULA, "glm": LC_NAME}
    if max(abs(theta), abs(phi)) > DIVERGED:
        out.update(length_controlled_winrate=None, note="not computed: the fit diverged (too few rows, or verdicts "
                                                         "that length alone separates)")
    elif np.all(delta[keep] > 0) or np.all(delta[keep] < 0):
        out["note"] = ("extrapolated: every model output is " + ("shorter" if delta[keep][0] > 0 else "longer")
                       + " than the baseline's, so equal length lies outside the data")
    return out
