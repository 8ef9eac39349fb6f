#!/usr/bin/env bash
# Browser end-to-end check of the web demo (what CI runs): Debian chromium + the playwright Python package drive
# the page served by `unif2ace web`; the screenshot lands in docs/images/web_demo.png (override with
# UNIF2ACE_E2E_SCREENSHOT; serve another bundle with UNIF2ACE_E2E_MODEL=DIR).
# Installs only what is missing; never runs `playwright install` (no browser downloads: it uses /usr/bin/chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get install -y chromium || { $SUDO apt-get update && $SUDO apt-get install -y chromium; }
fi
python -c "import playwright.sync_api" 2>/dev/null || pip install "playwright>=1.40"
python -c "import fastapi, uvicorn, multipart" 2>/dev/null || pip install "fastapi>=0.110" "uvicorn>=0.29" "python-multipart>=0.0.9"

export UNIF2ACE_E2E_SCREENSHOT="${UNIF2ACE_E2E_SCREENSHOT:-docs/images/web_demo.png}"
python -m pytest tests/e2e -q -rs "$@"
echo "screenshot: $UNIF2ACE_E2E_SCREENSHOT"
