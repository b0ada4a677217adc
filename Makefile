# Herd: `make dev` runs a single node on an embedded vSphere simulator;
# `make test` runs every test.
GO      ?= go
PREFIX  ?= /usr
DESTDIR ?=
SYSCONFDIR ?= /etc
UNITDIR ?= /lib/systemd/system
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build dev dev-cluster test test-deps e2e e2e-timing bench lint install fuzz clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/herd ./cmd/herd

dev: build
	./bin/herd server -dev

# Three servers on loopback over one vSphere simulator: kill the leader and watch.
dev-cluster: build
	./bin/herd dev-cluster

MAX_PACKAGE_LINES ?= 3000
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt: not formatted:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@# go.mod and go.sum say exactly what the code imports.
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	@# Test helpers stay out of the binary: none of its packages is a test
	@# package or imports testing (hashicorp/raft's own helpers bring testing in,
	@# and raft-autopilot's generated mocks testify).
	@out=$$($(GO) list -deps -f '{{.ImportPath}} {{join .Imports " "}}' ./cmd/herd | grep '^github.com/herd-project/' | \
		grep -E '^[^ ]*test[a-z]* |^[^ ]*/internal/test| testing( |$$)' | cut -d' ' -f1); \
	if [ -n "$$out" ]; then echo "herd links test code:"; echo "$$out"; exit 1; fi
	@# The API's wire types are its own: daemon/api imports nothing of the
	@# replicated state (cluster), the policy or the drivers, so a change to
	@# them cannot change the public API unseen (daemon/wire converts).
	@out=$$($(GO) list -deps ./daemon/api | grep -E '^github.com/herd-project/herd/(cluster|policy|drivers)(/|$$)'); \
	if [ -n "$$out" ]; then echo "daemon/api imports the state:"; echo "$$out"; exit 1; fi
	@# No package of ours is over $(MAX_PACKAGE_LINES) lines of non-test code
	@# (its .go files but the _test.go ones): a part that outgrows that gets a
	@# package of its own, with its arrows in docs/design.md.
	@out=$$($(GO) list -f '{{.Dir}}' ./... | while read -r d; do \
		n=$$(find "$$d" -maxdepth 1 -name '*.go' ! -name '*_test.go' -exec cat {} + | wc -l); \
		if [ "$$n" -gt $(MAX_PACKAGE_LINES) ]; then echo "$${d#$(CURDIR)/}: $$n lines"; fi; done); \
	if [ -n "$$out" ]; then echo "packages over $(MAX_PACKAGE_LINES) lines of non-test code:"; echo "$$out"; exit 1; fi

# The Debian packages whose programs the tests run: libvirtd, virsh and QEMU
# (libvirt fixture), prometheus, promtool and alertmanager, nft and ip (test
# bed), fence_dummy, systemd-analyze. test-deps installs the missing ones
# with apt-get when run as root; the tests themselves only look for the
# programs, skip without them, and fail under CI=true.
TEST_DEBS ?= libvirt-daemon libvirt-clients qemu-system-x86 prometheus prometheus-alertmanager nftables iproute2 fence-agents systemd
test-deps:
	@missing=$$(for p in $(TEST_DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q ' installed$$' || echo $$p; done); \
	missing=$$(echo $$missing); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "test-deps: missing Debian packages: $$missing (run make test-deps as root)"; \
		if [ "$$CI" = true ]; then echo "test-deps: under CI=true the tests that need them fail"; exit 1; fi; \
		echo "test-deps: the tests that need them skip"; exit 0; \
	fi; \
	echo "test-deps: installing $$missing"; \
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing

test: lint test-deps
	@# One package at a time: the libvirt and raft tests measure time on 2 cores.
	$(GO) test -count=1 -p 1 -timeout 15m ./...

# The multi-host test bed (root): network namespaces, real servers, agents
# and libvirtd, faults, invariants. E2E_RUNS runs the scenarios that many
# times; the report lands in bin/e2e-report.txt.
E2E_RUNS ?= 1
e2e: test-deps
	@mkdir -p bin
	@rm -rf bin/e2e-report.txt bin/e2e-logs
	E2E_REPORT=$(CURDIR)/bin/e2e-report.txt E2E_LOGS=$(CURDIR)/bin/e2e-logs $(GO) test -tags e2e -count=$(E2E_RUNS) -p 1 -timeout 30m -v -run TestScenarios ./e2e > bin/e2e.log 2>&1; \
	status=$$?; grep -E '^ *(--- |PASS|FAIL|ok)' bin/e2e.log; cat bin/e2e-report.txt 2>/dev/null; \
	if [ $$status -ne 0 ]; then grep -E '^ +[a-z_0-9]+\.go:[0-9]+: |^ *--- FAIL' bin/e2e.log | grep -v ' handler\.go:' | tail -150; echo "e2e failed: the whole log is bin/e2e.log"; fi; exit $$status

# Crash timing on the test bed: a host with 20 VMs, five times.
e2e-timing:
	@mkdir -p bin
	E2E_TIMING=1 E2E_REPORT=$(CURDIR)/bin/e2e-timing.txt $(GO) test -tags e2e -count=1 -timeout 30m -v -run TestCrashTiming ./e2e > bin/e2e-timing.log 2>&1; \
	status=$$?; grep -E '^ *(--- |PASS|FAIL|ok)|median' bin/e2e-timing.log; cat bin/e2e-timing.txt 2>/dev/null; exit $$status

# Benchmarks with their reported figures (ns/op and custom metrics).
bench:
	$(GO) test -run '^$$' -bench . -timeout 30m ./...

install: build
	install -D -m 0755 bin/herd $(DESTDIR)$(PREFIX)/bin/herd
	install -D -m 0644 systemd/herd-server.service $(DESTDIR)$(UNITDIR)/herd-server.service
	install -D -m 0644 systemd/herd-agent.service $(DESTDIR)$(UNITDIR)/herd-agent.service
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/herd
	@# Never overwrite an operator's config or policy.
	[ -e $(DESTDIR)$(SYSCONFDIR)/herd/herd.yaml ] || install -m 0640 configs/herd.yaml $(DESTDIR)$(SYSCONFDIR)/herd/herd.yaml
	[ -e $(DESTDIR)$(SYSCONFDIR)/herd/policy.yaml ] || install -m 0644 configs/policy.yaml $(DESTDIR)$(SYSCONFDIR)/herd/policy.yaml
	[ -e $(DESTDIR)$(SYSCONFDIR)/herd/agent.yaml ] || install -m 0640 configs/agent.yaml $(DESTDIR)$(SYSCONFDIR)/herd/agent.yaml
	install -d -m 0750 $(DESTDIR)/var/lib/herd

# Each fuzz target for FUZZTIME; what they find lands in testdata/fuzz/.
FUZZTIME ?= 60s
fuzz:
	cd daemon/httpapi && $(GO) test -run '^$$' -fuzz '^FuzzDecodeBody$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s .
	cd policy && $(GO) test -run '^$$' -fuzz '^FuzzPolicyParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s .
	cd cluster && $(GO) test -run '^$$' -fuzz '^FuzzDecodeCommand$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s .

clean:
	rm -rf bin
