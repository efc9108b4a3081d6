"""`labkit url`: the address of the running JupyterLab, with its token."""

import json
import os
import subprocess
import sys

from labkit.errors import NotFound


def servers():
    jupyter = os.path.join(os.path.dirname(sys.executable), "jupyter")
    out = subprocess.run([jupyter, "server", "list", "--json"], capture_output=True, text=True)
    found = []
    for line in out.stdout.splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            pass
    return found


def print_url():
    found = servers()
    if not found:
        raise NotFound("no JupyterLab is running", "start it with `sudo make lab` (or in the VM: "
                       "sudo systemctl start labkit-jupyter)")
    for s in found:
        # In the classroom VM the host's forwarded port may differ (LABKIT_PORT).
        port = os.environ.get("LABKIT_PORT") or s["port"]
        # The server's root: it sends the browser on to its default page,
        # the course's first notebook in the lab's language (make serve,
        # jupyter-service.sh).
        base = s.get("base_url", "/").rstrip("/")
        print(f"http://127.0.0.1:{port}{base}/?token={s['token']}")
    return 0
