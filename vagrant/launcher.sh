#!/bin/sh
# /usr/local/bin/labkit: written by vagrant/provision.sh from vagrant/launcher.sh.
# A checkout may be readable by root only (a clone under /root, mode 0700):
# then another user cannot even start labkit's interpreter, and the shell
# would say "Permission denied". This says what labkit says to a user who is
# not root, in one line, before anything is imported.
if [ ! -r "@REPO@/labkit/__init__.py" ]; then
    echo "labkit: labkit needs root: its files in @REPO@ are readable by root only (run it with sudo, or inside the classroom VM (vagrant up; vagrant ssh))" >&2
    exit 1
fi
exec "@VENV@/bin/labkit" "$@"
