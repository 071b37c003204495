#!/usr/bin/env bash
# Benchmarks 1 (pipeline efficiency) and 2 (memory scaling) on a CUDA machine, in under 8 minutes.
#
#   bench/gpu.sh                         # on a machine with an NVIDIA GPU, from the repository root
#
# Real data: $HISTOBATCH_DATA, else ../shared/data, else bench/work/data (copy slides/cmu-1-small-
# region.svs and consep4/train/Images there when the machine has no ../shared: `make bench-data`).
# Installs into its own virtual environment, prints the device, runs both benchmarks (they append their
# tables to bench/RESULTS.md) and copies RESULTS.md to $OUT when that is set.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${HISTOBATCH_DATA:-}" ]; then
  if [ -d ../shared/data ]; then export HISTOBATCH_DATA="$(realpath ../shared/data)";
  else export HISTOBATCH_DATA="$(realpath bench/work/data)"; fi
fi
VENV="${VENV:-/tmp/histobatch-gpu-venv}"
start=$(date +%s)
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet torch==2.14.1 torchvision==0.29.1
"$VENV/bin/pip" install --quiet -e .
echo "install: $(( $(date +%s) - start )) s"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
# 1. Efficiency: bigger batches suit a GPU; the model-only figure uses the same batch.
"$VENV/bin/python" bench/efficiency.py --device cuda --batch-size 8 --repeats 10
# 2. Memory: 1x/4x/16x mosaics of real tiles (RSS of the host process; base 16 to fit the time).
"$VENV/bin/python" bench/memory.py --device cuda --base 16
echo "total: $(( $(date +%s) - start )) s"
if [ -n "${OUT:-}" ]; then cp bench/RESULTS.md "$OUT/"; fi
