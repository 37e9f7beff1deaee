#!/bin/bash
# Prints the loss, NFE, step counts and every gradient (`ode diagnose --json`) of a fixed set of
# runs (solvers euler, rk4, dopri5, bosh3 x adjoint/backprop x per_sample/shared step modes x the
# adjoint norms, on two splits), then the metrics of short training runs without their timing
# fields, to compare two builds bit for bit:
#   benches/golden-grads.sh OLD/ode > old.txt; benches/golden-grads.sh target/release/ode > new.txt; diff old.txt new.txt
# The checkpoints are trained once, by the first binary run, into $GOLDEN_DIR (default
# /tmp/golden-grads); later runs reuse them, so both builds are diagnosed on the same weights.
# ETTh1 joins when $ETTH1 (default ../shared/data/ETTh1.csv) exists.
set -u
B=$1
G=${GOLDEN_DIR:-/tmp/golden-grads}
ETTH1=${ETTH1:-$(dirname "$0")/../../shared/data/ETTh1.csv}
SMALL="--latent-dim 8 --hidden-dim 16"
mkdir -p "$G"
cases=("five --dataset five-channel --rows 600")
[ -f "$ETTH1" ] && cases+=("etth1 --data $ETTH1")
for c in "${cases[@]}"; do
  name=${c%% *}; data=${c#* }
  if [ ! -f "$G/$name/checkpoint.safetensors" ]; then
    extra=""; [ "$name" = etth1 ] && extra="--max-train-windows 256"
    $B train $data $extra --epochs 1 $SMALL --out "$G/$name" --quiet > /dev/null 2>&1 || echo "ERR train $name"
  fi
  for split in "--split val" "--split train --windows 0..64"; do
    for s in euler rk4 dopri5 bosh3; do
      for adj in true false; do
        for mode in per_sample shared; do
          norms="seminorm"; [ $adj = true ] && [ $mode = shared ] && norms="seminorm mixed"
          for norm in $norms; do
            args="--solver $s --use-adjoint $adj --step-mode $mode --adjoint-norm $norm $split"
            echo "$name $args"
            $B diagnose --checkpoint "$G/$name/checkpoint.safetensors" $data $args --json 2>&1
            echo
          done
        done
      done
    done
  done
  # Two epochs of training per gradient method: metrics without wall-clock fields.
  for tr in "--use-adjoint true" "--use-adjoint false" "--use-adjoint true --step-mode shared --adjoint-norm mixed --solver bosh3" "--use-adjoint false --solver rk4 --step-mode shared"; do
    extra=""; [ "$name" = etth1 ] && extra="--max-train-windows 256"
    out=$(mktemp -d)
    echo "$name train $tr"
    $B train $data $extra --epochs 2 $SMALL $tr --out "$out" --quiet > /dev/null 2>&1 || echo "ERR train"
    grep -v '"metric":"\(train_seconds\|seconds\)"' "$out/metrics.jsonl"
    rm -rf "$out"
  done
done
