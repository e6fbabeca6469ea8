"""Rebuild the samples in tests/data from the full shared data (`../shared/data` beside the checkout).

    python tests/data/make_samples.py [SHARED_DATA]

Records are copied unedited, in their original order: the first N of each file, plus the few later records a
test names by content (listed by index below). Written with `indent=1` and UTF-8 as the other files here.
"""
from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# corpus file: (first N records, later records the tests find by content, as 0-based indexes)
CORPORA = {
    "gsm8k_train_alpaca.json": (500, (1202, 1530, 1986, 7421)),
    # with both records of each of the corpus's 20 exact duplicates (test_dedup counts them all)
    "gpteacher_toolformer.json": (600, (809, 933, 1006, 1073, 1190, 1210, 1518, 1790, 2306, 2356, 2401, 2567, 3004,
                                        3064, 3137, 3337, 3556, 3593, 3596, 3657, 3871, 3960, 4265, 5155, 5357,
                                        5371, 5586, 5591, 5615, 5655, 5935, 6155, 6320, 6413, 6590, 6797, 7349,
                                        7351)),
    "gpteacher_roleplay.json": (300, (696, 789, 1284)),
    "gpteacher_codegen.json": (500, (604, 1224, 2013, 2113, 3995, 4284)),
    "alpaca_zh_10000.json": (600, (1220, 1221, 1222, 1225, 1400, 1726, 1963)),
}
ALPACA_EVAL_FIRST = 200  # of the 805 AlpacaEval outputs of each model
WHOLE = ("eval/self_instruct_predictions/text-davinci-001.jsonl",
         "eval/self_instruct_predictions/davinci-self-instruct.jsonl",
         "eval/alpaca_eval_annotations/alpaca_eval_gpt4_leaderboard.csv")
GZIPPED = ("eval/alpaca_eval_annotations/alpaca-7b-neft.alpaca_eval_gpt4.annotations.json",)


def write_json(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def main(shared: Path) -> None:
    for name, (first, later) in CORPORA.items():
        rows = json.loads((shared / "corpora" / name).read_text(encoding="utf-8"))
        write_json(HERE / "corpora" / name, rows[:first] + [rows[i] for i in later if i >= first])
    for name in ("alpaca-7b.json", "text_davinci_003.json", "gpt4.json"):
        rows = json.loads((shared / "eval" / "alpaca_eval" / name).read_text(encoding="utf-8"))
        write_json(HERE / "eval" / "alpaca_eval" / name, rows[:ALPACA_EVAL_FIRST])
    for relative in WHOLE:
        (HERE / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / relative, HERE / relative)
    for relative in GZIPPED:  # byte-identical once gunzipped (mtime 0: the .gz is reproducible)
        (HERE / relative).parent.mkdir(parents=True, exist_ok=True)
        with open(HERE / f"{relative}.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                                                      compresslevel=9, filename="") as out:
            out.write((shared / relative).read_bytes())


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "data")
