#!/usr/bin/env bash
# Reproduces the table of docs/accuracy.md: per dataset, a default `ode search` (the guide's
# space with normalization = global|window, 30 random trials of 20 epochs, study seed 0), then
# `ode evaluate` of the best trial's weights (chosen on validation) on val and on test, next to
# the baselines on the same windows.
#
# Usage: benches/accuracy.sh [OUT_DIR] [DATASET...]   (default OUT_DIR /tmp/ode-accuracy; all datasets)
# Needs: cargo build --release -p ode-cli; python3; ETTh1 from ../shared/data (skipped if absent);
# datasets/eustockmarkets.csv if built with datasets/fetch.sh (skipped if absent: GPL, not shipped).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ODE="$ROOT/target/release/ode"
OUT="${1:-/tmp/ode-accuracy}"
shift || true
mkdir -p "$OUT"
[ -x "$ODE" ] || { echo "build first: cargo build --release -p ode-cli" >&2; exit 1; }

# name | file | season | extra flags
DATASETS=(
  "etth1|$ROOT/../shared/data/ETTh1.csv|24|"
  "seattle_weather|$ROOT/datasets/seattle_weather.csv|7|"
  "co2_mauna_loa|$ROOT/datasets/co2_mauna_loa.csv|12|"
  "us_economics_monthly|$ROOT/datasets/us_economics_monthly.csv|12|"
  "us_macro|$ROOT/datasets/us_macro.csv|4|--context-len 8 --horizon 4"
  "eustockmarkets|$ROOT/datasets/eustockmarkets.csv|5|"
)

for entry in "${DATASETS[@]}"; do
  IFS='|' read -r name file season extra <<<"$entry"
  if [ $# -gt 0 ] && [[ ! " $* " == *" $name "* ]]; then continue; fi
  if [ ! -f "$file" ]; then echo "skip $name: $file not found" >&2; continue; fi
  dir="$OUT/$name"
  mkdir -p "$dir"
  echo "== $name" >&2
  # shellcheck disable=SC2086 # extra holds several flags
  (cd "$dir" && /usr/bin/time -f "%e" -o seconds.txt "$ODE" search --data "$file" --strategy random --trials 30 \
    --epochs 20 --season "$season" --study-seed 0 --storage "sqlite:$dir/study.db" --study "$name" $extra \
    >search.txt 2>search.err)
  for split in val test; do
    "$ODE" evaluate --checkpoint "$dir/best.safetensors" --data "$file" --split "$split" --season "$season" \
      --format json >"$dir/$split.json"
  done
  grep -A1 "^trial" "$dir/search.txt" | tail -1 >"$dir/best.txt"
done

python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
cols = ["persistence", "window_mean", "seasonal_naive", "linear_ar"]
print("| dataset | split | windows | model | persistence | window mean | seasonal naive | linear AR | skill vs persistence | search s |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name in sorted(os.listdir(out)):
    d = os.path.join(out, name)
    if not os.path.exists(os.path.join(d, "test.json")):
        continue
    secs = open(os.path.join(d, "seconds.txt")).read().strip().splitlines()[-1]
    for split in ["val", "test"]:
        e = json.load(open(os.path.join(d, f"{split}.json")))
        b = e["baselines"]
        cell = lambda k: f"{b[k]['rmse']:.4f}" if k in b and b[k].get("rmse") is not None else "–"
        m = e["model"]
        print(f"| {name} | {split} | {e['windows']} | **{m['rmse']:.4f}** | " + " | ".join(cell(k) for k in cols)
              + f" | {m['skill']:+.3f} | {secs if split == 'val' else ''} |")
PY
