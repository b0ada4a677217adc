# Herd: `make dev` runs a single node on an embedded vSphere simulator;
# `make test` runs every test.
GO      ?= go
PREFIX  ?= /usr
DESTDIR ?=
SYSCONFDIR ?= /etc
UNITDIR ?= /lib/systemd/system
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build dev test bench lint install fuzz clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/herd ./cmd/herd

dev: build
	./bin/herd server -dev

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt: not formatted:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test: lint
	@# One package at a time: the libvirt and raft tests measure time on 2 cores.
	$(GO) test -count=1 -p 1 -timeout 15m ./...

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
	cd daemon && $(GO) test -run '^$$' -fuzz '^FuzzDecodeBody$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s .
	cd daemon && $(GO) test -run '^$$' -fuzz '^FuzzPolicyParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s .
	cd cluster && $(GO) test -run '^$$' -fuzz '^FuzzDecodeCommand$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s .

clean:
	rm -rf bin
