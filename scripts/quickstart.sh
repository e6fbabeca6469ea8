#!/usr/bin/env bash
# The main job on the embedded default store (Parquet + DuckDB in ./alpaca-store, no server, no network):
# self-instruct generation from the Alpaca seed tasks with the demo teacher, then a look at the result.
set -euo pipefail
cd "$(dirname "$0")/.."
cli=.venv/bin/alpaca-data
store="${ALPACA_STORE:-alpaca-store}"
# the 175 Alpaca seed tasks: from the shared data when it is beside the repo, else the same file in tests/data
shared_seeds=../shared/data/seeds/alpaca_seed_tasks.jsonl
if [ -f "$shared_seeds" ]; then default_seeds="$shared_seeds"; else default_seeds=tests/data/seeds/alpaca_seed_tasks.jsonl; fi
seeds="${ALPACA_SEEDS:-$default_seeds}"

echo "== import the seed tasks"
$cli import "$seeds" --dataset seeds -m "self-instruct seed tasks"

echo "== generate 300 tasks with the demo teacher (an OpenAI-compatible server started in-process)"
$cli generate --seeds "$seeds" --num 300 --teacher demo --dataset demo --concurrency 8
revision=$($cli sql "SELECT id FROM revisions WHERE dataset = 'demo' AND is_main" --format csv | tail -n 1)

echo "== the new revision"
$cli show demo@main
echo "== SQL overview"
$cli sql --analysis overview --rev demo@main
echo "== what the filters dropped during generation"
$cli sql "SELECT reason, count(*) AS dropped FROM rejections GROUP BY reason ORDER BY dropped DESC" --rev demo@main
echo "== integrity check"
$cli fsck
echo
echo "Files:  $store/datasets/demo/revisions/$revision/ (data.parquet, rejections.parquet, manifest.json)"
echo "Next:   $cli sql \"SELECT instruction, output FROM records LIMIT 5\" --rev demo@main"
echo "        $cli export demo@main --format json -o demo.json"
echo "        $cli generate --seeds $seeds --num 300 --teacher openai:gpt-4o-mini --dataset mine   # a real teacher"
