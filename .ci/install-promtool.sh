#!/usr/bin/env bash
# Installs Debian's prometheus package for promtool, which checks deploy/prometheus/alerts.yml
# (tests/test_deploy.py). Safe to run again.
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
    echo "promtool already installed: $(promtool --version 2>&1 | head -1)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends prometheus
promtool --version 2>&1 | head -1
