# leasedns developer entry points. `make test` works on a machine that has
# never seen the project: it makes the virtualenv, installs the Python deps
# and, when run as root, the Debian packages the integration and lab tests use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEBS   := tinydns djbdns-utils dnsmasq bind9 bind9-dnsutils knot knot-dnsutils pdns-server pdns-backend-sqlite3 unbound isc-dhcp-server isc-dhcp-client rsync iproute2 dhcpd-pools util-linux time gcc
# Python.h of $(PYTHON): Debian's python3 needs python3-dev for the lease parser's C accelerator
# (pyenv and python.org builds ship their headers).
HAVE_PYTHON_H := $(PYTHON) -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'

.PHONY: all venv debs test test-fast demo bench lint fuzz clean

all: test

venv: $(VENV)/.installed

# setup.py builds the optional C accelerator (src/leasedns/sources/dhcpd/_leasescan.c) in place; without a
# compiler the install goes on and the lease parser runs in pure Python. The last line says which.
$(VENV)/.installed: pyproject.toml setup.py src/leasedns/sources/dhcpd/_leasescan.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev,bench]'
	$(BIN)/leasedns --version
	touch $@

# Debian packages; installed only when something is missing and we are root.
debs:
	@missing=""; \
	for p in tinydns-data:tinydns tinydns-get:djbdns-utils dnsmasq:dnsmasq dhcpd:isc-dhcp-server \
	         named:bind9 nsupdate:bind9-dnsutils knotd:knot kdig:knot-dnsutils \
	         pdns_server:pdns-server unbound:unbound dhclient:isc-dhcp-client rsync:rsync ip:iproute2 \
	         dhcpd-pools:dhcpd-pools setpriv:util-linux /usr/bin/time:time gcc:gcc; do \
	    cmd=$${p%%:*}; pkg=$${p#*:}; \
	    PATH="$$PATH:/usr/sbin:/sbin" command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	headers=""; $(HAVE_PYTHON_H) 2>/dev/null || headers="python3-dev"; \
	missing="$$missing$${headers:+ $$headers}"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	    echo "make: not root, not installing:$$missing (tests that need them will skip)"; exit 0; fi; \
	echo "make: installing Debian packages:$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $(DEBS) $$headers >/dev/null

test: debs venv
	PATH="$$PATH:/usr/sbin:/sbin" $(BIN)/pytest -q

# Unit tests only: no root, no external programs.
test-fast: venv
	$(BIN)/pytest -q -m "not integration and not lab"

demo: debs venv
	PATH="$$PATH:/usr/sbin:/sbin" $(BIN)/python -m leasedns.commands.demo

bench: debs venv
	PATH="$$PATH:/usr/sbin:/sbin" $(BIN)/python bench/run.py

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build src/*.egg-info src/leasedns/*.so .pytest_cache .hypothesis
