#!/usr/bin/env bash
# Set up a machine for labkit: Debian/Ubuntu packages, a virtualenv with the
# pinned Python packages and labkit itself, and the base root filesystem.
#
# The same script serves `make lab`, `make test`, `vagrant up` and cloud-init,
# so that a laptop VM, a lab server and CI never drift apart. It is idempotent:
# a second run checks each step, finds it done and changes nothing.
#
# Usage: provision.sh [--service]
#   --service   also run JupyterLab as a systemd service (the classroom VM)
# Environment: VENV (default: <repo>/.venv), LABKIT_HOME (default /var/lib/labkit)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VENV:-$repo/.venv}
service=no
for arg in "$@"; do
    case $arg in
        --service) service=yes ;;
        *) echo "provision.sh: unknown argument '$arg' (usage: provision.sh [--service])" >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" != 0 ]; then
    echo "provision.sh: labkit needs root to install packages and to create namespaces, mounts and cgroups; run it with sudo, or use the classroom VM (vagrant up)" >&2
    exit 1
fi

say() { printf 'provision: %s\n' "$*"; }

# 1. Debian/Ubuntu packages. Real tools where a real user would use them:
#    busybox-static and procps/iproute2/util-linux fill the container's root,
#    lxcfs makes `free` truthful, runc is the reference runtime, user-mode-linux
#    boots a real cgroup v2 kernel for the tests.
packages=(
    python3 python3-venv make
    busybox-static procps iproute2 util-linux kmod
    lxcfs runc user-mode-linux
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "Debian packages present"
fi

# 2. The virtualenv, from the system interpreter (not a pyenv shim: its
#    start-up costs ~200 ms on every container start). Reinstalled only when
#    requirements.txt or pyproject.toml change.
if [ ! -x "$venv/bin/python" ]; then
    say "creating virtualenv $venv"
    /usr/bin/python3 -m venv "$venv"
fi
stamp="$venv/.labkit-installed"
want=$(cat "$repo/requirements.txt" "$repo/pyproject.toml" | sha256sum | cut -d' ' -f1)-$repo
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing Python packages (requirements.txt)"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$repo/requirements.txt"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$repo"
    echo "$want" > "$stamp"
else
    say "Python packages present"
fi
ln -sf "$venv/bin/labkit" /usr/local/bin/labkit

# 3. The base root filesystem (cached; rebuilt only when missing).
"$venv/bin/labkit" rootfs build --quiet-if-present base

# 4. JupyterLab as a service, only where asked and where systemd runs.
if [ "$service" = yes ]; then
    if [ -d /run/systemd/system ]; then
        "$repo/vagrant/jupyter-service.sh" "$repo" "$venv"
    else
        say "no systemd here (a container or CI): skipping the JupyterLab service; run 'make lab' instead"
    fi
fi
say "ready"
