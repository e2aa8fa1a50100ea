#!/usr/bin/env bash
# Writes the regression fixtures of tests/regression.rs: what `nasrank score` (every score,
# a dead arch among the archs) and `nasrank search` (all four strategies) print for a small
# network on synthetic inputs. They pin behaviour across refactors (issue 21: the run layer
# and the score registry must not move a value). Regenerate them only in a commit that
# means to change values, and say which and why in its message:
#
#   tools/make_regression.sh [NASRANK]     (default: target/release/nasrank)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/nasrank}"
dir=tests/golden/regression
# Keep these argument lists identical to tests/regression.rs.
net=(--channels 3 --cells 1 --batch 8 --threads 2 --quiet)
"$bin" score --archs 1,7,1651,5256,1462,6111,11000 --scores all --seed 3 "${net[@]}" \
    | python3 -c 'import csv, sys
rows = list(csv.reader(sys.stdin))
drop = rows[0].index("seconds")
csv.writer(sys.stdout, lineterminator="\n").writerows([r[:drop] + r[drop + 1:] for r in rows])' \
    > "$dir/score.csv"
search=(--seed 5 --json "${net[@]}")
"$bin" search random -n 12 --runs 2 "${search[@]}" > "$dir/search_random.json"
"$bin" search evolution --population 4 --tournament 2 --cycles 10 "${search[@]}" \
    > "$dir/search_evolution.json"
"$bin" search topk -n 12 --k 3 "${search[@]}" > "$dir/search_topk.json"
"$bin" search prune --repeats 1 --lr-batches 1 --lr-batch-size 8 "${search[@]}" \
    > "$dir/search_prune.json"
ls -l "$dir" >&2
