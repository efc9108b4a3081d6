#!/usr/bin/env bash
# Run JupyterLab as a systemd service (labkit-jupyter.service) serving
# REPO/notebooks, for the classroom VM and cloud-init machines.
#
# Usage: jupyter-service.sh [--print-unit] REPO VENV
#   (provision.sh --service calls it; --print-unit prints the unit and changes
#   nothing, for review and for tests/vm, which check it with systemd-analyze)
# Environment:
#   LABKIT_JUPYTER_IP  address JupyterLab listens on inside the machine.
#       Default 127.0.0.1: reach it through `ssh -L` (cloud VMs, lab servers).
#       The Vagrantfile sets 0.0.0.0, because a provider's port forward
#       arrives on the guest's NAT interface, never on its loopback; the
#       host side of that forward listens on the host's 127.0.0.1 only.
#   LABKIT_JUPYTER_PORT  default 8888.
#   LABKIT_LANG  the lab's language for the kernels and terminals (en, es;
#       provision.sh sets it from /etc/labkit/lang). Default en.
#   Either, when unset, keeps its value in an installed unit.
#   LABKIT_SYSTEMD_DIR  where the unit goes (default /etc/systemd/system)
#
# Idempotent: the unit file is rewritten, and the service restarted, only
# when its text changes; the token is made once and kept, so a URL a student
# saved keeps working after a reboot or a re-provision.
set -euo pipefail

print_only=no
if [ "${1:-}" = --print-unit ]; then print_only=yes; shift; fi
if [ $# -ne 2 ]; then
    echo "usage: jupyter-service.sh [--print-unit] REPO VENV" >&2
    exit 2
fi
repo=$1
venv=$2
unit=${LABKIT_SYSTEMD_DIR:-/etc/systemd/system}/labkit-jupyter.service
envfile=/etc/labkit/jupyter.env

# Unset settings keep the values of the installed unit: a later plain
# `provision.sh --service` (e.g. from `sudo make test` in the VM) must not move
# JupyterLab off the interface the port forward needs.
installed() {
    [ -f "$unit" ] || return 0
    sed -n "s/^ExecStart=.* --$1=\([^ ]*\).*/\1/p" "$unit" | head -n1
}
ip=${LABKIT_JUPYTER_IP:-$(installed ip)}
ip=${ip:-127.0.0.1}
port=${LABKIT_JUPYTER_PORT:-$(installed port)}
port=${port:-8888}

say() { printf 'provision: %s\n' "$*"; }
# The page a student lands on: the course's first notebook, in the lab's language.
first=$(bash "$(dirname "${BASH_SOURCE[0]}")/first-notebook.sh" "$repo/notebooks" "${LABKIT_LANG:-en}")

if [ ! -x "$venv/bin/jupyter" ]; then
    echo "jupyter-service.sh: $venv/bin/jupyter not found; run vagrant/provision.sh first" >&2
    exit 1
fi

# Root, because the labs create namespaces, mounts and cgroups (under
# /sys/fs/cgroup/labkit, outside the service's own) from the notebooks'
# kernels. Restart=always with no
# start limit: after a reboot the shared folder may be mounted a few seconds
# after the service first starts, and JupyterLab exits until its root_dir
# exists.
want="[Unit]
Description=JupyterLab for the labkit notebooks ($repo/notebooks)
Documentation=file://$repo/docs/classroom.md
After=network.target
StartLimitIntervalSec=0

[Service]
Type=simple
User=root
Environment=HOME=/root
Environment=LABKIT_LANG=${LABKIT_LANG:-en}
EnvironmentFile=$envfile
WorkingDirectory=/root
ExecStart=$venv/bin/jupyter lab --allow-root --no-browser --ip=$ip --port=$port --ServerApp.port_retries=0 --ServerApp.root_dir=$repo/notebooks --LabApp.default_url=/lab/tree/$first
Restart=always
RestartSec=3

[Install]
WantedBy=multi-user.target
"

if [ "$print_only" = yes ]; then
    printf '%s' "$want"
    exit 0
fi

# The token, readable by root only. JupyterLab reads JUPYTER_TOKEN from its
# environment, which keeps the token off the command line (and out of `ps`).
if [ -s "$envfile" ]; then
    say "JupyterLab token present"
else
    say "creating the JupyterLab token in $envfile"
    install -d -m 0755 /etc/labkit
    ( umask 077; printf 'JUPYTER_TOKEN=%s\n' "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" > "$envfile" )
fi

# shellcheck source=systemd-unit.sh
. "$(dirname "$0")/systemd-unit.sh"
install_unit "$unit" "$want"
