"""Helpers of the network tests: labkit as a command, and an "outside"."""

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def labkit(*args, input=None, timeout=60, env=None):
    return subprocess.run([sys.executable, "-m", "labkit", *args], input=input, capture_output=True,
                          text=True, timeout=timeout, cwd="/", env=dict(os.environ, PYTHONPATH=ROOT, **(env or {})))


def ok(*args, **kw):
    r = labkit(*args, **kw)
    assert r.returncode == 0, f"labkit {' '.join(args)}: {r.returncode} {r.stderr}"
    return r.stdout


class Outside:
    """The "internet" of a test: another network namespace, reached through a
    veth pair from the test's own, at 192.0.2.2 (TEST-NET-1, RFC 5737: an
    address for documentation; here it exists only in that namespace). It
    runs a TCP server that answers each connection with the address it came
    from, so a test sees what the outside sees."""

    HERE, THERE, PORT = "192.0.2.1", "192.0.2.2", 9000
    SERVER = ("import socket\n"
              "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
              "s.bind(('0.0.0.0', 9000)); s.listen(8); print('ready', flush=True)\n"
              "for _ in range(50):\n"
              "    c, addr = s.accept(); c.sendall((addr[0] + '\\n').encode()); c.close()\n")

    def __init__(self):
        self.holder = subprocess.Popen(["unshare", "-n", "--", "sleep", "600"])
        pid = self.holder.pid
        for _ in range(100):   # until unshare has exec'd sleep in its new namespace
            if os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.01)
        script = (f"link add lkout0 type veth peer name eth0 netns {pid}\n"
                  f"addr add {self.HERE}/24 dev lkout0\nlink set lkout0 up\n")
        subprocess.run(["ip", "-batch", "-"], input=script, text=True, check=True)
        inside = f"addr add {self.THERE}/24 dev eth0\nlink set eth0 up\nlink set lo up\n"
        subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-batch", "-"], input=inside,
                       text=True, check=True)
        self.server = subprocess.Popen(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c",
                                        self.SERVER], stdout=subprocess.PIPE, text=True)
        assert self.server.stdout.readline().strip() == "ready"

    def run(self, *argv, timeout=30):
        """A command in the outside namespace (the host's files, its own network)."""
        return subprocess.run(["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", *argv],
                              capture_output=True, text=True, timeout=timeout)

    def route_through_the_host(self, subnet):
        """As a machine on the host's LAN could: ``subnet`` by way of the host."""
        r = self.run("ip", "route", "add", subnet, "via", self.HERE)
        assert r.returncode == 0, r.stderr

    def get(self, url):
        """The page at ``url`` fetched from outside, or '' (one try, 3 seconds)."""
        return self.run("curl", "-s", "--max-time", "3", url).stdout.strip()

    def close(self):
        for p in (self.server, self.holder):
            p.kill()
            p.wait()
        subprocess.run(["ip", "link", "del", "lkout0"], capture_output=True)
