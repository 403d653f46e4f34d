# objcache: `make test` is what CI runs (.ci/run).

GO        ?= go
FUZZTIME  ?= 60s
# -race doubles the suite's time; drop it (make test RACE=) if the suite
# outgrows ~10 minutes on 2 cores, and keep it in test-race.
RACE      ?= -race
TESTFLAGS ?= -count=1 -timeout=20m
PKGS      ?= ./...

.PHONY: all deps build run test test-race fuzz bench lint clean

all: build

deps:
	scripts/ensure-deps.sh

build:
	$(GO) build -o bin/objcache ./cmd/objcache

run: deps build
	scripts/devstack.sh

test: deps
	$(GO) vet $(PKGS)
	$(GO) test $(RACE) $(TESTFLAGS) $(PKGS)

test-race: deps
	$(GO) test -race $(TESTFLAGS) $(PKGS)

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./protocol/

bench: deps
	$(GO) test -run='^$$' -bench=. -benchmem $(PKGS)

lint:
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf bin
	$(GO) clean -testcache
