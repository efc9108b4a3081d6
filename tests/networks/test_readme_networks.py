"""The README's network commands, run as written, in this test's own network namespace."""

from readme_helper import block_after, run_block, run_last


def test_readme_network_commands(netns, tmp_path):
    lines = block_after("Networks, with docker's commands and semantics.")
    assert any("--network labkit -p 8080:80" in line for line in lines)
    try:
        out = run_block(lines, cwd=str(tmp_path))
        assert [v for k, v in out.items() if k.startswith("curl")] == ["hello from web\n"]
    finally:
        run_last(lines, cwd=str(tmp_path))
