#!/bin/bash
# Copy the study's finished results from a clone that runs it (protocol/run_study.sh) into this
# checkout, to be committed: every run folder of results/study/synthetic/ with a metrics.json,
# and its finished evaluations, without checkpoints, locks, temporary or failed notebooks.  A run
# still training (no metrics.json) and an evaluation still running are left alone.  Usage: bash protocol/collect_study.sh /path/to/the/clone
set -euo pipefail
src=${1:?usage: collect_study.sh CLONE}/results/study/synthetic
dst=results/study/synthetic
[ -d "$src" ] || { echo "collect_study.sh: $src not found" >&2; exit 2; }
skip=(--exclude=checkpoint.pt --exclude=.lock --exclude='*.tmp' --exclude='*.running.ipynb' --exclude='*.failed.ipynb')
n=0
for run in "$src"/*/; do
  name=$(basename "$run")
  [ -f "$run/metrics.json" ] || continue
  mkdir -p "$dst/$name"
  tar -C "$run" --exclude=./eval "${skip[@]}" -cf - . | tar -C "$dst/$name" -xf -
  for ev in "$run"eval/*/; do    # an evaluation still running (no metrics.json) is left alone
    [ -f "$ev/metrics.json" ] || continue
    mkdir -p "$dst/$name/eval/$(basename "$ev")"
    tar -C "$ev" "${skip[@]}" -cf - . | tar -C "$dst/$name/eval/$(basename "$ev")" -xf -
  done
  n=$((n + 1))
done
echo "collect_study.sh: $n finished run folders copied into $dst"
