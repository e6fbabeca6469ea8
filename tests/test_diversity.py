"""Verb/object diversity with the real spaCy model on the real seed tasks."""
from __future__ import annotations

import json

import pytest

from alpaca_data.analyze import diversity
from alpaca_data.analyze.diversity import VerbNounStats, first_verb_and_object, load_parser
from tests.conftest import CORPORA, EVAL_DATA, SEEDS


@pytest.fixture(scope="module")
def nlp():
    return load_parser()


def test_root_verb_and_direct_object(nlp):
    assert first_verb_and_object(nlp("Write a short poem about the sea.")) == ("write", "poem")
    assert first_verb_and_object(nlp("What is the capital of France?"))[0] is None


def test_diversity_command_on_seed_tasks(cli, tmp_path, store_path):
    cli("import", SEEDS, "-d", "seeds")
    plot = tmp_path / "verbs.png"
    result = cli("diversity", "seeds", "--json", "--plot", plot)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["instructions"] == 175
    assert summary["top"][0]["verb"] == "write"
    assert summary["distinct_root_verbs"] > 30
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The parse of each text is cached in the store: a second run answers from it. Proved by editing the
    # cache: the edit shows, and --no-cache parses again and gives the true answer.
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    cached, = (store_path / "cache" / "diversity").glob("*.parquet")
    table = pq.read_table(cached)
    assert table.num_rows == 175 and set(table.column_names) == {"text", "verb", "object"}
    pq.write_table(table.set_column(1, "verb", pc.if_else(pc.equal(table.column("verb"), "write"), "scribble",
                                                          table.column("verb"))), cached)
    edited = json.loads(cli("diversity", "seeds", "--json").stdout)
    assert edited["top"][0]["verb"] == "scribble" and edited["top"][0]["count"] == summary["top"][0]["count"]


def test_the_parse_cache_is_skipped_on_request_and_rebuilt_when_damaged(tmp_path):
    from alpaca_data.analyze.diversity import VerbNounCounter

    texts = ["Write a poem about the sea.", "Give three tips for staying healthy.", "Translate the sentence.",
             "Write a poem about the sea."]

    def count(cache_root):
        with VerbNounCounter(texts, processes=1, cache_root=cache_root) as counter:
            return counter.stats(), counter.cache

    truth, cache = count(tmp_path)
    assert truth.verbs["write"] == 2 and cache.path.exists()
    cache.path.write_bytes(b"not parquet")  # damaged: ignored, parsed again, rewritten whole
    again, cache = count(tmp_path)
    assert (again.verbs, again.pairs) == (truth.verbs, truth.pairs)
    assert len(cache.load()) == 3
    uncached, none = count(None)  # --no-cache: no cache read or written
    assert none is None and (uncached.verbs, uncached.pairs) == (truth.verbs, truth.pairs)


def _sample_instructions() -> list[str]:
    """Real instructions of several kinds: the seed tasks, Self-Instruct's user-oriented set, multi-sentence GSM8K
    questions, code tasks, Chinese, and GPTeacher Toolformer (every first line the same: the count weighting)."""
    def rows(path):
        text = path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" \
            else json.loads(text)

    toolformer = rows(CORPORA / "gpteacher_toolformer.json")
    instructions = [r["instruction"] for r in rows(SEEDS)]
    instructions += [r["instruction"] for r in rows(EVAL_DATA / "user_oriented_instructions.jsonl")[:120]]
    instructions += [r["instruction"] for r in rows(CORPORA / "gsm8k_train_alpaca.json")[:60]]
    instructions += [r["instruction"] for r in rows(CORPORA / "gpteacher_codegen.json")[:60]]
    instructions += [r["instruction"] for r in rows(CORPORA / "alpaca_zh_10000.json")[:20]]
    instructions += [r["instruction"] for r in toolformer[:40] + toolformer[600:]]
    # the ruler's patterns that read a neighbour or change DEP: expl + "is", "do" as the root, runs of spaces (in
    # the last one the parser makes the first tab the ROOT and the ruler makes it "dep": the root is "translate")
    instructions += ["There is a cat on the mat.", "Do the dishes.", "Have a look at this  table.",
                     "Write  a   poem about spring.", "  Explain quantum computing.", "Did you see it?",
                     "\t.\tTranslate this sentence into French."]
    instructions += [instructions[0], instructions[200]]  # repeats within one set
    return instructions


def _reference_stats(nlp, instructions: list[str]) -> VerbNounStats:
    """The plain way: every instruction's first line through the whole pipeline, in order, in one process."""
    stats = VerbNounStats()
    for doc in nlp.pipe([text.split("\n")[0][:500] for text in instructions]):
        verb, noun = first_verb_and_object(doc)
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


def _as_tuple(stats: VerbNounStats):
    # list(...) keeps the Counters' insertion order, which decides ties in `top`
    return (stats.total, list(stats.verbs.items()), list(stats.pairs.items()), stats.no_verb_root, stats.no_object)


def test_fast_parse_counts_like_the_plain_pipeline(nlp, monkeypatch):
    """Deduplicated, length-sorted, attribute ruler applied only where read, forked workers: the same counts, in
    the same order, as parsing every instruction with the full pipeline."""
    instructions = _sample_instructions()
    texts = sorted({diversity.first_line(text) for text in instructions}, key=len)
    assert diversity.WindowedRuler.build(nlp) is not None  # the fast path is the one under test
    assert diversity._parse(nlp, texts, 64) == [first_verb_and_object(doc) for doc in nlp.pipe(texts)]

    reference = _as_tuple(_reference_stats(nlp, instructions))
    monkeypatch.setattr(diversity, "load_parser", lambda model=None: nlp)
    monkeypatch.setattr(diversity, "PARALLEL_MIN", 10)
    monkeypatch.setattr(diversity, "CHUNK", 100)
    ticks = []
    assert _as_tuple(diversity.verb_noun_stats(instructions, processes=2, tick=ticks.append)) == reference
    assert sum(ticks) == len(instructions)


def test_numpy_blas_gives_the_answers_of_spacys_own_blis(nlp):
    """load_parser multiplies with numpy's BLAS (three times blis's speed here): its floats differ from spaCy's
    stock blis in the last bits, and on real instructions of every kind the answers must not."""
    import spacy

    stock = spacy.load(diversity.MODEL_CANDIDATES[0], exclude=["ner", "lemmatizer"])
    tok2vec_ops = {node.ops for node in nlp.get_pipe("tok2vec").model.walk()}
    assert [ops.use_blis for ops in tok2vec_ops] == [False]
    assert all(node.ops.use_blis for node in stock.get_pipe("tok2vec").model.walk())
    texts = sorted({diversity.first_line(text) for text in _sample_instructions()})
    assert diversity._parse(nlp, texts, 64) == [first_verb_and_object(doc) for doc in stock.pipe(texts)]


def test_the_parser_loads_without_torch_and_torch_still_imports_after():
    """thinc would import torch (seconds) for layers the model does not have; whatever needs torch later gets it."""
    import subprocess
    import sys

    code = ("import sys\nfrom alpaca_data.analyze.diversity import load_parser\nnlp = load_parser()\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "import torch\nprint(torch.ones(2).sum().item(), nlp('Write a poem.')[0].text)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2.0", "Write"]
