# Sourced by the *-service.sh scripts: install_unit UNIT_PATH TEXT writes a
# systemd unit only when its text changed, enables it, and (re)starts it:
# idempotent, so a re-provision restarts nothing that did not change.
# shellcheck shell=bash

install_unit() {
    local unit=$1 want=$2 name changed=no
    name=$(basename "$unit")
    if [ -f "$unit" ] && [ "$(cat "$unit")" = "${want%$'\n'}" ]; then
        printf 'provision: %s\n' "$name unit present"
    else
        printf 'provision: %s\n' "writing $unit"
        printf '%s' "$want" > "$unit"
        systemctl daemon-reload
        changed=yes
    fi
    if systemctl is-enabled --quiet "$name"; then
        printf 'provision: %s\n' "$name enabled"
    else
        printf 'provision: %s\n' "enabling $name"
        systemctl enable --quiet "$name"
    fi
    if [ "$changed" = yes ]; then
        printf 'provision: %s\n' "(re)starting $name"
        systemctl restart "$name"
    elif systemctl is-active --quiet "$name"; then
        printf 'provision: %s\n' "$name running"
    else
        printf 'provision: %s\n' "starting $name"
        systemctl start "$name"
    fi
}
