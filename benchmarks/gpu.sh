#!/usr/bin/env bash
# jaxrnn's GPU check in one command: the self-check and the benchmark against cuDNN, into one report.
#
# Usage:
#   bash benchmarks/gpu.sh [--out DIR]          # on one GPU (H100/H200): about 5 minutes estimated (not yet run on one), 8 at most
#   bash benchmarks/gpu.sh --cpu [--out DIR]    # smoke run on the CPU: tiny shapes, a minute or two
#   PYTHON=/path/to/python bash benchmarks/gpu.sh ...   # the interpreter to use (default python3)
#
# It runs from the checkout (PYTHONPATH is set to it), in parts, each `python -m benchmarks ... --append`
# under its own hard `timeout`, so that a hang costs that part alone and the report keeps the others
# (and every problem a part finished before it was stopped: the bench saves after each):
#
#   1. self-check   every cell with a hand-written BPTT: manual against autodiff gradients in float32
#                   and bfloat16, as `python -m jaxrnn` checks them (B32 X64 H128 T100)
#   2. flashrnn     the LSTM at FlashRNN's benchmark shape, B16 X768 H768 T1024 in bfloat16: one head
#                   against Flax and torch cuDNN (jax cuDNN runs float32 only: listed as not run), then
#                   1 and 12 heads, jaxrnn manual and autodiff
#   3. table-CELL   LSTM, GRU and the simple RNN on the four table shapes in float32, against Flax,
#                   torch cuDNN and jax cuDNN (LSTM only), one part per cell (--cpu: one part)
#
# Every part checks that the implementations compute the same gradients before timing them (bfloat16
# against jaxrnn autodiff in float32). DIR (default gpu-check-results) gets results.md (the self-check's
# table, then the bench's tables, then how each part ended), results.json and logs/PART.log.
#
# On a GPU a preflight first checks that JAX sees it; timing takes 5 interleaved rounds at most
# (--rounds 5 --budget 1.5). --cpu runs the same parts on tiny shapes (FlashRNN's as B2 X24 H24 T16, 12
# heads of 2) with 3 rounds, JAX and torch on the CPU (CUDA hidden), torch's CPU modules as one more
# peer: the cuDNN peers are reported as skipped, needing a GPU.
#
# Exit status: 0 when every part finished and agreed; 1 when a part failed, timed out or disagreed (the
# self-check included), or results.md is missing; 2 on bad arguments.
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

mode=gpu
out=gpu-check-results
while (($#)); do
  case "$1" in
    --cpu) mode=cpu ;;
    --out) [[ $# -ge 2 ]] || { echo "gpu.sh: --out needs a folder" >&2; exit 2; }; out=$2; shift ;;
    --out=*) out=${1#--out=} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$out/logs" || exit 2
out=$(cd "$out" && pwd)
cd "$root" || exit 2
rm -f "$out/results.json" "$out/results.md"  # --append must not add to an earlier run's report
python=${PYTHON:-python3}
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
unset JAX_ENABLE_X64  # the bench runs float32 and bfloat16, the self-check float32 and bfloat16 too

peers="jaxrnn manual,jaxrnn autodiff,flax,torch cuDNN,jax cuDNN"
if [[ $mode == cpu ]]; then
  export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=""
  peers="$peers,torch"           # the torch code path, on the CPU
  self_check=2x3x8x10             # T > 3: the loop backward of long sequences, not the unrolled one of short
  flash=2x24x24x16                # FlashRNN's shape scaled down: H 24 takes 12 heads of 2
  table=4x8x16x10
  timing=(--rounds 3 --budget 0.05 --ceiling-size 256)
  tables=(lstm,gru,simple_rnn)    # one part: each process start costs seconds here
  caps=(300 240 300)              # hard limits per part, seconds; a loaded 2-core machine is slow to compile
  total=600
else
  export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}  # leave torch half the GPU
  self_check=32x64x128x100
  flash=16x768x768x1024
  table=32x64x128x100,64x128x256x200,8x32x64x1000,256x256x512x50
  timing=(--rounds 5 --budget 1.5)
  tables=(lstm gru simple_rnn)    # a part each: a hang costs one cell's table
  caps=(90 150 120 90 80)        # hard limits per part, seconds (estimated, not yet measured on a GPU: about 55, 65, 80, 60 and 55)
  total=450                       # and all of them together, the preflight included: under 8 minutes
fi

bench=("$python" -m benchmarks --no-plots --out "$out" --append --sweep "" "${timing[@]}")
names=() codes=() times=()
status=0

# run_part NAME CAP COMMAND...: COMMAND under `timeout`, the smaller of CAP and what is left of $total.
run_part() {
  local name=$1 cap=$2 left code start
  shift 2
  left=$((total - SECONDS))
  ((cap < left)) || cap=$left
  start=$SECONDS
  if ((cap < 10)); then
    code=skipped
    echo "== $name: skipped, the time limit is spent"
  else
    echo "== $name (at most ${cap} s): $(printf '%q ' "$@")"
    timeout --kill-after=10 "$cap" "$@" >"$out/logs/$name.log" 2>&1
    code=$?
    ((code == 124 || code == 137)) && code="timed out after ${cap} s"
    tail -n 4 "$out/logs/$name.log" | sed 's/^/   /'
  fi
  [[ $code == 0 ]] || status=1
  names+=("$name") codes+=("$code") times+=("$((SECONDS - start))")
  echo "   -> $code ($((SECONDS - start)) s)"
}

if [[ $mode == gpu ]]; then
  run_part preflight 60 "$python" -c 'import jax; d = jax.devices(); print(jax.__version__, d)
assert jax.default_backend() == "gpu", f"JAX sees no GPU ({jax.default_backend()}): install jax[cuda] or use --cpu"'
  if [[ ${codes[0]} != 0 ]]; then
    echo "gpu.sh: the preflight failed (its log is above, and in $out/logs/preflight.log); nothing was measured" >&2
    exit 1
  fi
fi
run_part self-check "${caps[0]}" "${bench[@]}" --self-check "$self_check" --shapes ""
run_part flashrnn "${caps[1]}" "${bench[@]}" --dtype bfloat16 --cells lstm --implementations "$peers" \
  --shapes "$flash" --heads 1,12 --heads-shapes "$flash"
cap=2
for cells in "${tables[@]}"; do
  run_part "table-${cells//,/-}" "${caps[cap]}" "${bench[@]}" --cells "$cells" --implementations "$peers" \
    --shapes "$table"
  cap=$((cap + 1))
done

report="$out/results.md"
if [[ -s $report ]]; then
  {
    printf '\n## How each part of benchmarks/gpu.sh ended\n\n'
    printf 'Mode: %s. Each part ran under a hard time limit; its log is in logs/.\n\n' "$mode"
    printf '| part | exit | seconds |\n| --- | --- | ---: |\n'
    for i in "${!names[@]}"; do
      printf '| %s | %s | %s |\n' "${names[i]}" "${codes[i]}" "${times[i]}"
    done
  } >>"$report"
  echo "report: $report (${SECONDS} s in all)"
  ((status == 0)) || echo "gpu.sh: a part failed, timed out or disagreed: see the table at the end of $report" >&2
else
  echo "gpu.sh: no report at $report; see $out/logs/" >&2
  status=1
fi
exit $status
