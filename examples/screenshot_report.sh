#!/usr/bin/env bash
# Screenshot a histobatch report.html in headless Chromium (Debian: apt-get install chromium).
#   examples/screenshot_report.sh results/demo/cmu_small_region/report.html report.png
set -euo pipefail
report="$(realpath "$1")"
out="${2:-report.png}"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
[ -n "$browser" ] || { echo "no chromium found; install it (apt-get install chromium)" >&2; exit 2; }
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,4200 \
  --screenshot="$out" "file://$report" 2>/dev/null
echo "$out"
