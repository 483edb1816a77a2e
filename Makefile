# leasedns developer entry points. `make test` works on a machine that has
# never seen the project: it makes the virtualenv, installs the Python deps
# and, when run as root, the Debian packages the integration and lab tests use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEBS   := tinydns djbdns-utils dnsmasq bind9 bind9-dnsutils knot knot-dnsutils pdns-server pdns-backend-sqlite3 unbound isc-dhcp-server isc-dhcp-client rsync iproute2 dhcpd-pools util-linux time openssh-server openssh-client gcc
# What `make deb` builds the Debian package with (also installed by `make test` as root: a test
# builds and installs the package).
DEB_DEPS := debhelper dh-python python3-all-dev python3-setuptools python3-dnspython python3-yaml \
            build-essential fakeroot lintian groff-base
# Python.h of $(PYTHON): Debian's python3 needs python3-dev for the lease parser's C accelerator
# (pyenv and python.org builds ship their headers).
HAVE_PYTHON_H := $(PYTHON) -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'

.PHONY: all venv debs test test-fast demo bench lint fuzz clean deb deb-deps

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

# Debian packages; installed only when something is missing and we are root. (openssh-server:
# the tests run their own sshd on 127.0.0.1; apt starts the system's too, unless policy-rc.d
# forbids it.)
debs:
	@missing=""; \
	for p in tinydns-data:tinydns tinydns-get:djbdns-utils dnsmasq:dnsmasq dhcpd:isc-dhcp-server \
	         named:bind9 nsupdate:bind9-dnsutils knotd:knot kdig:knot-dnsutils \
	         pdns_server:pdns-server unbound:unbound dhclient:isc-dhcp-client rsync:rsync ip:iproute2 \
	         dhcpd-pools:dhcpd-pools setpriv:util-linux /usr/bin/time:time rrsync:rsync \
	         sshd:openssh-server ssh:openssh-client gcc:gcc; do \
	    cmd=$${p%%:*}; pkg=$${p#*:}; \
	    PATH="$$PATH:/usr/sbin:/sbin" command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	headers=""; $(HAVE_PYTHON_H) 2>/dev/null || headers="python3-dev"; \
	missing="$$missing$${headers:+ $$headers}"; \
	for p in $(DEB_DEPS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	    echo "make: not root, not installing:$$missing (tests that need them will skip)"; exit 0; fi; \
	echo "make: installing Debian packages:$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $(DEBS) $(DEB_DEPS) $$headers >/dev/null

test: debs venv
	PATH="$$PATH:/usr/sbin:/sbin" $(BIN)/pytest -q

# Unit tests only: no root, no external programs.
test-fast: venv
	$(BIN)/pytest -q -m "not integration and not lab"

demo: debs venv
	PATH="$$PATH:/usr/sbin:/sbin" $(BIN)/python -m leasedns.commands.demo

bench: debs venv
	PATH="$$PATH:/usr/sbin:/sbin" $(BIN)/python bench/run.py

# The Debian package, from the tracked files only (a clean checkout's content), built with
# Debian's own tools for Debian's python3; lintian must report no error. As root, the build
# dependencies are installed first when missing. The .deb lands in dist/.
DEB_VERSION = $(shell dpkg-parsechangelog -S Version)
DEB_ARCH = $(shell dpkg --print-architecture)

deb-deps:
	@missing=""; for p in $(DEB_DEPS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "make deb: missing:$$missing (install them, or run as root)"; exit 1; fi; \
	echo "make: installing Debian packages:$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null

deb: deb-deps
	rm -rf build/deb && mkdir -p build/deb/leasedns dist
	git ls-files -z | tar --null -T - -cf - | tar -xf - -C build/deb/leasedns
	cd build/deb/leasedns && dpkg-buildpackage -us -uc -b
	lintian --fail-on error --info build/deb/leasedns_$(DEB_VERSION)_$(DEB_ARCH).deb
	cp build/deb/leasedns_$(DEB_VERSION)_$(DEB_ARCH).deb dist/
	@echo "dist/leasedns_$(DEB_VERSION)_$(DEB_ARCH).deb"

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist src/*.egg-info src/leasedns/*.so .pytest_cache .hypothesis
