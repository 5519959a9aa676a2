#!/usr/bin/env bash
# Screenshot of JupyterLab showing an (executed) notebook, in headless Chromium, for review.
#   tools/jupyterlab_screenshot.sh NOTEBOOK OUT.png [WIDTH HEIGHT]
# NOTEBOOK is a path inside the project folder. Needs `pip install -e ".[notebook]"` and
# Debian's chromium (`apt-get install chromium`). Starts JupyterLab on a free loopback port with
# no token, waits for it, renders the page with JavaScript time to load, and stops the server.
set -euo pipefail
notebook=$1 out=$2 width=${3:-1400} height=${4:-2400}
root=$(cd "$(dirname "$0")/.." && pwd)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
profile=$(mktemp -d)
mkdir -p "$profile/settings/@jupyterlab/apputils-extension"  # no "notified of news?" toast
echo '{"fetchNews": "false", "checkForUpdates": false}' \
  >"$profile/settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
export JUPYTERLAB_SETTINGS_DIR="$profile/settings" JUPYTERLAB_WORKSPACES_DIR="$profile/workspaces"
jupyter lab --no-browser --allow-root --port="$port" --ServerApp.ip=127.0.0.1 --ServerApp.token= \
  --ServerApp.password= --ServerApp.root_dir="$root" \
  --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate >"$profile/lab.log" 2>&1 &
lab=$!
trap 'kill $lab 2>/dev/null; rm -rf "$profile"' EXIT
for _ in $(seq 60); do curl -fs "http://127.0.0.1:$port/api" >/dev/null && break; sleep 1; done
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile/chromium" --hide-scrollbars \
  --window-size="$width,$height" --virtual-time-budget=30000 --screenshot="$out" \
  "http://127.0.0.1:$port/lab/tree/$notebook?reset" 2>/dev/null
echo "$out"
