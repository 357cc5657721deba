#!/usr/bin/env bash
# Make sure the Debian tools the test suite runs are installed: redis-server (the fleet-budget tests start
# their own server) and valgrind (the instruction-count benchmark runs its workers under callgrind).
# Installs what is missing, non-interactively. Does not start any service.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)

if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d exit 101 keeps redis-server's postinst from starting a system-wide service.
    POLICY=/usr/sbin/policy-rc.d
    CREATED_POLICY=0
    if [ ! -e "$POLICY" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
        $SUDO chmod +x "$POLICY"
        CREATED_POLICY=1
    fi
    cleanup() {
        if [ "$CREATED_POLICY" -eq 1 ]; then
            $SUDO rm -f "$POLICY"
        fi
    }
    trap cleanup EXIT
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
redis-server --version
valgrind --version
