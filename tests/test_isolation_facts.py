"""The chroot and namespace facts, one test each: what `labkit tour` and
notebooks 01-02 claim, checked directly. This file also runs under the
User-Mode Linux kernel (tests/test_uml_v2.py), on cgroup v2."""

import os

import pytest

from labkit.course.facts import chroot, namespaces

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.mark.parametrize("check", [chroot.ls_root, chroot.ps_sees_host, chroot.hostname_shared,
                                   chroot.network_shared, chroot.proc_root_escape],
                         ids=lambda f: f.__name__)
def test_chroot(check, rootfs):
    f = check(rootfs)
    assert f["ok"], f


def test_breakout_and_pivot_root(rootfs):
    escaped, stayed = chroot.breakout(rootfs)
    assert escaped["ok"] and stayed["ok"], (escaped, stayed)


@pytest.mark.parametrize("check", [namespaces.pid_one, namespaces.pid_without_mnt, namespaces.uts,
                                   namespaces.net, namespaces.ipc, namespaces.mnt, namespaces.user,
                                   namespaces.exec_joins],
                         ids=lambda f: f.__name__)
def test_namespace(check, rootfs):
    f = check(rootfs)
    assert f["ok"], f


@pytest.mark.parametrize("chosen", [{"pid"}, {"net"}, {"ipc"}, {"mnt"}, {"uts"}, {"cgroup"}, {"time"},
                                    {"user", "mnt", "pid"}], ids=lambda s: "+".join(sorted(s)))
def test_only_the_chosen_namespaces_differ(chosen, rootfs):
    from labkit.linux import namespaces as ns
    if not chosen <= set(ns.available()):
        pytest.skip(f"this kernel has no {chosen - set(ns.available())} namespace")
    f = namespaces.inodes(chosen, rootfs)
    assert f["ok"], f
