"""The README's service commands, run as written, in this test's own network namespace."""

from readme_helper import block_after, run_block, run_last


def test_readme_service_commands(netns, tmp_path):
    lines = block_after("Services and replicas, with docker swarm's commands")
    try:
        out = run_block(lines, cwd=str(tmp_path))
        answers = [v.strip() for k, v in out.items() if k.startswith("curl")]
        assert len(set(answers)) == 2 and all(a.startswith("web.") for a in answers)
        ls = next(v for k, v in out.items() if "service ls" in k)
        assert "5/5" in ls and "127.0.0.1:8090->80/tcp" in ls
        assert next(v for k, v in out.items() if "labkit run" in k).startswith("web.")
    finally:
        run_last(lines, cwd=str(tmp_path), n=2)
