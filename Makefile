# wsgate — see README.md. Every target works on a fresh clone.
GO        ?= go
PKGS      := ./...
# Fuzz budgets: a count, not a duration, for the short pass in make test: a
# duration-based -fuzztime can fail with "context deadline exceeded" on a
# loaded machine (a race in Go's fuzz coordinator, golang/go#75804, fixed in
# Go 1.27). make fuzz runs FUZZLONG per target.
FUZZTIME  ?= 30000x
FUZZLONG  ?= 2m
BIN       := bin

.PHONY: all build run test vet unit alloc js-test faults faults-short fuzz-short fuzz deps bench bench-full conformance lint clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

## run: start a working gateway on :8080 (admin on 127.0.0.1:9090, demo chat at /demo/) with live presence and history
run:
	$(GO) run ./cmd/gateway -dev -presence-events -history

## test: vet, race-enabled tests, allocation tests without -race, the JavaScript client's tests, the fault suite at reduced size, short fuzz runs (what CI runs)
test: deps vet unit alloc js-test faults-short fuzz-short

# A failed install is not fatal here: the browser tests then skip, saying so
# (CI sets BROWSERTEST_REQUIRE=1, which turns that skip into a failure).
deps:
	@bash scripts/install-deps.sh || echo "make: could not install Chromium or Node.js; the browser tests will skip, make js-test needs node and npm" >&2

vet:
	$(GO) vet $(PKGS)

# The fault suite (./faults) runs real gateway processes under load: it has
# its own targets, without -race (the race detector covers the unit tests).
unit:
	$(GO) test -race -count=1 -timeout 12m $$($(GO) list $(PKGS) | grep -v /faults)

## faults: the fault suite at full size (flood, service burst, NATS restarts, slow consumers); see docs/operations.md
faults:
	FAULTS_SIZE=full $(GO) test -count=1 -timeout 30m -v ./faults

## faults-short: the fault suite at reduced size (part of make test; under a minute once the gateway is built)
faults-short:
	FAULTS_SIZE=reduced $(GO) test -short -count=1 -timeout 8m -v ./faults

# The zero-allocation checks (Test*Allocs) skip under -race, where sync.Pool
# drops items on purpose; this pass runs them without it.
alloc:
	$(GO) test -count=1 -run 'Allocs' ./frame/... ./wire/... ./engine/... ./router/...

## js-test: the JavaScript client library (clients/js) with Node's test runner against a real gateway it builds; npm ci installs its test dependency (ws) from package-lock.json
js-test:
	cd clients/js && npm ci --no-audit --no-fund --loglevel=error && npm test

# Each fuzz target runs briefly so CI catches regressions in the parsers;
# `make fuzz FUZZLONG=5m` digs deeper.
fuzz-short:
	@for pkg in frame wire auth engine router router/natsbp; do \
		for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$pkg/*_test.go | sed 's/func //'); do \
			echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
			$(GO) test ./$$pkg/ -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) || exit 1; \
		done; done

fuzz:
	$(MAKE) fuzz-short FUZZTIME=$(FUZZLONG)

## bench: quick load comparison (< 5 min) of gateway vs nbio vs gorilla, results in bench/results/<timestamp>/
## (micro-benchmarks: go test -run='^$$' -bench=. -benchmem ./frame/ ./engine/). See docs/benchmarks.md.
BENCH_OUT ?= bench/results/$(shell date +%Y%m%d-%H%M%S)
BENCH_ARGS ?=
# uws is uWebSockets.js on Node.js (npm ci into the user cache folder on first
# use), gateway-1loop the gateway with -loops 1 (the same one loop as uWS).
# Optional peers: nbio-pool (nbio on its default handler pool, the earlier
# peer) and centrifugo (go-installed into the user cache folder on first use),
# e.g. make bench BENCH_TARGETS=gateway,gateway-1loop,uws,nbio,nbio-pool,gorilla,centrifugo
BENCH_TARGETS ?= gateway,gateway-1loop,uws,nbio,gorilla
# rounds of the whole comparison (medians and ranges in the tables)
BENCH_REPEAT ?= 1
bench:
	$(GO) build -o $(BIN)/wsbench ./cmd/wsbench
	$(BIN)/wsbench compare -targets $(BENCH_TARGETS) -out $(BENCH_OUT) -profile -repeat $(BENCH_REPEAT) \
		-scenarios idle,connect,echo,broadcast,reconnect,room \
		-idle.counts 0,2k,5k,10k -idle.settle 1s \
		-connect.conns 10000 \
		-echo.conns 1000 -echo.rate 20000 -echo.duration 5s \
		-broadcast.receivers 5000 -broadcast.rate 200 -broadcast.duration 5s -broadcast.drain 3s \
		-reconnect.conns 5000 \
		-room.receivers 5000 -room.rate 200 -room.duration 5s -room.drain 3s $(BENCH_ARGS)

## bench-full: every scenario at its default size (idle/connect 19k, echo 20k msg/s 10 s, broadcast 1M deliveries/s offered,
## reconnect 10k) plus the router scenarios (room vs raw, p2p, cross-instance, slow consumers), with gateway CPU profiles
bench-full:
	$(GO) build -o $(BIN)/wsbench ./cmd/wsbench
	$(BIN)/wsbench compare -targets $(BENCH_TARGETS) -out $(BENCH_OUT) -profile -repeat $(BENCH_REPEAT) \
		-scenarios idle,connect,echo,broadcast,reconnect,room,p2p,cross,slow $(BENCH_ARGS)

## conformance: Autobahn|Testsuite against gateway -echo (AUTOBAHN_DIR, see scripts/conformance.sh)
conformance:
	bash scripts/conformance.sh

lint: vet
	@! grep -rn 'fmt.Print' --include='*.go' frame wire auth engine router | grep -v _test.go || (echo "fmt.Print in library code"; exit 1)

clean:
	rm -rf $(BIN)
