"""The README's network commands, run as written (without sudo: the suite
is root already), in this test's own network namespace."""

import os
import re
import subprocess
import time

from net_helpers import ROOT

START = "Networks, with docker's commands and semantics."


def readme_block():
    text = open(os.path.join(ROOT, "README.md")).read()
    block = re.search(r"```sh\n(.*?)```", text[text.index(START):], re.S).group(1)
    block = block.replace("\\\n", " ")   # continued lines
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_network_commands(netns):
    lines = readme_block()
    assert any("--network labkit -p 8080:80" in line for line in lines)
    env = dict(os.environ, PYTHONPATH=ROOT)
    env["PATH"] = os.path.join(ROOT, ".venv", "bin") + ":" + env["PATH"]   # the checkout's labkit
    try:
        for line in lines:
            cmd = line.replace("sudo ", "")
            for _ in range(20 if cmd.startswith("curl") else 1):   # httpd starts in the background
                r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=60, env=env)
                if r.returncode == 0:
                    break
                time.sleep(0.1)
            assert r.returncode == 0, f"{line}: {r.stderr}"
            if cmd.startswith("curl"):
                assert r.stdout.strip() == "hello from web"
    finally:
        subprocess.run(["sh", "-c", lines[-1].replace("sudo ", "")], capture_output=True, env=env)
