#!/usr/bin/env bash
# One virtual environment per peer library, for the replay leaderboard (benchmarks/replay.py) and the
# external black-box benchmarks (benchmarks/external.py).
# Never part of tunelab's own environment: several peers pin numpy, ConfigSpace or torch against it.
# Each environment only runs benchmarks/peers/server.py, which speaks JSON lines on stdin/stdout.
#   bash benchmarks/peers/make_envs.sh            # all peers
#   bash benchmarks/peers/make_envs.sh optuna dehb # some
# The optuna environment also serves the peers optuna_tpe_mv and optuna_gp (benchmarks/external.py);
# GPSampler needs torch, installed as $PEER_TORCH (default "torch", pip's choice: a CUDA build on
# Linux; e.g. PEER_TORCH="torch==2.13.0+cpu" takes a CPU wheel from pip's find-links). An environment
# whose ok.json exists but lacks one of its imports (made before torch joined) is made again.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
PEER_TORCH=${PEER_TORCH:-torch}
declare -A PKGS=(
  [optuna]="optuna scipy $PEER_TORCH"
  [nevergrad]="nevergrad"
  [dehb]="dehb"
  [smac]="swig smac"
  [syne_tune]="syne-tune"
)
declare -A IMPORTS=(  # what a ready environment must import
  [optuna]="optuna, scipy, torch"
  [nevergrad]="nevergrad"
  [dehb]="dehb"
  [smac]="smac"
  [syne_tune]="syne_tune"
)
peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(optuna nevergrad dehb smac syne_tune)
for peer in "${peers[@]}"; do
  env=".venvs/$peer"
  if [ -x "$env/bin/python" ] && "$env/bin/python" -c "import json; json.load(open('$env/ok.json')); import ${IMPORTS[$peer]}" 2>/dev/null; then
    echo "$peer: ready"; continue
  fi
  start=$(date +%s)
  rm -rf "$env"
  "$PY" -m venv "$env"
  "$env/bin/pip" install -q --upgrade pip
  if [ "$peer" = smac ]; then
    "$env/bin/pip" install -q swig   # pyrfr (SMAC's random forest) builds with SWIG
    PATH="$PWD/$env/bin:$PATH" "$env/bin/pip" install -q smac
  else
    # shellcheck disable=SC2086
    "$env/bin/pip" install -q ${PKGS[$peer]}
  fi
  "$env/bin/python" -m pip freeze > "$env/freeze.txt"
  echo "{\"peer\": \"$peer\", \"seconds\": $(( $(date +%s) - start ))}" > "$env/ok.json"
  echo "$peer: made in $(( $(date +%s) - start )) s"
done
