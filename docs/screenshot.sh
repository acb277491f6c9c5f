#!/usr/bin/env bash
# Rebuild docs/hparams.png: TensorBoard's HParams view of a real search, taken with headless
# Chromium. The search is the default DANN search of the README (about 6 minutes on 2 cores):
#   raydm tune --space search_spaces/dann.yaml --name dann-validators
#   bash docs/screenshot.sh results/dann-validators
set -euo pipefail
experiment=${1:?usage: bash docs/screenshot.sh EXPERIMENT_DIR}
port=6123
raydm board "$experiment" --port "$port" > /dev/null 2>&1 &
board=$!
trap 'kill $board' EXIT
sleep 10  # TensorBoard reads the event files in the background
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=2400,1000 \
  --virtual-time-budget=20000 --screenshot="$(dirname "$0")/hparams.png" \
  "http://127.0.0.1:$port/#hparams"
