#!/usr/bin/env bash
# Install Request Tracker 5 from Debian for the real-RT connector tests.
# Idempotent: does nothing when rt-server and the SQLite backend are already there.
set -euo pipefail

packages=(request-tracker5 rt5-db-sqlite rt5-standalone dbconfig-no-thanks)

have_all() {
    for pkg in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || return 1
    done
    command -v rt-server >/dev/null 2>&1 || [ -x /usr/bin/rt-server ] || return 1
}

if have_all; then
    echo "install-rt: Request Tracker already installed"
    exit 0
fi

run() {
    if [ "$(id -u)" = "0" ]; then
        "$@"
    else
        sudo -E "$@"
    fi
}

export DEBIAN_FRONTEND=noninteractive
run apt-get -o DPkg::Lock::Timeout=600 update -q
# dbconfig-no-thanks first so the RT packages do not try to configure a database server.
run apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends dbconfig-no-thanks
run apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${packages[@]}"
echo "install-rt: installed $(dpkg-query -W -f='${Version}' request-tracker5)"
