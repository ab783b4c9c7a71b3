#!/bin/sh
# Every benchmark behind bench/RESULTS.md, one after the other (they must not overlap: they pin cores).
#   sh bench/run_all.sh [OUTDIR]      (about 40 minutes on 2 cores)
set -u
OUT=${1:-bench/out}
mkdir -p "$OUT"
PY=${PYTHON:-python}
run() { name=$1; shift; echo "== $name: $*" >&2; timeout 2400 "$@" > "$OUT/$name.md" 2> "$OUT/$name.log"; echo "   exit $?" >&2; }

run capacity $PY bench/capacity.py --sizes 1000,5000,10000 --servers serve,proto,node \
    --repeat 3 --json "$OUT/capacity.json"
run ablation $PY bench/capacity.py --sizes 10000 --repeat 3 --json "$OUT/ablation.json" --servers \
    "serve;noping=serve:--ping-interval 0;proto;node"
run faithful $PY bench/capacity.py --sizes 1000,5000,10000 --servers serve-logs,node-serverjs --repeat 3 \
    --json "$OUT/faithful.json"
run compression $PY bench/capacity.py --sizes 5000 --client-compression --repeat 2 --pairs serve-deflate/node \
    --json "$OUT/compression.json" --servers "serve;serve-deflate=serve:--compression;node"
run client_engines $PY bench/client_engines.py -n 5000 --repeat 3
run memory_serve $PY bench/serve_memory.py -n 5000 --top 30
run memory_proto $PY bench/serve_memory.py -n 5000 --top 15 --server proto
run doctor_speed $PY bench/doctor_speed.py -n 15 --json "$OUT/doctor_speed.json"
echo done >&2
