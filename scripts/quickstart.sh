#!/usr/bin/env bash
# The main job on the embedded default store (Parquet + DuckDB in ./alpaca-store, no server).
set -euo pipefail
cd "$(dirname "$0")/.."
cli=.venv/bin/alpaca-data
store="${ALPACA_STORE:-alpaca-store}"

echo "== validate and import the example file"
$cli validate examples/example_tasks.json
revision=$($cli import examples/example_tasks.json --dataset example -m "quickstart example" | tail -n 1)
echo "revision: $revision"

echo "== the revision"
$cli show example@main
echo "== SQL overview"
$cli sql --analysis overview --rev example@main
echo "== integrity check"
$cli fsck
echo
echo "Files: $store/datasets/example/revisions/$revision/ (data.parquet, manifest.json)"
echo "Try:   $cli sql \"SELECT instruction FROM records LIMIT 5\" --rev example@main"
