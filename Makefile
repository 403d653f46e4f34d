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

# fuzz runs the parser's fuzzer for FUZZTIME, then keeps the inputs it found
# interesting in protocol/testdata/fuzz/FuzzParse, where every `make test`
# replays them: the committed corpus grows from what the fuzzer finds.
FUZZCACHE = $(shell $(GO) env GOCACHE)/fuzz/github.com/objcache/objcache/protocol/FuzzParse
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./protocol/
	mkdir -p protocol/testdata/fuzz/FuzzParse
	if [ -d "$(FUZZCACHE)" ]; then cp -n "$(FUZZCACHE)"/* protocol/testdata/fuzz/FuzzParse/ 2>/dev/null || true; fi
	@echo "corpus: $$(ls protocol/testdata/fuzz/FuzzParse | wc -l) inputs in protocol/testdata/fuzz/FuzzParse"

bench: deps
	$(GO) test -run='^$$' -bench=. -benchmem $(PKGS)

lint:
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf bin
	$(GO) clean -testcache
