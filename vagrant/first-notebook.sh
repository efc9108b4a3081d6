#!/usr/bin/env bash
# first-notebook.sh NOTEBOOKS LANG: the course's first page, relative to
# NOTEBOOKS, in the lab's language when it is translated (es/00-welcome.ipynb),
# else in English. JupyterLab opens it (--LabApp.default_url): `make serve`
# and the VM's service (jupyter-service.sh) ask here, so that they agree.
set -euo pipefail
notebooks=${1:?usage: first-notebook.sh NOTEBOOKS LANG}
lang=${2:-en}
first=00-welcome.ipynb
if [ "$lang" != en ] && [ -f "$notebooks/$lang/$first" ]; then
    first=$lang/$first
fi
printf '%s\n' "$first"
