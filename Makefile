# labkit — two commands on a Linux host, as root:
#   sudo make lab    set up and serve the notebooks on http://127.0.0.1:8888
#   sudo make test   set up and run the whole suite
#   sudo make lab LABKIT_LANG=es   the lab in Spanish (kept for later runs)
# The classroom VM's provisioned venv when there is one (sudo drops the VENV
# that /etc/environment sets where /etc/pam.d/sudo has no pam_env), else .venv.
VENV ?= $(if $(wildcard /opt/labkit/venv/bin/python),/opt/labkit/venv,$(CURDIR)/.venv)
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

export VENV

# The port `make serve` listens on (127.0.0.1 only).
LAB_PORT ?= 8888

.PHONY: lab serve test test-each fuzz setup bench vm-test clean-host check-root

check-root:
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "labkit needs root: containers are built from namespaces, mounts and cgroups, which only root may create. Run 'sudo make $(MAKECMDGOALS)', or use the classroom VM (vagrant up)." >&2; \
	  exit 1; fi

setup: check-root
	@bash vagrant/provision.sh $(PROVISION_ARGS)

lab: setup
	@$(MAKE) --no-print-directory serve

# JupyterLab on the notebooks, opening on the course's first page in the
# lab's language (LABKIT_LANG, else the one provision.sh kept): what `make
# lab` runs once set up.
serve: check-root
	@echo "Serving notebooks/ on 127.0.0.1:$(LAB_PORT) — open the URL with its token printed below (Ctrl-C stops)."
	@cd notebooks && lang=$${LABKIT_LANG:-$$(cat /etc/labkit/lang 2>/dev/null || echo en)} && \
	  first=$$(bash $(CURDIR)/vagrant/first-notebook.sh $(CURDIR)/notebooks $$lang) && \
	  LABKIT_LANG=$$lang exec $(VENV)/bin/jupyter lab --allow-root --no-browser \
	  --ip=127.0.0.1 --port=$(LAB_PORT) --ServerApp.port_retries=0 \
	  --ServerApp.root_dir=$(CURDIR)/notebooks --LabApp.default_url=/lab/tree/$$first

# The suite also checks the classroom VM files: vagrant, shellcheck, cloud-init's validator.
test: PROVISION_ARGS += --test-tools
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# Every test file alone, each run from an empty $LABKIT_HOME of its own
# (tests/conftest.py): no test may lean on another, or on an earlier run.
test-each: PROVISION_ARGS += --test-tools
test-each: setup
	@failed=; for f in $$(find tests -name 'test_*.py' | sort); do \
	  start=$$(date +%s); \
	  if $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) $$f >/tmp/labkit-test-each.log 2>&1; then verdict=passed; \
	  else verdict=FAILED; failed="$$failed $$f"; tail -n 30 /tmp/labkit-test-each.log; fi; \
	  echo "$$verdict $$f $$(( $$(date +%s) - start )) s"; done; \
	  rm -f /tmp/labkit-test-each.log; \
	  if [ -n "$$failed" ]; then echo "failed alone:$$failed"; exit 1; fi

# Every parser of untrusted input fed FUZZ_EXAMPLES inputs each (the suite
# feeds 60): one clear line or a result, never a traceback, never a write
# outside the target (tests/fuzz). Prints how many inputs each test tried.
FUZZ_EXAMPLES ?= 5000
fuzz: PROVISION_ARGS += --test-tools
fuzz: setup
	LABKIT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider --hypothesis-show-statistics tests/fuzz

bench: PROVISION_ARGS += --test-tools
bench: setup
	$(PY) bench/start.py
	$(PY) bench/replicas.py
	$(PY) bench/footprint.py
	$(PY) bench/notebook.py
	$(PY) bench/course.py

# The classroom VM's path for real (not part of `make test`; 20-60 min): a
# Debian guest built offline (13 by default; VM_TEST_ARGS="--suite bookworm"
# for 12, "--arch arm64" for the Apple Silicon box's machine), booted with
# QEMU, provisioned as Vagrant does, then doctor, tour and the notebook and
# cgroup tests inside. VM_TEST_ARGS=--keep keeps the image for the next run
# (see vagrant/vmtest.py).
VM_TEST_ARGS ?=
vm-test: PROVISION_ARGS += --vm-tools
vm-test: setup
	$(PY) vagrant/vmtest.py $(VM_TEST_ARGS)

clean-host: check-root
	$(VENV)/bin/labkit gc
