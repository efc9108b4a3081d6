"""The README's shell blocks, run as written (without sudo: the suite is
root already), so that no command shown to a newcomer is untested."""

import os
import re
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def block_after(start):
    """The commands of the first ```sh block after the text ``start``."""
    text = open(os.path.join(ROOT, "README.md")).read()
    block = re.search(r"```sh\n(.*?)```", text[text.index(start):], re.S).group(1)
    block = block.replace("\\\n", " ")   # continued lines
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def run_block(lines, cwd, retry=("curl",)):
    """Each line in order under sh, in ``cwd``; the checkout's labkit first on
    PATH. Lines starting with a word of ``retry`` get a bounded retry (a
    server that starts in the background). Returns {line: stdout}."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    env["PATH"] = os.path.join(ROOT, ".venv", "bin") + ":" + env["PATH"]
    out = {}
    for line in lines:
        cmd = line.replace("sudo ", "")
        for _ in range(20 if cmd.startswith(retry) else 1):
            r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        assert r.returncode == 0, f"{line}: {r.stderr}"
        out[line] = r.stdout
    return out


def run_last(lines, cwd, n=1):
    """The block's last ``n`` lines (its cleanup), each whatever happened before."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    env["PATH"] = os.path.join(ROOT, ".venv", "bin") + ":" + env["PATH"]
    for line in lines[-n:]:
        subprocess.run(["sh", "-c", line.replace("sudo ", "")], capture_output=True, env=env, cwd=cwd)
