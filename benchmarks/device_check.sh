#!/usr/bin/env bash
# The GPU check: both benchmarks in one command that ends within DEADLINE (570 s), then a table.
#   1. benchmarks/throughput.py: pipelines (a) classic, (b) crl_helpers, (c) step only, and (d) the variant of
#      (b) with eager (uncompiled) views; STEPS (300) timed steps each after compiling (about 2 minutes in all),
#      and a profile of 5 (b) steps (profile_b.txt: where the time goes);
#   2. benchmarks/cifar10_knn.py: SimCLR on CIFAR-10 for MINUTES (5) of training, then kNN on the test split;
#   3. a short table of every figure, printed last (rows ready for benchmarks/RESULTS.md).
# Logs and JSON go to $OUT (default runs/device_check).
#
# On a machine with a CUDA GPU, from the repository root, with CIFAR-10 as the JPEG copy in .device-data/
# (or torchvision's cifar-10-batches-py/ there; see data/README.md):
#   mkdir -p .device-data && cp /path/to/cifar10_jpeg.npz .device-data/
#   bash benchmarks/device_check.sh
# A CPU smoke run of this script itself (seconds, figures meaningless):
#   QUICK=1 PYTHON=.venv/bin/python bash benchmarks/device_check.sh
#
# Environment: MINUTES (training budget, 5), STEPS (300), DATA (.device-data), PYTHON (python3),
#   DEADLINE (seconds the whole script may take: 570, so that it fits a 10-minute job with a margin),
#   RESERVE (seconds cifar10_knn.py needs besides training: data, probe with compile, evaluations; 120),
#   T_THROUGHPUT (hard limit of step 1, 240 s), QUICK=1 (both scripts in --quick mode),
#   THROUGHPUT_ARGS / KNN_ARGS (extra flags for step 1 / step 2, e.g. KNN_ARGS="--lr 0.3 --temperature 0.1"
#   to try another recipe; SKIP_THROUGHPUT=1 runs step 2 alone with the whole deadline).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-runs/device_check}
PY=${PYTHON:-python3}
DATA=${DATA:-.device-data}
MINUTES=${MINUTES:-5}
STEPS=${STEPS:-300}
DEADLINE=${DEADLINE:-570}
RESERVE=${RESERVE:-120}
T_THROUGHPUT=${T_THROUGHPUT:-240}
QUICK=${QUICK:-0}
mkdir -p "$OUT"

{
  date -u +"date %Y-%m-%d %H:%M UTC"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  echo "cpu cores $(nproc)"
  "$PY" -c 'import torch, torchvision; print("torch", torch.__version__, "| torchvision", torchvision.__version__,
"| cuda", torch.cuda.is_available())'
} 2>&1 | tee "$OUT/env.txt"

throughput_args=(--data-root "$DATA" --json "$OUT/throughput.json" --profile "$OUT")
knn_args=(--data-root "$DATA" --json "$OUT/cifar10_knn.json")
# shellcheck disable=SC2206  # word splitting of the extra flags is intended
throughput_args+=(${THROUGHPUT_ARGS:-})
# shellcheck disable=SC2206
knn_args+=(${KNN_ARGS:-})
if [ "$QUICK" = 1 ]; then
  throughput_args+=(--quick)
  knn_args+=(--quick)
else
  throughput_args+=(--steps "$STEPS" --pipelines abcd)
  [ -f "$DATA/cifar10_jpeg.npz" ] || echo "warning: no $DATA/cifar10_jpeg.npz: torchvision will try to download (offline: fails)"
fi

if [ "${SKIP_THROUGHPUT:-0}" = 1 ]; then
  echo "== 1. throughput: skipped (SKIP_THROUGHPUT=1)"
  status_throughput=0
else
  echo "== 1. throughput: python benchmarks/throughput.py ${throughput_args[*]}"
  timeout "$T_THROUGHPUT" "$PY" benchmarks/throughput.py "${throughput_args[@]}" 2>&1 | tee "$OUT/throughput.log"
  status_throughput=${PIPESTATUS[0]}
fi

# Whatever step 1 left of the deadline bounds step 2; its training budget shrinks rather than overrun.
left=$((DEADLINE - SECONDS))
if [ "$QUICK" != 1 ]; then
  minutes=$("$PY" -c "print(f'{max(0.5, min($MINUTES, ($left - $RESERVE) / 60)):.2f}'.rstrip('0').rstrip('.'))")
  [ "$("$PY" -c "print(int($minutes < $MINUTES))")" = 0 ] ||
    echo "note: training budget cut from $MINUTES to $minutes min, to end within ${DEADLINE} s"
  knn_args+=(--minutes "$minutes")
fi
echo "== 2. kNN: python benchmarks/cifar10_knn.py ${knn_args[*]}  (${left} s left)"
timeout "$((left > 30 ? left : 30))" "$PY" benchmarks/cifar10_knn.py "${knn_args[@]}" 2>&1 | tee "$OUT/cifar10_knn.log"
status_knn=${PIPESTATUS[0]}

echo "== 3. summary (exit status: throughput $status_throughput, cifar10_knn $status_knn; 124 = timed out)"
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
env = (out / "env.txt").read_text().splitlines()
date = env[0].split()[1] if env else "?"


def load(name):
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        print(f"{name}: missing (see {name.replace('.json', '.log')})")
        return None


print("| card | date | command | figure | anchor |")
print("|---|---|---|---|---|")
t = load("throughput.json")
if t:
    card, cmd = f"{t['card']}, {t['cpu_cores']} cores", t["command"]
    names = {"a": f"(a) classic DataLoader, {t['workers']} workers", "b": "(b) crl_helpers GPU pipeline",
             "c": "(c) model step only", "c_repeat": "(c) repeated", "d": "(d) (b) with eager views"}
    anchor = {"a": "9,300 (H200)", "c": "37,000 compiled / 28,000 eager (H200)"}
    for key, row in t["rows"].items():
        print(f"| {card} | {date} | `{cmd}` | {names[key]}: {row['images_per_second']:,.0f} source img/s | "
              f"{anchor.get(key, '')} |")
    print(f"| {card} | {date} | `{cmd}` | first step {t['first_step_seconds']:.1f} s, first views "
          f"{t.get('first_views_seconds', float('nan')):.1f} s (compiling); views compiled: {t.get('views_compiled')} | |")
    for stage, ms in sorted(t.get("profile", {}).get("stages_ms_per_step", {}).items()):
        device_ms = f" / {ms['device_ms']:.2f} ms device" if ms.get("device_ms") is not None else ""
        print(f"| {card} | {date} | `{cmd}` | (b) {stage}: {ms['cpu_ms']:.2f} ms CPU{device_ms} per step | |")
    if "first_host_sync" in t:
        print(f"| {card} | {date} | `{cmd}` | host sync in a (b) step: {t['first_host_sync'] or 'none'} | none |")
    for key, target in (("b_over_a", ">= 3.5"), ("b_over_c", ">= 0.9")):
        if key in t:
            print(f"| {card} | {date} | `{cmd}` | {key.replace('_over_', '/')} = {t[key]:.2f} | target {target} |")
k = load("cifar10_knn.json")
if k:
    card, cmd, f = k["card"], k["command"], k["final"]
    print(f"| {card} | {date} | `{cmd}` | kNN k=200 {f['knn_k200']:.4f}, k=10 {f['knn_k10_majority']:.4f} after "
          f"{k['epochs']} epochs, {f['train_seconds']:.0f} s training ({k['images_per_second']:,.0f} img/s) | "
          f"target >= 0.85 within 300 s |")
PY
[ "$status_throughput" = 0 ] && [ "$status_knn" = 0 ]
