#!/usr/bin/env bash
# Best-effort system packages for the test suite: Debian `chromium` for the browser e2e test of the web demo
# (tests/e2e). Never fails: without chromium that test skips with a reason and everything else still runs.
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && SUDO="sudo -n" || {
        echo "install_system_deps: not root, skipping chromium (the web e2e test will skip)"; exit 0; }
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_system_deps: no apt-get, skipping chromium (the web e2e test will skip)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { $SUDO apt-get update -qq >/dev/null 2>&1 && $SUDO apt-get install -y -qq chromium >/dev/null 2>&1; } \
    || echo "install_system_deps: could not install chromium (the web e2e test will skip)"
exit 0
