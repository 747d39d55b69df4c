# wsgate — see README.md. Every target works on a fresh clone.
GO        ?= go
PKGS      := ./...
FUZZTIME  ?= 10s
BIN       := bin

.PHONY: all build run test vet unit fuzz-short fuzz deps bench bench-full conformance lint clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

## run: start a working gateway on :8080 (admin on 127.0.0.1:9090)
run:
	$(GO) run ./cmd/gateway -dev

## test: vet, race-enabled tests, short fuzz runs (what CI runs)
test: deps vet unit fuzz-short

deps:
	@bash scripts/install-deps.sh

vet:
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 12m $(PKGS)

# Each fuzz target runs briefly so CI catches regressions in the parsers;
# `make fuzz FUZZTIME=5m` digs deeper.
fuzz-short:
	@for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' frame/*_test.go | sed 's/func //'); do \
		echo "fuzz frame $$t"; $(GO) test ./frame/ -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) || exit 1; done
	@for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' engine/*_test.go | sed 's/func //'); do \
		echo "fuzz engine $$t"; $(GO) test ./engine/ -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) || exit 1; done

fuzz:
	$(MAKE) fuzz-short FUZZTIME=$(FUZZTIME)

## bench: micro-benchmarks (allocations included)
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./frame/ ./engine/

## conformance: Autobahn|Testsuite against gateway -echo (AUTOBAHN_DIR, see scripts/conformance.sh)
conformance:
	bash scripts/conformance.sh

lint: vet
	@! grep -rn 'fmt.Print' --include='*.go' frame engine router | grep -v _test.go || (echo "fmt.Print in library code"; exit 1)

clean:
	rm -rf $(BIN)
