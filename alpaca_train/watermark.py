"""The watermark on generated text (Kirchenbauer et al. 2023, "A Watermark for Large Language Models").

Green list of GAMMA of the vocabulary chosen by a keyed hash of the previous token, green logits raised by
DELTA; a one-sided z-test on the share of green tokens detects it. The scheme is transformers' own
(`WatermarkingConfig`, `WatermarkLogitsProcessor`, `WatermarkDetector`, seeding "lefthash", context width 1);
this module adds only what transformers lacks:

- the key: a secret from $ALPACA_WATERMARK_KEY or a key file, else a random one kept in a 0600 file; only a
  fingerprint of it is ever shown or recorded;
- green lists drawn from a CPU random generator on every device. transformers draws them from a generator on
  the model's device, and torch's CUDA generator (Philox) permutes differently from its CPU one (MT19937), so
  text generated on a GPU would not be detected on a CPU (transformers' detector documents that it needs "the
  correct device that was used during text generation"). Pinned to the CPU, the green lists are the ones
  transformers' stock CPU processor draws (tested), whatever the model runs on;
- a cache of green lists by previous token (transformers' detector caches by tensor identity, so it never
  hits), and a text-level detector that loads only a checkpoint's tokenizer and config.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import secrets as token_source
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import WatermarkDetector, WatermarkingConfig
from transformers.generation.logits_process import WatermarkLogitsProcessor

from alpaca_data import secrets
from alpaca_data.errors import UserError, one_line, refuse_missing_model_path

GAMMA = 0.25  # share of the vocabulary that is green after each token
DELTA = 2.0  # added to the green logits
Z_THRESHOLD = 4.0  # one-sided p = 3.2e-5 per text
SEEDING = "lefthash"  # the green list depends on the previous token only (context width 1)
CONTEXT_WIDTH = 1
# Count each distinct (previous token, token) pair once. Real text repeats phrases (lists, code, templates), and
# a repeated pair that happens to be green counts again each time: on 3,525 real human/GPT answers in shared/data,
# counting repeats flagged 7 (0.20%, one at z = 10.9, a Self-Instruct answer repeating itself), counting distinct
# pairs flagged 1 (0.03%), while every watermarked answer was still detected (benchmarks/watermark_detect.py).
IGNORE_REPEATED_NGRAMS = True

KEY_ENV = "ALPACA_WATERMARK_KEY"
KEY_FILE_ENV = "ALPACA_WATERMARK_KEY_FILE"
DEFAULT_KEY_FILE = Path("~/.config/alpaca-kit/watermark.key")
MIN_SECRET_CHARS = 16
_SEED_MODULUS = 2**64 - 1  # transformers seeds with (hashing_key * previous token) % (2**64 - 1)
_GREEN_CACHE_SIZE = 8192  # green lists kept per processor, 1 bit per token each (6 KB for GPT-2: 51 MB in all)


@dataclass(frozen=True)
class WatermarkKey:
    source: str  # "env ALPACA_WATERMARK_KEY" | "file <path>" | "generated <path>"
    fingerprint: str  # "sha256:" + first 16 hex of sha256(secret): safe to log and record
    _secret: str = field(repr=False)

    @classmethod
    def from_secret(cls, secret: str, source: str) -> WatermarkKey:
        secret = secret.strip()
        if len(secret) < MIN_SECRET_CHARS:
            raise UserError(f"watermark key from {source} is too short ({len(secret)} characters): use at least "
                            f"{MIN_SECRET_CHARS}, e.g. `openssl rand -hex 32`")
        key = cls(source, "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16], secret)
        secrets.register(secret)  # masked in every message, log and manifest from now on
        secrets.register(str(key.hashing_key()))  # whoever knows the int can detect and forge: as secret as the key
        return key

    def hashing_key(self) -> int:
        """The int transformers' WatermarkingConfig gets.

        transformers seeds torch's generator with `(hashing_key * previous_token) % (2**64 - 1)` for every token
        (Python ints: no overflow there), and with `hashing_key` itself once (`manual_seed` accepts < 2**64). So
        the key is drawn from sha256 of the secret (domain-separated from the fingerprint, which therefore says
        nothing about it) as a 64-bit value in [2, 2**64 - 2] that is coprime to 2**64 - 1: multiplying by it is
        then a bijection modulo 2**64 - 1, so no token id maps to seed 0 (= the same green list for every key)
        and no two token ids share a seed. About half of all values are coprime; the rejected ones are re-drawn
        with a counter, which costs about one bit of the 64. Note that torch's CPU generator (MT19937) keeps only
        the low 32 bits of each seed, so each green list is one of 2**32; that is transformers' scheme as it is.
        """
        return _hashing_key(self._secret)


@functools.cache
def _hashing_key(secret: str) -> int:
    for counter in range(1000):
        digest = hashlib.sha256(f"alpaca-kit watermark hashing key v1\0{counter}\0".encode() + secret.encode())
        value = int.from_bytes(digest.digest()[:8], "big") % _SEED_MODULUS
        if value >= 2 and math.gcd(value, _SEED_MODULUS) == 1:
            return value
    raise AssertionError("unreachable: half of all 64-bit values are coprime to 2**64 - 1")


def default_key_file() -> Path:
    return Path(os.environ.get(KEY_FILE_ENV) or DEFAULT_KEY_FILE).expanduser()


def load_key(key_file: str | None = None, *, create: bool = True) -> tuple[WatermarkKey, str | None]:
    """The watermark key and a one-line notice when a random one was just made (else None).

    Order: `key_file` (an explicit --watermark-key-file), then $ALPACA_WATERMARK_KEY, then the default key file
    ($ALPACA_WATERMARK_KEY_FILE or ~/.config/alpaca-kit/watermark.key), reused if it exists and otherwise made
    with a random secret (mode 0600) when `create`; `detect` passes create=False and is told none is configured.
    """
    if key_file:
        return _read_key_file(Path(key_file).expanduser()), None
    if os.environ.get(KEY_ENV):
        return WatermarkKey.from_secret(os.environ[KEY_ENV], f"env {KEY_ENV}"), None
    path = default_key_file()
    if path.exists():
        return _read_key_file(path), None
    if not create:
        raise UserError(f"no watermark key is configured: set {KEY_ENV}, pass --watermark-key-file, or use the "
                        f"key file `alpaca-train serve` made ({path} does not exist)")
    secret = _create_key_file(path)
    if secret is None:  # another process made it first: use theirs
        return _read_key_file(path), None
    key = WatermarkKey.from_secret(secret, f"generated {path}")
    return key, (f"no watermark key was configured: made a random one ({key.fingerprint}) and kept it in {path} "
                 f"(mode 0600); keep it to detect this server's text later")


def _read_key_file(path: Path) -> WatermarkKey:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise UserError(f"watermark key file {path}: cannot read it ({error.strerror or error})") from None
    try:
        secret = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UserError(f"watermark key file {path}: not UTF-8 text") from None
    if not secret:
        raise UserError(f"watermark key file {path} is empty")
    return WatermarkKey.from_secret(secret, f"file {path}")


def _create_key_file(path: Path) -> str | None:
    """Write a random secret to `path` (0600) without ever replacing a file; None when one appeared meanwhile.
    The file is written whole under a temporary name, then hard-linked into place (link refuses to overwrite),
    so a concurrent reader never sees a half-written key."""
    secret = token_source.token_hex(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{token_source.token_hex(4)}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(secret + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                return None
        finally:
            temporary.unlink(missing_ok=True)
    except OSError as error:
        raise UserError(f"cannot make the watermark key file {path}: {error.strerror or error}") from None
    return secret


class CpuSeededWatermarkProcessor(WatermarkLogitsProcessor):
    """transformers' processor with its green lists drawn by a CPU generator (the same lists on every device)
    and cached by previous token. Seeding and permutation are transformers' own code, unchanged."""

    def __init__(self, vocab_size: int, device, **kwargs):
        super().__init__(vocab_size=vocab_size, device="cpu", **kwargs)
        if self.seeding_scheme != SEEDING or self.context_width != 1:
            raise ValueError("CpuSeededWatermarkProcessor supports lefthash with context width 1 only")
        self._packed_mask = functools.lru_cache(maxsize=_GREEN_CACHE_SIZE)(self._draw_packed_mask)
        self._rng_lock = threading.Lock()  # one generator, reseeded per list: shared by the server's threads

    def _draw_packed_mask(self, previous_token: int) -> np.ndarray:
        # numpy, not torch, for the mask: torch spreads a 50K-element fill over its thread pool, which costs
        # milliseconds on a busy machine; packed to 1 bit per token so thousands of lists fit in the cache
        with self._rng_lock:
            green = super()._get_greenlist_ids(torch.tensor([previous_token])).numpy()
        mask = np.zeros(self.vocab_size, dtype=bool)
        mask[green] = True
        return np.packbits(mask)

    def is_green(self, previous_token: int, token: int) -> bool:
        return bool((self._packed_mask(int(previous_token))[token >> 3] >> (7 - (token & 7))) & 1)

    def green_mask(self, previous_token: int) -> torch.Tensor:
        """A CPU bool tensor over the vocabulary: True where a token is green after `previous_token`."""
        mask = np.unpackbits(self._packed_mask(int(previous_token)), count=self.vocab_size).astype(bool)
        return torch.from_numpy(mask)

    def _get_greenlist_ids(self, input_seq: torch.LongTensor) -> torch.LongTensor:
        return self.green_mask(input_seq[-1].item()).nonzero().squeeze(-1).to(input_seq.device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        masks = torch.stack([self.green_mask(token) for token in input_ids[:, -1].tolist()])
        return scores + masks.to(scores.device, scores.dtype) * self.bias


class AlpacaWatermarkingConfig(WatermarkingConfig):
    """transformers' WatermarkingConfig whose processor draws green lists on the CPU (see the module notes)."""

    def construct_processor(self, vocab_size: int, device) -> CpuSeededWatermarkProcessor:
        # generate() asks for a processor on every call (every server batch): hand out one per settings, so its
        # green-list cache outlives the batch and the 1M-entry table transformers builds at init is built once
        return _shared_processor(vocab_size, self.greenlist_ratio, self.bias, self.hashing_key, self.seeding_scheme,
                                 self.context_width)

    def __repr__(self) -> str:  # the stock repr prints hashing_key, which is as secret as the key
        return f"{type(self).__name__}(greenlist_ratio={self.greenlist_ratio}, bias={self.bias}, hashing_key=***)"


@functools.lru_cache(maxsize=4)
def _shared_processor(vocab_size: int, greenlist_ratio: float, bias: float, hashing_key: int, seeding_scheme: str,
                      context_width: int) -> CpuSeededWatermarkProcessor:
    return CpuSeededWatermarkProcessor(vocab_size, "cpu", greenlist_ratio=greenlist_ratio, bias=bias,
                                       hashing_key=hashing_key, seeding_scheme=seeding_scheme,
                                       context_width=context_width)


def watermarking_config(key: WatermarkKey) -> transformers.WatermarkingConfig:
    """What the server passes to `model.generate(..., watermarking_config=...)`."""
    return AlpacaWatermarkingConfig(greenlist_ratio=GAMMA, bias=DELTA, hashing_key=key.hashing_key(),
                                    seeding_scheme=SEEDING, context_width=CONTEXT_WIDTH)


def watermark_description(key: WatermarkKey) -> dict:
    """The watermark as recorded in lineage and shown by the API: settings and key fingerprint, no secret."""
    return {"scheme": "kirchenbauer-2023", "implementation": f"transformers {transformers.__version__} "
            "WatermarkLogitsProcessor, green lists drawn by a CPU generator", "gamma": GAMMA, "delta": DELTA,
            "seeding": SEEDING, "context_width": CONTEXT_WIDTH, "key_fingerprint": key.fingerprint,
            "z_threshold": Z_THRESHOLD, "ignore_repeated_ngrams": IGNORE_REPEATED_NGRAMS}


@dataclass
class Detection:
    scored_tokens: int
    green_tokens: int
    green_fraction: float
    z_score: float
    p_value: float
    watermarked: bool
    threshold: float

    def as_dict(self) -> dict:
        return {"scored_tokens": self.scored_tokens, "green_tokens": self.green_tokens,
                "green_fraction": self.green_fraction, "z_score": self.z_score, "p_value": self.p_value,
                "watermarked": self.watermarked, "threshold": self.threshold}


class _CachedDetector(WatermarkDetector):
    """transformers' detector scoring with the cached green lists of a CpuSeededWatermarkProcessor."""

    def __init__(self, model_config, watermarking: WatermarkingConfig, ignore_repeated_ngrams: bool):
        super().__init__(model_config, "cpu", watermarking.to_dict(), ignore_repeated_ngrams=ignore_repeated_ngrams)
        self.processor = watermarking.construct_processor(model_config.vocab_size, "cpu")
        self._get_ngram_score_cached = self._is_green

    def _is_green(self, prefix: torch.LongTensor, target: int) -> bool:
        return self.processor.is_green(prefix[-1].item(), target)


class Detector:
    """Scores token ids or text for this key's watermark, with a checkpoint's tokenizer and config (no weights)."""

    def __init__(self, model_path: str, key: WatermarkKey, *, threshold: float = Z_THRESHOLD,
                 ignore_repeated_ngrams: bool = IGNORE_REPEATED_NGRAMS):
        from transformers import AutoTokenizer

        folder = Path(model_path).expanduser()
        refuse_missing_model_path(model_path, hub=False)
        from alpaca_data.model_loading import load_config
        from alpaca_data.model_loading import tokenizer_source as tokenizer_folder

        try:  # a peft adapter folder: its base's config (alpaca_data.model_loading)
            config = load_config(str(folder), model_path).get_text_config()
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(str(folder)))
        except (OSError, ValueError) as error:
            raise UserError(f"{model_path}: not a model folder with a config and tokenizer "
                            f"({one_line(error, 200)})") from None
        self.key = key
        self.threshold = threshold
        # the same vocabulary size generate() gives the processor: the config's, not the tokenizer's length
        self._detector = _CachedDetector(config, watermarking_config(key), ignore_repeated_ngrams)
        self._padding = {t for t in (config.eos_token_id, getattr(config, "pad_token_id", None),
                                     self.tokenizer.eos_token_id, self.tokenizer.pad_token_id) if isinstance(t, int)}

    @property
    def ignore_repeated_ngrams(self) -> bool:
        return self._detector.ignore_repeated_ngrams

    @ignore_repeated_ngrams.setter
    def ignore_repeated_ngrams(self, value: bool) -> None:  # the benchmark scores both ways with one green cache
        self._detector.ignore_repeated_ngrams = value

    def detect_ids(self, token_ids: list[int]) -> Detection:
        """Score generated tokens (no prompt). Trailing EOS/padding is dropped: generate() fills finished rows with
        it unwatermarked. The first token is only context (its green list depends on the prompt's last token)."""
        ids = list(token_ids)
        while ids and ids[-1] in self._padding:
            ids.pop()
        if ids and ids[0] == self._detector.bos_token_id:
            ids = ids[1:]  # transformers' detector drops a leading BOS too; dropped here to count what remains
        if len(ids) < 2:
            return Detection(0, 0, 0.0, 0.0, 1.0, False, self.threshold)
        out = self._detector(torch.tensor([ids], dtype=torch.long), z_threshold=self.threshold, return_dict=True)
        z = float(out.z_score[0])
        return Detection(int(out.num_tokens_scored[0]), int(out.num_green_tokens[0]), float(out.green_fraction[0]),
                         z, float(out.p_value[0]), z >= self.threshold, self.threshold)

    def detect_text(self, text: str) -> Detection:
        return self.detect_ids(self.tokenizer(text, add_special_tokens=False)["input_ids"])
