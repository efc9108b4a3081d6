"""`labkit registry start|stop|status`: the lab's registry, Debian's
docker-registry (CNCF Distribution, the registry Docker Hub runs), on
127.0.0.1 with its storage under $LABKIT_HOME/registry, with no systemd:

    $LABKIT_HOME/registry/config.yml   what `docker-registry serve` reads
    $LABKIT_HOME/registry/data/        its storage (docker/registry/v2/...)
    $LABKIT_HOME/registry/state.json   the pid (with its start time) and address
    $LABKIT_HOME/registry/log          its log

It listens on loopback only, with no authentication: a lab registry.
"""

import json
import os
import signal
import subprocess
import time

from labkit import home
from labkit.containers import alive, start_time
from labkit.errors import Conflict, LabkitError, NotFound

BINARY = "docker-registry"
DEFAULT_PORT = 5000


def root(*parts):
    return os.path.join(home.home(), "registry", *parts)


def status():
    """The running registry's state ({pid, address, ...}), or None."""
    try:
        with open(root("state.json")) as f:
            st = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return st if alive(st.get("pid"), st.get("pid_start")) else None


def _config(port):
    # JSON is YAML: no YAML writer needed.
    return json.dumps({
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "labkit-registry"}},
        "storage": {"filesystem": {"rootdirectory": root("data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }, indent=1)


def _answers(address, timeout=0.5):
    import http.client
    try:
        conn = http.client.HTTPConnection(address, timeout=timeout)
        conn.request("GET", "/v2/")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def start(port=DEFAULT_PORT, foreground=False):
    """Start docker-registry in the background and return its state once
    /v2/ answers; with ``foreground`` (a systemd service) this process
    becomes the registry (exec) and never returns."""
    import shutil
    if shutil.which(BINARY) is None:
        raise NotFound(f"{BINARY} is not installed", "apt-get install docker-registry (make lab installs it)")
    running = status()
    if running:
        raise Conflict(f"the lab registry is already running on {running['address']}",
                       "`labkit registry stop` first to start it on another port")
    address = f"127.0.0.1:{port}"
    if _answers(address):
        raise Conflict(f"something already answers on {address}", "pick another --port")
    os.makedirs(root("data"), exist_ok=True)
    with open(root("config.yml"), "w") as f:
        f.write(_config(port))
    if foreground:   # the pid stays ours through the exec: status() knows it
        with open(root("state.json"), "w") as f:
            json.dump({"pid": os.getpid(), "pid_start": start_time(os.getpid()), "address": address,
                       "data": root("data"), "service": True}, f)
        os.execvp(BINARY, [BINARY, "serve", root("config.yml")])
    log = open(root("log"), "ab")
    proc = subprocess.Popen([BINARY, "serve", root("config.yml")], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log, start_new_session=True, close_fds=True)
    log.close()
    state = {"pid": proc.pid, "pid_start": start_time(proc.pid), "address": address, "data": root("data")}
    with open(root("state.json"), "w") as f:
        json.dump(state, f)
    for _ in range(100):   # up to 10 s, until /v2/ answers
        if _answers(address):
            return state
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    stop()
    tail = open(root("log"), errors="replace").read().strip().splitlines()[-1:] or ["no output"]
    raise LabkitError(f"the registry did not start on {address}: {tail[0][:200]}", f"see {root('log')}")


def stop():
    """Stop the lab registry (its storage stays); False if none ran."""
    st = status()
    try:
        os.unlink(root("state.json"))
    except FileNotFoundError:
        pass
    if st is None:
        return False
    os.kill(st["pid"], signal.SIGTERM)
    for _ in range(100):
        if not alive(st["pid"], st["pid_start"]):
            break
        time.sleep(0.05)
    else:
        os.kill(st["pid"], signal.SIGKILL)
    try:   # our child when started by this process (tests): reap it
        os.waitpid(st["pid"], os.WNOHANG)
    except ChildProcessError:
        pass
    return True
