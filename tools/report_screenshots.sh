#!/usr/bin/env bash
# Screenshots of rendered HTML reports in headless Chromium, for review (one PNG per report).
#   tools/report_screenshots.sh OUT_DIR [REPORT.html ...] [-- WIDTH HEIGHT]
# Without reports: every *.html under reports/examples/. Needs Debian's chromium
# (`apt-get install chromium`). Network access is blocked for the page (a report must load
# nothing from the network), so a screenshot shows what a collaborator sees offline.
set -euo pipefail
out=$1; shift
width=1400 height=4000 reports=()
while (($#)); do
  if [[ $1 == -- ]]; then width=$2 height=$3; break; fi
  reports+=("$1"); shift
done
root=$(cd "$(dirname "$0")/.." && pwd)
if ((${#reports[@]} == 0)); then mapfile -t reports < <(find "$root/reports/examples" -name '*.html' | sort); fi
mkdir -p "$out"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
for report in "${reports[@]}"; do
  name=$(basename "$(dirname "$report")")_$(basename "$report" .html).png
  chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
    --proxy-server=127.0.0.1:9 --proxy-bypass-list='<-loopback>' \
    --window-size="$width,$height" --virtual-time-budget=5000 --screenshot="$out/$name" \
    "file://$(realpath "$report")" 2>/dev/null
  echo "$out/$name"
done
