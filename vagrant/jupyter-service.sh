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
ip=${LABKIT_JUPYTER_IP:-127.0.0.1}
port=${LABKIT_JUPYTER_PORT:-8888}
unit=/etc/systemd/system/labkit-jupyter.service
envfile=/etc/labkit/jupyter.env

say() { printf 'provision: %s\n' "$*"; }

if [ ! -x "$venv/bin/jupyter" ]; then
    echo "jupyter-service.sh: $venv/bin/jupyter not found; run vagrant/provision.sh first" >&2
    exit 1
fi

# Root, because the labs create namespaces, mounts and cgroups from the
# notebooks' kernels. Delegate=yes: the labs make cgroups below the service's
# own, and systemd must leave that subtree to them. Restart=always with no
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
EnvironmentFile=$envfile
WorkingDirectory=/root
ExecStart=$venv/bin/jupyter lab --allow-root --no-browser --ip=$ip --port=$port --ServerApp.port_retries=0 --ServerApp.root_dir=$repo/notebooks
Delegate=yes
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

changed=no
if [ -f "$unit" ] && [ "$(cat "$unit")" = "${want%$'\n'}" ]; then
    say "labkit-jupyter.service unit present"
else
    say "writing $unit"
    printf '%s' "$want" > "$unit"
    systemctl daemon-reload
    changed=yes
fi

if systemctl is-enabled --quiet labkit-jupyter.service; then
    say "labkit-jupyter.service enabled"
else
    say "enabling labkit-jupyter.service"
    systemctl enable --quiet labkit-jupyter.service
fi

if [ "$changed" = yes ]; then
    say "(re)starting labkit-jupyter.service"
    systemctl restart labkit-jupyter.service
elif systemctl is-active --quiet labkit-jupyter.service; then
    say "labkit-jupyter.service running"
else
    say "starting labkit-jupyter.service"
    systemctl start labkit-jupyter.service
fi
