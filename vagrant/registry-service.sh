#!/usr/bin/env bash
# Run the lab registry as a systemd service (labkit-registry.service):
# `labkit registry start --foreground`, Debian's docker-registry on
# 127.0.0.1:5000 with its storage under /var/lib/labkit/registry, for the
# classroom VM and cloud-init machines (notebook 07 pushes to it).
#
# Usage: registry-service.sh [--print-unit] VENV
#   (provision.sh --service calls it; --print-unit prints the unit and changes
#   nothing, for review and for tests/vm, which check it with systemd-analyze)
# Environment:
#   LABKIT_SYSTEMD_DIR  where the unit goes (default /etc/systemd/system)
#
# Idempotent: the unit is rewritten, and the service restarted, only when its
# text changes.
set -euo pipefail

print_only=no
if [ "${1:-}" = --print-unit ]; then print_only=yes; shift; fi
if [ $# -ne 1 ]; then
    echo "usage: registry-service.sh [--print-unit] VENV" >&2
    exit 2
fi
venv=$1
unit=${LABKIT_SYSTEMD_DIR:-/etc/systemd/system}/labkit-registry.service


want="[Unit]
Description=The labkit lab registry (docker-registry on 127.0.0.1:5000)
After=network.target

[Service]
Type=simple
User=root
ExecStart=$venv/bin/labkit registry start --foreground
Restart=on-failure
RestartSec=3

[Install]
WantedBy=multi-user.target
"

if [ "$print_only" = yes ]; then
    printf '%s' "$want"
    exit 0
fi

if [ ! -x "$venv/bin/labkit" ]; then
    echo "registry-service.sh: $venv/bin/labkit not found; run vagrant/provision.sh first" >&2
    exit 1
fi

# shellcheck source=systemd-unit.sh
. "$(dirname "$0")/systemd-unit.sh"
install_unit "$unit" "$want"
