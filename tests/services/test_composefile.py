"""labkit.services.composefile: compose files read into plain data, and each
mistake reported as FILE:LINE: PATH: what. Pure parsing: no root needed."""

import os
import textwrap

import pytest

from labkit.errors import LabkitError
from labkit.services import composefile

FULL = """\
name: Shop
services:
  front:
    build: ./front
    image: shop/front:dev
    ports:
      - "8080:80"
      - 127.0.0.1:8081:80/tcp
    depends_on:
      api:
        condition: service_healthy
    deploy:
      replicas: 3
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O- http://127.0.0.1/ >/dev/null"]
      interval: 500ms
      retries: 5
  api:
    image: lab/api:1
    command: sh -c 'exec api --port 80'
    networks:
      back:
        aliases: [backend]
    environment:
      MODE: prod
      WORKERS: 4
      DEBUG: false
    deploy:
      resources:
        limits:
          memory: 32M
networks:
  back:
    ipam:
      config:
        - subnet: 10.77.9.0/24
"""


def parse(text, **kw):
    return composefile.parse(textwrap.dedent(text), **kw)


def service(text, name="web"):
    return next(s for s in parse(text)["services"] if s["name"] == name)


def web(lines):
    """A compose text with one service web (image lab/web) and these lines under it."""
    body = textwrap.indent(textwrap.dedent(lines), "    ")
    return "services:\n  web:\n    image: lab/web\n" + body


def fails(text, line, *words, filename="compose.yaml"):
    with pytest.raises(LabkitError) as e:
        composefile.parse(textwrap.dedent(text), filename=filename)
    message = e.value.message
    assert message.startswith(f"{filename}:{line}: "), message
    for word in words:
        assert word in str(e.value), (word, str(e.value))
    assert "\n" not in str(e.value)
    return e.value


def test_full_example(tmp_path):
    path = tmp_path / "compose.yaml"
    path.write_text(FULL)
    d = str(tmp_path)
    assert composefile.load(str(path)) == {
        "name": "shop", "file": str(path), "dir": d,
        "services": [
            {"name": "api", "line": 18, "image": "lab/api:1", "build": None,
             "command": ["sh", "-c", "exec api --port 80"], "ports": [], "networks": ["back"],
             "aliases": ["backend"], "environment": ["MODE=prod", "WORKERS=4", "DEBUG=false"],
             "depends_on": [], "replicas": 1, "memory": "32M", "cpus": None, "healthcheck": None},
            {"name": "front", "line": 3, "image": "shop/front:dev",
             "build": {"context": os.path.join(d, "front"), "file": None},
             "command": None, "ports": ["8080:80", "127.0.0.1:8081:80/tcp"], "networks": ["default"],
             "aliases": [], "environment": [], "depends_on": ["api"], "replicas": 3, "memory": None,
             "cpus": None,
             "healthcheck": {"test": "wget -q -O- http://127.0.0.1/ >/dev/null", "interval": 0.5,
                             "timeout": 2.0, "retries": 5, "start_period": 0.0}},
        ],
        "networks": {"back": {"driver": "bridge", "subnet": "10.77.9.0/24"},
                     "default": {"driver": "bridge", "subnet": None}},
    }


def test_load_relative_path_names_it_in_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: x\n    volumes: [a]\n")
    with pytest.raises(LabkitError) as e:
        composefile.load("compose.yaml")
    assert e.value.message == "compose.yaml:4: services.web: unknown key 'volumes'"
    assert "image, build, command, ports, networks, environment, depends_on, deploy, healthcheck" in e.value.hint


def test_load_missing_file(tmp_path):
    with pytest.raises(LabkitError) as e:
        composefile.load(str(tmp_path / "nope.yaml"))
    assert "nope.yaml" in e.value.message and "No such file" in e.value.message


def test_project_name_rules(tmp_path):
    assert parse("services: {web: {image: x}}")["name"] == "app"
    assert parse("services: {web: {image: x}}", project="Demo")["name"] == "demo"
    assert parse("name: My_Shop-2\nservices: {web: {image: x}}")["name"] == "my_shop-2"
    fails("name: my shop\nservices: {web: {image: x}}", 1, "name", "'my shop'", "-p NAME")
    fails("name: -x\nservices: {web: {image: x}}", 1, "-p NAME")
    e = pytest.raises(LabkitError, parse, "services: {web: {image: x}}", project="a b").value
    assert "bad project name 'a b'" in e.message and "-p NAME" in e.hint

    d = tmp_path / "My Lab"
    d.mkdir()
    (d / "compose.yaml").write_text("services: {web: {image: x}}\n")
    with pytest.raises(LabkitError) as e:
        composefile.load(str(d / "compose.yaml"))
    assert "'my lab'" in e.value.message and "-p NAME" in e.value.hint
    assert composefile.load(str(d / "compose.yaml"), project="Lab")["name"] == "lab"
    (d / "compose.yaml").write_text("name: shop\nservices: {web: {image: x}}\n")
    assert composefile.load(str(d / "compose.yaml"))["name"] == "shop"
    assert composefile.load(str(d / "compose.yaml"), project="other")["name"] == "other"
    (tmp_path / "Good").mkdir()
    (tmp_path / "Good" / "c.yml").write_text("services: {web: {image: x}}\n")
    assert composefile.load(str(tmp_path / "Good" / "c.yml"))["name"] == "good"


def test_yaml_syntax_error_names_the_line():
    fails("services:\n  web:\n    image: x\n   ports: [\n", 4, "YAML")
    fails("services:\n  web:\n\timage: x\n", 3, "YAML")
    fails("services:\n  web:\n    image: !env IMAGE\n", 3, "YAML")
    e = pytest.raises(LabkitError, composefile.parse, "services: {web: {image: \x00}}\n").value
    assert e.message.startswith("compose.yaml: YAML: ") and "\n" not in str(e)


def test_top_level():
    assert parse("version: '3.8'\nx-common: &c {image: x}\nservices:\n  web: *c\n")["services"][0]["image"] == "x"
    fails("services: {web: {image: x}}\nvolumes: {data: null}\n", 2, "unknown key 'volumes'")
    fails("- services\n", 1, "expected a mapping")
    fails("name: x\n", 1, "no services:")
    fails("services: {}\n", 1, "services", "no services")
    fails("services:\n", 1, "services", "expected a mapping")
    with pytest.raises(LabkitError) as e:
        composefile.parse("")
    assert e.value.message == "compose.yaml: empty file"


def test_duplicate_key():
    fails(web("ports: ['1:1']\nports: ['2:2']\n"), 5, "duplicate key 'ports'")


def test_service_needs_image_or_build():
    fails("services:\n  a: {image: x}\n  web:\n    command: ['true']\n", 3, "services.web", "needs image or build")
    s = service("services:\n  web: {build: ., image: lab/web:1}\n")
    assert s["image"] == "lab/web:1" and s["build"]["context"] == os.path.abspath(".")


@pytest.mark.parametrize("name,ok", [("web", True), ("Web.1_a-b", True), ("9x", True),
                                     ("-web", False), ("we b", False), ("w" * 40, True), ("w" * 41, False)])
def test_service_name_rules(name, ok):
    text = f"services:\n  x: {{image: x}}\n  '{name}': {{image: x}}\n"
    if ok:
        assert parse(text)["services"][1]["name"] == name
    else:
        fails(text, 3, "bad service name", name)


def test_unknown_keys_with_lines():
    fails(web("volumes: [a]\n"), 4, "services.web", "unknown key 'volumes'", "labkit compose knows: image, build")
    fails(web("deploy:\n  replicas: 2\n  placement: {}\n"), 6, "services.web.deploy", "unknown key 'placement'")
    fails(web("deploy:\n  resources:\n    limits:\n      pids: 3\n"), 7,
          "services.web.deploy.resources.limits", "unknown key 'pids'", "memory, cpus")
    fails(web("healthcheck:\n  test: 'true'\n  start_interval: 1s\n"), 6, "unknown key 'start_interval'")
    fails(web("build:\n  context: .\n  args: {A: 1}\n"), 6, "services.web.build", "unknown key 'args'")
    fails(web("networks:\n  default:\n    ipv4_address: 10.0.0.2\n"), 6, "services.web.networks.default",
          "unknown key 'ipv4_address'")
    fails(web("depends_on:\n  a:\n    restart: true\n"), 6, "unknown key 'restart'")


def test_extension_keys_are_ignored():
    assert service(web("x-note: hello\n"))["image"] == "lab/web"


@pytest.mark.parametrize("lines,line,path,expected", [
    ("ports: '8080:80'\n", 4, "services.web.ports", "expected a list of strings"),
    ("ports:\n  a: b\n", 5, "services.web.ports", "expected a list of strings"),
    ("ports: [[1, 2]]\n", 4, "services.web.ports", "expected a list of strings"),
    ("command: 5\n", 4, "services.web.command", "expected a string"),
    ("command: [sleep, 5]\n", 4, "services.web.command", "expected a list of strings"),
    ("build: {context: [a]}\n", 4, "services.web.build.context", "expected a string"),
    ("environment: FOO\n", 4, "services.web.environment", "expected a list of strings or a mapping"),
    ("environment:\n  A: [1]\n", 5, "services.web.environment.A", "expected a string, a number or true/false"),
    ("networks: back\n", 4, "services.web.networks", "expected a list of strings or a mapping"),
    ("networks:\n  default:\n    aliases: a\n", 6, "services.web.networks.default.aliases",
     "expected a list of strings"),
    ("depends_on: api\n", 4, "services.web.depends_on", "expected a list of strings or a mapping"),
    ("deploy: [replicas]\n", 4, "services.web.deploy", "expected a mapping"),
    ("deploy:\n  replicas: '2'\n", 5, "services.web.deploy.replicas", "expected an integer"),
    ("scale: true\n", 4, "services.web.scale", "expected an integer"),
    ("healthcheck: wget\n", 4, "services.web.healthcheck", "expected a mapping"),
    ("healthcheck:\n  test: {a: 1}\n", 5, "services.web.healthcheck.test", "expected a list of strings"),
    ("healthcheck:\n  test: 'true'\n  retries: 1.5\n", 6, "services.web.healthcheck.retries", "expected an integer"),
    ("build: [.]\n", 4, "services.web.build", "expected a mapping"),
    ("mem_limit: [1]\n", 4, "services.web.mem_limit", "expected a size"),
])
def test_wrong_types(lines, line, path, expected):
    e = fails(web(lines), line, path, expected)
    assert e.message.endswith(expected) or expected in e.message


def test_service_not_a_mapping():
    fails("services:\n  web: lab/web\n", 2, "services.web", "expected a mapping")
    fails("services:\n  web:\n    image: [a]\n", 3, "services.web.image", "expected a string")


def test_command_forms():
    assert service(web("command: sh -c 'echo \"a b\"; sleep 1'\n"))["command"] == ["sh", "-c", 'echo "a b"; sleep 1']
    assert service(web("command: [sleep, '5']\n"))["command"] == ["sleep", "5"]
    fails(web("command: sh -c 'oops\n"), 4, "services.web.command", "cannot split")
    fails(web("command: []\n"), 4, "empty command")


def test_build_forms():
    d = "/lab/shop"
    s = parse("services:\n  web:\n    build: front\n", directory=d)["services"][0]
    assert s["build"] == {"context": "/lab/shop/front", "file": None} and s["image"] is None
    s = parse("services:\n  web:\n    build: {context: ./front, dockerfile: Containerfile}\n", directory=d)
    assert s["services"][0]["build"] == {"context": "/lab/shop/front", "file": "/lab/shop/front/Containerfile"}
    s = parse("services:\n  web:\n    build: {dockerfile: ../Dockerfile.web}\n", directory=d)
    assert s["services"][0]["build"] == {"context": "/lab/shop", "file": "/lab/Dockerfile.web"}
    s = parse("services:\n  web:\n    build: /abs/ctx\n", directory=d)
    assert s["services"][0]["build"]["context"] == "/abs/ctx"


def test_ports():
    assert service(web("ports: [8080:80, '127.0.0.1:8081:80/tcp', '5353:53/udp']\n"))["ports"] == \
        ["8080:80", "127.0.0.1:8081:80/tcp", "5353:53/udp"]
    fails(web("ports:\n  - '8080:80'\n  - 80\n"), 6, "services.web.ports", "'80'", "HOSTPORT:PORT only",
          'write "80:80"')
    fails(web("ports: ['80']\n"), 4, "HOSTPORT:PORT only")
    for bad in ("'8080:80/sctp'", "'0:80'", "'8080:70000'", "'8080-8081:80'", "'::1:8080:80'", "'a:b'"):
        fails(web(f"ports: [{bad}]\n"), 4, "services.web.ports", "bad port", bad.strip("'"))


def test_port_yaml_sexagesimal_trap():
    # YAML 1.1 reads a plain 2222:22 as 2222 * 60 + 22 (base 60); 8080:80 is
    # no base-60 number (80 > 59), so it stays a string and passes.
    e = fails(web("ports:\n  - 2222:22\n"), 5, "services.web.ports", "2222:22", "133342")
    assert e.hint == 'quote it: "2222:22"'
    assert service(web("ports: ['2222:22', \"22:22\"]\n"))["ports"] == ["2222:22", "22:22"]
    fails(web("ports: [22:22]\n"), 4, 'quote it: "22:22"')


def test_networks_forms_and_aliases():
    text = """\
        services:
          web:
            image: x
            networks: [front, back]
          api:
            image: x
            networks:
              front:
              back:
                aliases: [api-1, api, api-1]
              default: {aliases: [api, apis]}
        networks:
          front: {driver: bridge}
          back:
        """
    p = parse(text)
    assert [(s["name"], s["networks"], s["aliases"]) for s in p["services"]] == [
        ("web", ["front", "back"], []), ("api", ["front", "back", "default"], ["api-1", "api", "apis"])]
    assert p["networks"] == {"front": {"driver": "bridge", "subnet": None},
                             "back": {"driver": "bridge", "subnet": None},
                             "default": {"driver": "bridge", "subnet": None}}


def test_default_network_only_when_used():
    p = parse("services:\n  web: {image: x, networks: [n]}\nnetworks: {n: null}\n")
    assert p["networks"] == {"n": {"driver": "bridge", "subnet": None}}
    p = parse("services:\n  web: {image: x}\nnetworks:\n  default:\n    ipam: {config: [{subnet: 10.1.2.0/24}]}\n")
    assert p["networks"] == {"default": {"driver": "bridge", "subnet": "10.1.2.0/24"}}


def test_network_errors():
    fails(web("networks: [front, back]\n"), 4, "services.web.networks", "network 'front' is not declared")
    fails(web("networks:\n  - default\n  - back\n"), 6, "network 'back' is not declared")
    fails(web("networks: [a, a]\n") + "networks: {a: null}\n", 4, "'a' is listed twice")
    fails(web("networks: []\n"), 4, "names no network")
    top = "services: {web: {image: x}}\nnetworks:\n  n:\n"
    fails(top + "    driver: overlay\n", 4, "networks.n.driver", "'overlay' is not supported", "bridge")
    fails(top + "    external: true\n", 4, "networks.n", "unknown key 'external'")
    fails(top + "    ipam:\n      config:\n        - subnet: 10.1.2.3/24\n", 6, "networks.n.ipam.config.subnet",
          "bad subnet '10.1.2.3/24'")
    fails(top + "    ipam:\n      config:\n        - subnet: 10.1.0.0/24\n        - subnet: 10.2.0.0/24\n", 6,
          "networks.n.ipam.config", "one subnet")
    fails(top + "    ipam:\n      config:\n        - gateway: 10.1.0.1\n", 6, "unknown key 'gateway'")
    fails("services: {web: {image: x}}\nnetworks:\n  'b d': null\n", 3, "bad network name")


def test_environment_forms():
    assert service(web("environment: [A=1, 'B=x=y', C=]\n"))["environment"] == ["A=1", "B=x=y", "C="]
    env = service(web("environment:\n  S: text\n  I: 8080\n  F: 0.5\n  T: yes\n  N: false\n  E: ''\n"))
    assert env["environment"] == ["S=text", "I=8080", "F=0.5", "T=true", "N=false", "E="]
    fails(web("environment:\n  - A=1\n  - HOME\n"), 6, "services.web.environment", "'HOME' has no value", "K=VALUE")
    fails(web("environment: ['=x']\n"), 4, "has no value")
    fails(web("environment:\n  A: 1\n  B:\n"), 6, "services.web.environment.B", "'B' has no value")


def test_depends_on_forms():
    text = "services:\n  a: {image: x}\n  b: {image: x}\n  web:\n    image: x\n    depends_on:\n"
    assert service(text + "      - a\n      - b\n")["depends_on"] == ["a", "b"]
    assert service(text + "      a: {condition: service_started}\n      b:\n")["depends_on"] == ["a", "b"]
    fails(text + "      a: {condition: service_completed_successfully}\n", 7,
          "services.web.depends_on.a.condition", "not supported", "service_healthy")
    fails(text + "      - a\n      - db\n", 8, "services.web.depends_on", "unknown service 'db'", "a, b, web")


def test_start_order_is_topological_ties_by_file_order():
    text = """\
        services:
          web: {image: x, depends_on: [api, cache]}
          worker: {image: x, depends_on: [db]}
          api: {image: x, depends_on: [db]}
          db: {image: x}
          cache: {image: x}
        """
    assert [s["name"] for s in parse(text)["services"]] == ["db", "worker", "api", "cache", "web"]


def test_depends_on_cycle():
    text = """\
        services:
          db: {image: x}
          web: {image: x, depends_on: [db, api]}
          api:
            image: x
            depends_on: [web]
        """
    fails(text, 3, "services.web.depends_on", "a cycle: web -> api -> web")
    fails("services:\n  web:\n    image: x\n    depends_on: [web]\n", 4, "a cycle: web -> web")
    fails("services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [c]}\n"
          "  c: {image: x, depends_on: [b]}\n", 3, "a cycle: b -> c -> b")


def test_replicas():
    assert service(web("deploy: {replicas: 0}\n"))["replicas"] == 0
    assert service(web("scale: 50\n"))["replicas"] == 50
    assert service(web("scale: 4\ndeploy: {replicas: 4}\n"))["replicas"] == 4
    fails(web("deploy:\n  replicas: 51\n"), 5, "services.web.deploy.replicas", "51 replicas", "50")
    fails(web("scale: -1\n"), 4, "services.web.scale", "50")
    fails(web("scale: 2\ndeploy:\n  replicas: 3\n"), 5, "services.web", "'deploy' contradicts 'scale'")


def test_memory_and_cpus():
    for value, expected in [("32m", "32m"), ("64M", "64M"), ("1g", "1g"), ("512mb", "512mb"), ("33554432", "33554432")]:
        assert service(web(f"mem_limit: {value}\n"))["memory"] == expected
    s = service(web("deploy:\n  resources:\n    limits: {memory: 1G, cpus: '0.5'}\n    reservations: {memory: 1m}\n"))
    assert (s["memory"], s["cpus"]) == ("1G", "0.5")
    assert service(web("cpus: 2\n"))["cpus"] == "2"
    assert service(web("cpus: 0.25\n"))["cpus"] == "0.25"
    fails(web("mem_limit: lots\n"), 4, "services.web.mem_limit", "bad size 'lots'")
    fails(web("mem_limit: 0\n"), 4, "bad size")
    fails(web("cpus: many\n"), 4, "services.web.cpus", "bad cpus 'many'")
    fails(web("cpus: 0\n"), 4, "bad cpus")
    fails(web("mem_limit: 1g\ndeploy: {resources: {limits: {memory: 2g}}}\n"), 5, "'deploy' contradicts 'mem_limit'")


def test_deploy_accepted_and_ignored_keys():
    s = service(web("deploy:\n  restart_policy: {condition: on-failure}\n"
                    "  update_config: {parallelism: 1, order: start-first}\n"))
    assert s["replicas"] == 1 and s["memory"] is None
    fails(web("deploy:\n  update_config:\n    parallelism: 2\n"), 6, "services.web.deploy.update_config.parallelism",
          "'2' is not supported")
    fails(web("deploy:\n  update_config:\n    order: random\n"), 6, "'random' is not supported", "stop-first")
    fails(web("deploy:\n  update_config:\n    delay: 10s\n"), 6, "unknown key 'delay'")


@pytest.mark.parametrize("test,expected", [
    ('["CMD-SHELL", "wget -q -O- http://127.0.0.1/ >/dev/null"]', "wget -q -O- http://127.0.0.1/ >/dev/null"),
    ('["CMD", "wget", "-q", "http://x/a b"]', "wget -q 'http://x/a b'"),
    ("curl -f http://localhost/ || exit 1", "curl -f http://localhost/ || exit 1"),
    ('["NONE"]', None),
])
def test_healthcheck_test_forms(test, expected):
    hc = service(web(f"healthcheck:\n  test: {test}\n"))["healthcheck"]
    if expected is None:
        assert hc is None
    else:
        assert hc == {"test": expected, "interval": 1.0, "timeout": 2.0, "retries": 3, "start_period": 0.0}


def test_healthcheck_disable_and_errors():
    assert service(web("healthcheck:\n  test: 'true'\n  disable: true\n"))["healthcheck"] is None
    assert service(web("healthcheck:\n  disable: true\n"))["healthcheck"] is None
    assert service(web("healthcheck:\n  test: 'true'\n  disable: false\n"))["healthcheck"]["test"] == "true"
    fails(web("healthcheck:\n  interval: 1s\n"), 5, "services.web.healthcheck", "no test")
    fails(web("healthcheck:\n  test: [CMD]\n"), 5, "services.web.healthcheck.test", "CMD-SHELL")
    fails(web("healthcheck:\n  test: [CMD-SHELL, a, b]\n"), 5, "services.web.healthcheck.test")
    fails(web("healthcheck:\n  test: [wget, x]\n"), 5, "services.web.healthcheck.test")
    fails(web("healthcheck:\n  test: ''\n"), 5, "services.web.healthcheck.test")
    fails(web("healthcheck:\n  test: 'true'\n  retries: 0\n"), 6, "services.web.healthcheck.retries")
    fails(web("healthcheck:\n  test: 'true'\n  interval: 0s\n"), 5, "above 0")


@pytest.mark.parametrize("text,seconds", [
    ("1s", 1.0), ("500ms", 0.5), ("1m30s", 90.0), ("2m", 120.0), ("1h", 3600.0), ("1.5s", 1.5),
    ("1h2m3s", 3723.0), ("250us", 0.00025), ("3", 3.0), ("0.25", 0.25), ("'10s'", 10.0), ("0s", 0.0),
])
def test_durations(text, seconds):
    hc = service(web(f"healthcheck:\n  test: 'true'\n  start_period: {text}\n"))["healthcheck"]
    assert hc["start_period"] == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1", "1 s", "s", "1d", "1m30", "-1s", "-2", "'1s '", "[1s]", "true"])
def test_bad_durations(text):
    value = "1x" if text == "1" else text   # "1" alone is a number of seconds: make it bad
    fails(web(f"healthcheck:\n  test: 'true'\n  timeout: {value}\n"), 6, "services.web.healthcheck.timeout")
