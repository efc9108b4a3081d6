"""An interactive shell inside a container, driven with pexpect: type
`ps`, `ip a`, `hostname`, and read back what a student would see.

    with Shell(ns="pid,net,mnt,uts", hostname="box") as sh:
        print(sh.run("hostname"))
"""

import sys

import pexpect

from labkit import api

PROMPT = "LABKIT-PROMPT>"


class Shell:
    def __init__(self, timeout=20, **options):
        self.argv = api.run_args(["/bin/sh"], extra=["-i", "-t"], **options)
        self.timeout = timeout
        self.child = None

    def start(self):
        self.child = pexpect.spawn(sys.executable, ["-m", "labkit"] + self.argv, encoding="utf-8",
                                   timeout=self.timeout, dimensions=(40, 120), echo=False)
        # A prompt no command prints, so that each answer ends unambiguously;
        # split in two quoted halves so that the echo of this line cannot match it.
        half = len(PROMPT) // 2
        self.child.sendline(f"stty -echo; PS1='{PROMPT[:half]}''{PROMPT[half:]}'")
        self.child.expect_exact(PROMPT)
        return self

    def run(self, command):
        """Type ``command``; return what it printed (without the prompt)."""
        self.child.sendline(command)
        self.child.expect_exact(PROMPT)
        return self.child.before.replace("\r\n", "\n").strip("\n")

    def close(self):
        if self.child is not None and self.child.isalive():
            self.child.sendline("exit")
            try:
                self.child.expect(pexpect.EOF, timeout=10)
            except pexpect.TIMEOUT:
                self.child.kill(2)
                self.child.expect(pexpect.EOF, timeout=10)
        if self.child is not None:
            self.child.close()
            self.exitstatus = self.child.exitstatus

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close()
