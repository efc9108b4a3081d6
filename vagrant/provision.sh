#!/usr/bin/env bash
# Set up a machine for labkit: Debian/Ubuntu packages, a virtualenv with the
# pinned Python packages and labkit itself, and the base root filesystem.
#
# The same script serves `make lab`, `make test`, `vagrant up` and cloud-init,
# so that a laptop VM, a lab server and CI never drift apart. It is idempotent:
# a second run checks each step, finds it done, prints only "present" lines
# and changes nothing.
#
# Usage: provision.sh [--service] [--test-tools] [--vm-tools] [--list-packages] [--list-optional]
#   --service        also run JupyterLab as a systemd service (the classroom VM)
#   --test-tools     also install what tests/vm needs: vagrant, shellcheck and
#                    cloud-init's schema validator (see step 2)
#   --vm-tools       also install what `make vm-test` needs (debootstrap, QEMU)
#   --list-packages  print the Debian packages step 1 installs, one a line,
#                    and change nothing (vagrant/vmtest.py preinstalls them)
#   --list-optional  print those of them that may be absent from a release or
#                    a machine's archive (user-mode-linux: no arm64 build)
# Environment: VENV (default: <repo>/.venv), LABKIT_HOME (default /var/lib/labkit),
#   LABKIT_CACHE (default /var/cache/labkit: the unpacked cloud-init validator)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VENV:-$repo/.venv}
cache=${LABKIT_CACHE:-/var/cache/labkit}
service=no
test_tools=no
vm_tools=no
list_packages=no
for arg in "$@"; do
    case $arg in
        --service) service=yes ;;
        --test-tools) test_tools=yes ;;
        --vm-tools) vm_tools=yes ;;
        --list-packages) list_packages=yes ;;
        --list-optional) list_packages=optional ;;
        *) echo "provision.sh: unknown argument '$arg' (usage: provision.sh [--service] [--test-tools] [--vm-tools] [--list-packages] [--list-optional])" >&2; exit 2 ;;
    esac
done

if [ "$list_packages" = no ] && [ "$(id -u)" != 0 ]; then
    echo "provision.sh: labkit needs root to install packages and to create namespaces, mounts and cgroups; run it with sudo, or use the classroom VM (vagrant up)" >&2
    exit 1
fi

say() { printf 'provision: %s\n' "$*"; }
# On a cloud image's first boot, unattended-upgrades often holds the dpkg lock
# for a few minutes: wait for it instead of failing.
apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }

# 1. Debian/Ubuntu packages. Real tools where a real user would use them:
#    busybox-static and procps/iproute2/util-linux fill the container's root,
#    lxcfs makes `free` truthful, runc is the reference runtime, attr's getfattr shows
#    overlay's xattrs (04); libseccomp2 compiles the seccomp filters,
#    libcap2-bin's capsh decodes capability masks (09);
#    nftables does the networks' NAT and containernetworking-plugins is
#    their CNI driver, iputils-ping and curl the by-hand checks (06);
#    docker-registry is the lab registry (`labkit registry start`, 07).
packages=(
    python3 python3-venv make
    busybox-static procps iproute2 util-linux kmod libseccomp2 libcap2-bin
    nftables containernetworking-plugins iputils-ping curl docker-registry
    lxcfs runc attr
    golang-github-opencontainers-specs-dev
)
# Wanted, not needed: user-mode-linux boots a real kernel as a process — the
# VM beside a container in notebook 02, and the cgroup v2 kernel of the tests
# (tests/uml). Not every release packages it (Ubuntu ships only its docs): where
# the archive lacks it, it is named and left out, and both say they are skipped.
optional_packages=(user-mode-linux)
packages+=("${optional_packages[@]}")
# Test tools: `vagrant validate` and shellcheck, plus the Python libraries
# cloud-init's schema validator imports (the Python part of cloud-init's own
# Depends). cloud-init itself is not installed: see step 2.
# crun is the second peer runtime of the benchmark and the bundle matrix,
# strace splits labkit's start into phases for it (make bench).
# gcc and libc6-dev build the small ptrace shim that lets Debian's UML 6.1
# boot on CPUs with large FPU state (AVX-512/AMX): tests/uml/harness.py.
# podman (with conmon) and containerd (with ctr) are the real clients that
# drive labkit-runtime in tests/clients/, each with private state.
# skopeo and umoci read and write labkit's image store (an OCI layout) in tests/images/;
# catatonit is podman's pause process, for `podman play kube` (tests/clients/).
# chromium (headless) opens the lab as a student's browser does (tests/vm/test_jupyter_service.py).
test_packages=(
    vagrant shellcheck systemd gcc libc6-dev crun strace podman conmon containerd skopeo umoci catatonit chromium
    python3-configobj python3-jinja2 python3-jsonpatch python3-jsonschema
    python3-netifaces python3-oauthlib python3-requests python3-serial python3-yaml
)
[ "$test_tools" = yes ] && packages+=("${test_packages[@]}")
# make vm-test (vagrant/vmtest.py): debootstrap builds the guest's root,
# e2fsprogs' mke2fs turns it into a disk image, QEMU boots it, ssh drives it,
# and Vagrant's own loader reads the provisioners it runs from the Vagrantfile.
# An arm64 guest (--arch arm64): mmdebstrap builds its root, qemu-user-static
# runs its maintainer scripts, qemu-system-arm boots it.
vm_packages=(debootstrap mmdebstrap e2fsprogs qemu-system-x86 qemu-system-arm qemu-user-static qemu-utils
             openssh-client git vagrant)
[ "$vm_tools" = yes ] && packages+=("${vm_packages[@]}")
if [ "$list_packages" = yes ]; then
    printf '%s\n' "${packages[@]}"
    exit 0
fi
if [ "$list_packages" = optional ]; then
    printf '%s\n' "${optional_packages[@]}"
    exit 0
fi
# One dpkg-query for the whole list: a second run costs milliseconds.
installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${packages[@]}" 2>/dev/null \
            | awk '$NF == "installed" { print $1 }' || true)
missing=()
for p in "${packages[@]}"; do
    grep -qx -- "$p" <<<"$installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Offline (a classroom without a network, vm-test's guest), the update
    # fails: go on with the lists at hand, where a missing package the lab
    # needs is still named by apt-get below.
    apt_get update -qq || say "apt-get update failed (no network?): using the package lists at hand"
    # A package only the tests use, or an optional one, that this
    # distribution's archive lacks (another release may name it differently)
    # is named and left out; what needs it says so. A package the lab itself
    # needs stays in the list, and apt-get's error names it.
    wanted=()
    for p in "${missing[@]}"; do
        why=
        [[ " ${test_packages[*]} " == *" $p "* ]] && why="only tests use it"
        [[ " ${optional_packages[*]} " == *" $p "* ]] && why="notebook 02's VM and tests/uml are skipped"
        if [ -n "$why" ] && ! apt-cache show "$p" >/dev/null 2>&1; then
            say "$p is not in this system's package archive: left out ($why)"
        else
            wanted+=("$p")
        fi
    done
    [ ${#wanted[@]} -eq 0 ] || apt_get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null
else
    say "Debian packages present"
fi
# Debian's docker-registry enables a service of its own on :5000 (every
# address, htpasswd auth); the lab runs one on 127.0.0.1 instead.
if [ -d /run/systemd/system ] && systemctl is-enabled --quiet docker-registry 2>/dev/null; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

# 2. cloud-init's schema validator, for tests/vm. Installing the cloud-init
#    package would enable its services, which run at every boot and may
#    reconfigure a developer's network and SSH keys. So the .deb is only
#    downloaded and unpacked into the cache, and the test runs its
#    cloudinit.config.schema module with PYTHONPATH pointing there and the
#    libraries from test_packages above.
unpack_deb() {   # unpack_deb PACKAGE DIR FILE: PACKAGE's files into DIR, unless DIR/FILE is there
    local pkg=$1 root=$2 file=$3 tmp
    if [ -f "$root/$file" ]; then
        say "$pkg present, unpacked in $root"
        return
    fi
    say "unpacking $pkg into $root"
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/.tmp-XXXXXX")
    # _apt cannot write into a root-only temp dir: download as root.
    ( cd "$tmp" && { apt_get download -qq -o APT::Sandbox::User=root "$pkg" 2>/dev/null \
                     || { apt_get update -qq && apt_get download -qq -o APT::Sandbox::User=root "$pkg"; }; } ) \
        || { rm -rf "$tmp"; return 1; }
    dpkg -x "$tmp/${pkg}"_*.deb "$tmp/root"
    rm -rf "$root"
    mv "$tmp/root" "$root"
    rm -rf "$tmp"
}
if [ "$test_tools" = yes ]; then
    unpack_deb cloud-init "$cache/cloud-init" usr/lib/python3/dist-packages/cloudinit/config/schema.py
    # podman's default seccomp profile (containers/common), the one real
    # clients send: tests/oci/test_seccomp.py runs bundles with it. Only
    # the data file is used; the Go sources around it are never built.
    unpack_deb golang-github-containers-common-dev "$cache/containers-common" \
        usr/share/gocode/src/github.com/containers/common/pkg/seccomp/seccomp.json
    # Docker's own engine (Debian's docker.io: dockerd and its client),
    # unpacked, not installed: the package enables and starts a docker
    # service, which rewrites the host's firewall (iptables FORWARD policy
    # DROP) under the lab's networks. tests/clients/test_dockerd.py starts it
    # with private state, in a network namespace of its own.
    unpack_deb docker.io "$cache/docker.io" usr/sbin/dockerd
    # tini: what `docker run --init` puts first in the container (docker.io
    # depends on it for its docker-init).
    unpack_deb tini "$cache/tini" usr/bin/tini-static
fi

# 3. The virtualenv, from the system interpreter (not a pyenv shim: its
#    start-up costs ~200 ms on every container start). Reinstalled only when
#    requirements.txt or pyproject.toml change. setuptools is named because
#    the editable install builds without isolation: Python >= 3.12 (Ubuntu
#    24.04) no longer puts setuptools into a new venv, and the one Python 3.11
#    puts there (66) cannot build a wheel without the separate `wheel`
#    package; from 70.1 setuptools builds wheels by itself.
if [ ! -x "$venv/bin/python" ]; then
    say "creating virtualenv $venv"
    /usr/bin/python3 -m venv "$venv"
fi
stamp="$venv/.labkit-installed"
want=$(cat "$repo/requirements.txt" "$repo/pyproject.toml" | sha256sum | cut -d' ' -f1)-$repo
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing Python packages (requirements.txt)"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$repo/requirements.txt" 'setuptools>=70.1'
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$repo"
    echo "$want" > "$stamp"
else
    say "Python packages present"
fi
# Lean launchers instead of pip's console scripts for the two commands.
# pip's scripts start Python with site (the venv's .pth files, the editable
# install's finder) and import re: ~8 ms of every container start. A
# launcher runs `python -IS` (-I: no PYTHON* variables, no user site; -S: no
# site) with the repo first on sys.path: the start path needs the standard
# library only. The venv's packages come last, for the slow paths
# (jsonschema validates a config.json seen for the first time). It ends with
# os._exit once the output is flushed: the interpreter's own teardown costs
# ~3 ms and there is nothing left to clean up. Rewritten only when different.
site_packages=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
launcher() {   # launcher NAME MODULE
    cat <<EOF
#!$venv/bin/python -IS
# $1: written by vagrant/provision.sh (see the comment there).
import os
import sys
sys.path.insert(0, "$repo")
sys.path.append("$site_packages")
from $2 import main
code = main()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
EOF
}
for cmd in labkit:labkit.cli.main labkit-runtime:labkit.cli.runtime; do
    name=${cmd%%:*}
    if [ "$(launcher "$name" "${cmd#*:}")" != "$(cat "$venv/bin/$name" 2>/dev/null)" ]; then
        say "writing the launcher $venv/bin/$name"
        launcher "$name" "${cmd#*:}" > "$venv/bin/$name.tmp"
        chmod 755 "$venv/bin/$name.tmp"
        mv "$venv/bin/$name.tmp" "$venv/bin/$name"
    else
        say "launcher $venv/bin/$name present"
    fi
done
# The lab's language: LABKIT_LANG=en or es (JupyterLab's menus through the
# language pack in requirements.txt, and what labkit prints: labkit/i18n).
# Unset keeps the one chosen before (in /etc/labkit/lang), so that a later
# `sudo make test` leaves a Spanish classroom VM Spanish.
lang_file=/etc/labkit/lang
lab_lang=${LABKIT_LANG:-$(cat "$lang_file" 2>/dev/null || echo en)}
case $lab_lang in
    en) jupyter_locale=en ;;
    es) jupyter_locale=es_ES ;;
    *) echo "provision.sh: LABKIT_LANG=$lab_lang is not a language of the lab (give en or es)" >&2; exit 2 ;;
esac
if [ "$(cat "$lang_file" 2>/dev/null)" != "$lab_lang" ]; then
    say "the lab's language: $lab_lang ($lang_file)"
    mkdir -p "$(dirname "$lang_file")"
    printf '%s\n' "$lab_lang" > "$lang_file"
fi
export LABKIT_LANG=$lab_lang

# JupyterLab's own defaults for the lab (overrides.json, read by every
# JupyterLab of this venv): its language; no "get notified about Jupyter
# news?" popup and no update check, since the classroom machine has no
# business with the internet. A student may still pick another language in
# Settings → Language (kept in their user settings).
overrides="$venv/share/jupyter/lab/settings/overrides.json"
overrides_text='{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}, '\
'"@jupyterlab/translation-extension:plugin": {"locale": "'$jupyter_locale'"}}'
if [ "$(cat "$overrides" 2>/dev/null)" != "$overrides_text" ]; then
    say "writing JupyterLab's settings $overrides"
    mkdir -p "$(dirname "$overrides")"
    printf '%s\n' "$overrides_text" > "$overrides"
fi

# The start path's modules compiled once (a run under PYTHONDONTWRITEBYTECODE
# would otherwise compile them on every start); writes only what is stale.
"$venv/bin/python" -m compileall -q "$repo/labkit" >/dev/null

# The labkit command: vagrant/launcher.sh with this checkout's paths (it
# answers a user who cannot read the checkout). Written only when different,
# so that a second run leaves /usr/local/bin exactly as it was.
command_text=$(sed -e "s|@REPO@|$repo|g" -e "s|@VENV@|$venv|g" "$repo/vagrant/launcher.sh")
if [ -L /usr/local/bin/labkit ] || [ "$(cat /usr/local/bin/labkit 2>/dev/null)" != "$command_text" ]; then
    say "writing /usr/local/bin/labkit (runs $venv/bin/labkit)"
    printf '%s\n' "$command_text" > /usr/local/bin/labkit.tmp
    chmod 755 /usr/local/bin/labkit.tmp
    mv -f /usr/local/bin/labkit.tmp /usr/local/bin/labkit
else
    say "labkit command present"
fi
if [ "$(readlink /usr/local/bin/labkit-runtime 2>/dev/null)" != "$venv/bin/labkit-runtime" ]; then
    say "linking /usr/local/bin/labkit-runtime -> $venv/bin/labkit-runtime"
    ln -sfn "$venv/bin/labkit-runtime" /usr/local/bin/labkit-runtime
fi

# 4. The base root filesystem (cached; rebuilt only when missing).
"$venv/bin/labkit" rootfs build --quiet-if-present base

# 5. JupyterLab as a service, only where asked and where systemd runs. On that
#    dedicated machine VENV also goes into /etc/environment, which login shells
#    and sudo (pam_env) read, so that `sudo make -C /lab test` uses this venv
#    and never creates one inside the shared folder.
if [ "$service" = yes ]; then
    if [ -d /run/systemd/system ]; then
        if grep -qx "VENV=$venv" /etc/environment 2>/dev/null; then
            say "VENV in /etc/environment present"
        else
            say "setting VENV=$venv in /etc/environment"
            sed -i '/^VENV=/d' /etc/environment 2>/dev/null || true
            echo "VENV=$venv" >> /etc/environment
        fi
        bash "$repo/vagrant/jupyter-service.sh" "$repo" "$venv"
        bash "$repo/vagrant/registry-service.sh" "$venv"
    else
        say "no systemd here (a container or CI): skipping the JupyterLab service; run 'make lab' instead"
    fi
fi

say "ready"
