#!/usr/bin/env bash
# Print the address of each running JupyterLab with its token, as the host's
# browser should open it: http://127.0.0.1:PORT/?token=... (the server's root,
# which sends the browser on to the course's first notebook)
#
# Usage: labkit-url.sh [--wait SECONDS]
#   --wait  keep asking for up to SECONDS until a server answers (just after
#           boot the service may still be starting)
# Environment:
#   VENV         the virtualenv holding jupyter (default /opt/labkit/venv if
#                it exists, else <repo>/.venv)
#   LABKIT_PORT  the port on the host, when a forward maps the guest's 8888
#                elsewhere (default: the server's own port)
#
# Run it as the user that runs JupyterLab (root for the service and for
# `make lab`): `jupyter server list` reads that user's runtime directory.
# The host is always 127.0.0.1: the VM forwards to the host's loopback, and on
# a remote machine the student tunnels with `ssh -L PORT:127.0.0.1:PORT`.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wait=0
while [ $# -gt 0 ]; do
    case $1 in
        --wait) wait=${2:?--wait needs a number of seconds}; shift 2 ;;
        *) echo "labkit-url.sh: unknown argument '$1' (usage: labkit-url.sh [--wait SECONDS])" >&2; exit 2 ;;
    esac
done
case $wait in ''|*[!0-9]*) echo "labkit-url.sh: --wait takes whole seconds, got '$wait'" >&2; exit 2 ;; esac

if [ -n "${VENV:-}" ]; then venv=$VENV
elif [ -x /opt/labkit/venv/bin/jupyter ]; then venv=/opt/labkit/venv
else venv=$repo/.venv
fi
if [ ! -x "$venv/bin/jupyter" ]; then
    echo "labkit-url.sh: no jupyter in $venv; set VENV, or run vagrant/provision.sh" >&2
    exit 1
fi

# One JSON object per running server (jupyter_server 2.x), e.g.
# {"hostname": "0.0.0.0", "port": 8888, "token": "...", "base_url": "/", ...}
urls() {
    "$venv/bin/jupyter" server list --json 2>/dev/null | LABKIT_PORT=${LABKIT_PORT:-} "$venv/bin/python" -c '
import json, os, sys, urllib.parse
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        continue
    s = json.loads(line)
    port = os.environ.get("LABKIT_PORT") or s["port"]
    base = s.get("base_url") or "/"
    query = "?token=" + urllib.parse.quote(s["token"]) if s.get("token") else ""
    print(f"http://127.0.0.1:{port}{base}{query}")
'
}

deadline=$((SECONDS + wait))
while :; do
    out=$(urls)
    if [ -n "$out" ]; then
        printf '%s\n' "$out"
        exit 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        break
    fi
    sleep 1
done
echo "labkit-url.sh: no JupyterLab is running here (as $(id -un)); in the VM: 'sudo systemctl status labkit-jupyter', on a host: 'sudo make lab'" >&2
exit 1
