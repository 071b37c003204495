#!/usr/bin/env bash
# Train a recipe on a lent CUDA machine, evaluate it on consep4 test and hand the run back.
#
#   bench/gpu_train.sh [CONFIG]          # default examples/train_consep_gpu.yaml
#
# Data: $HISTOBATCH_DATA, else ../shared/data, else bench/work/data (`make gpu-data` packs it, 53 MB:
# pass bench/work/data in the device's carry list). Training stops after $BUDGET_S seconds (default
# 420); the last epoch's checkpoint is then exported, so a cut-short run still returns a model.
# Everything but the checkpoint goes to $OUT as gpu-run.tgz.part-* (15 MB pieces; rejoin with
# `cat gpu-run.tgz.part-* | tar xz`).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${1:-examples/train_consep_gpu.yaml}"
BUDGET_S="${BUDGET_S:-420}"
if [ -z "${HISTOBATCH_DATA:-}" ]; then
  if [ -d ../shared/data ]; then export HISTOBATCH_DATA="$(realpath ../shared/data)";
  else export HISTOBATCH_DATA="$(realpath bench/work/data)"; fi
fi
VENV="${VENV:-/tmp/histobatch-gpu-venv}"
RUN=bench/work/gpu-run
start=$(date +%s)
if [ ! -x "$VENV/bin/histobatch" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet torch==2.14.1 torchvision==0.29.1
  "$VENV/bin/pip" install --quiet -e .
fi
echo "install: $(( $(date +%s) - start )) s"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
mkdir -p "$RUN"
set +e
timeout "$BUDGET_S" "$VENV/bin/histobatch" train --config "$CONFIG" --out "$RUN" --resume \
  --no-progress > "$RUN/train.log" 2>&1
code=$?
set -e
tail -n 5 "$RUN/train.log"
echo "training: exit $code after $(( $(date +%s) - start )) s (124 = stopped at the budget)"
if [ ! -f "$RUN/model/model.safetensors" ] && [ -f "$RUN/checkpoint.pt" ]; then
  "$VENV/bin/histobatch" train --config "$CONFIG" --out "$RUN" --export --no-progress \
    >> "$RUN/train.log" 2>&1 || echo "export failed: see $RUN/train.log"
fi
if [ -f "$RUN/model/model.safetensors" ]; then
  "$VENV/bin/histobatch" evaluate --data "$HISTOBATCH_DATA/consep4/test" --model "$RUN/model" \
    --out "$RUN/test/metrics.json" --no-progress || echo "evaluation failed"
else
  echo "no model: not even one epoch finished within the budget"
fi
echo "total: $(( $(date +%s) - start )) s"
if [ -n "${OUT:-}" ]; then
  tar czf - --exclude checkpoint.pt -C bench/work gpu-run | split -b 15m - "$OUT/gpu-run.tgz.part-"
  ls -l "$OUT"
fi
