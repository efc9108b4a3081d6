"""Facts notebooks/09-security.ipynb must record (each dict fact must hold),
read by tests/test_notebooks.py; relations across facts are checked below."""

EXPECTED = {
    "09-security": ["sec_capabilities", "sec_mount", "sec_host_disk", "sec_device_cgroup", "sec_devices_list",
                    "sec_proc_sys", "sec_seccomp_userns", "sec_leaked_fd", "sec_cwd_refused",
                    "sec_release_agent", "sec_userns_remap", "sec_loopback", "sec_arp_spoof", "sec_side_by_side",
                    "sec_trace", "sec_left"],
}
# Its network section makes a bridge and firewall rules: in a namespace of the test's own.
NETNS = {"09-security"}


def check_relations(f):
    caps = f["sec_capabilities"]
    assert caps["mask"] == "00000000a80425fb" and len(caps["inside"]) == 14
    # What the default shows in the side-by-side table is what each escape met.
    default = f["sec_side_by_side"]["columns"]["labkit run"]
    assert default["caps"] == caps["mask"] and default["seccomp"] == "2"
    assert default["mknod"] == "yes" and default["open_disk"] == "no"
    runc = f["sec_side_by_side"]["outside"]
    if runc is not None:       # runc's default spec: few capabilities, but no seccomp filter
        assert runc["seccomp"] == "0" and runc["mount"] == "no"
    listing = f["sec_devices_list"]
    if listing is not None:    # cgroup v1: the kernel's own list holds the rules, not "allow all"
        assert "a *:* rwm" not in listing and "c 1:3 rwm" in listing
    assert f["sec_userns_remap"]["host_uid"] != 0
    assert f["sec_leaked_fd"]["outside"] == f["sec_leaked_fd"]["host_hostname"]
    # Without no_new_privs the filter is loaded while CAP_SYS_ADMIN (21) is still held, then dropped.
    trace = f["sec_trace"]
    filt = [i for i, line in enumerate(trace) if line.startswith("seccomp(SECCOMP_SET_MODE_FILTER")]
    drop = [i for i, line in enumerate(trace) if line.startswith("prctl(PR_CAPBSET_DROP, 21)")]
    assert filt and drop and filt[0] < drop[0], trace
    assert f["sec_left"] == []
    # The guard off for the lesson is back on after it; the spoofer took the gateway's place.
    assert f["sec_loopback"]["guard_back"] and f["sec_arp_spoof"]["spoofer_mac"] != f["sec_arp_spoof"]["gateway_mac"]
