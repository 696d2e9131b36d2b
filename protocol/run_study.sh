#!/bin/bash
# The study of protocol/study.yaml on 2 cores, in an order that decides the most claims first:
#   1. the PSPNet baseline, Affinity and AAF of seeds 0-9 (C1-C3, C8-C14, C17-C19), two seeds a chunk;
#   2. every other run group of seeds 0-4 (FCN, GAN, Emb., kernel sizes, the controls), a seed a chunk.
# Each chunk is `aaf reproduce --profile study --jobs 2 --only <its runs>`: its trainings two side by
# side on one thread each, then its evaluations.  Finished runs and evaluations are skipped, a killed
# training continues from its checkpoint, so the script can be stopped and started again at will.
# Run it from the repository's root of a clean checkout at (or after) the protocol's commit.
set -euo pipefail
PY=${PYTHON:-python}
chunk() {
  echo "== chunk $1 ($(date +%T))"
  "$PY" -m aafcore.cli reproduce --profile study --jobs 2 --no-reports --no-book --only "$1"
}
for pair in "0 1" "2 3" "4 5" "6 7" "8 9"; do
  set -- $pair
  chunk "$(for s in "$@"; do printf 'pspnet-baseline-s%s,pspnet-affinity-s%s,pspnet-aaf-s%s,' "$s" "$s" "$s"; done)"
done
for s in 0 1 2 3 4; do
  chunk "$(for g in pspnet-gan pspnet-emb fcn-baseline fcn-affinity fcn-aaf pspnet-aaf-k3 pspnet-aaf-k3_5 \
                    pspnet-aaf_frozen pspnet-aaf_min pspnet-aaf-channel; do printf '%s-s%s,' "$g" "$s"; done)"
done
echo "== the study is complete ($(date +%T))"
