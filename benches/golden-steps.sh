#!/bin/bash
# Prints NFE and step counts of 800 `ode solve` runs (every built-in problem x solver x f32/f64 x
# step mode x 5 grids/tolerances), one line each, to compare two builds:
#   benches/golden-steps.sh OLD/ode > old.txt; benches/golden-steps.sh target/release/ode > new.txt; diff old.txt new.txt
B=$1
for p in exp-decay harmonic lotka-volterra van-der-pol mlp; do
 for s in euler midpoint heun2 rk4 rk4_classic bosh3 dopri5 tsit5; do
  for prec in f64 f32; do
   for mode in per_sample shared; do
    for extra in "" "--rtol 1e-4 --atol 1e-5" "--step-size 0.013" "--t-end 7.3 --n-out 37" "--t-start 2 --t-end -1.5 --n-out 8"; do
      if [ $p = mlp ]; then ex="--batch 8 --latent 6 --hidden 16"; else ex=""; fi
      out=$($B solve --problem $p --solver $s --precision $prec --step-mode $mode $extra $ex --json 2>&1 | python3 -c "import sys,json
try:
  d=json.load(sys.stdin); st=d.get('stats',d); print(json.dumps(st,sort_keys=True)[:400], json.dumps(d.get('ys', d.get('y','')))[-80:])
except Exception as e: print('ERR', e)")
      echo "$p $s $prec $mode [$extra] $out"
    done
   done
  done
 done
done
