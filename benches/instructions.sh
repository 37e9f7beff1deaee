#!/bin/bash
# Instructions per solve (valgrind's callgrind: a count, not a time, so it repeats exactly on a
# noisy machine) of the work-precision points: the 16 Lotka-Volterra f64 points, then the MLP
# field (latent 32, hidden 64, f32) at batch 16. Give one or two `solve-loop` binaries
# (`cargo build --release -p ode-benches --bin solve-loop`); with two, the last column is
# second / first:
#   benches/instructions.sh OLD/solve-loop target/release/solve-loop
# Each count is (N solves − 1 solve) / (N − 1), which leaves out start-up and the first solve's
# allocations. Needs valgrind (`apt-get install valgrind`).
set -eu
count() { # BIN ARGS... -> instructions of the whole run
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per_solve() { # BIN METHOD X N [mlpB]
  local b=$1 m=$2 x=$3 n=$4; shift 4
  local one many
  one=$(count "$b" "$m" "$x" 1 "$@")
  many=$(count "$b" "$m" "$x" "$n" "$@")
  echo $(( (many - one) / (n - 1) ))
}
points=()
for m in heun2 bosh3 dopri5 tsit5; do for r in 1e-3 1e-5; do points+=("$m $r 21"); done; done
for m in euler midpoint rk4 rk4_classic; do for s in 32 128; do points+=("$m $s 21"); done; done
for p in "dopri5 1e-3" "dopri5 1e-5" "bosh3 1e-3" "tsit5 1e-3" "euler 32" "rk4 32"; do points+=("$p 4 mlp16"); done
printf '%-26s %14s %14s %8s\n' point first "${2:+second}" "${2:+ratio}"
for p in "${points[@]}"; do
  read -r m x n extra <<< "$p"
  a=$(per_solve "$1" $m $x $n $extra)
  if [ $# -ge 2 ]; then
    b=$(per_solve "$2" $m $x $n $extra)
    printf '%-26s %14d %14d %8.3f\n' "$m $x ${extra:-lv}" "$a" "$b" "$(awk "BEGIN { print $b / $a }")"
  else
    printf '%-26s %14d\n' "$m $x ${extra:-lv}" "$a"
  fi
done
