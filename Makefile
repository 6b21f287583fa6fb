# stormguard — see README.md. Targets: build build-glide test generate bench demo lint fuzz corpus.
GO        ?= go
BIN       := bin/stormguard
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
# Integration tests need root (network namespaces) and valkey-server.
# STORMGUARD_REQUIRE_INTEGRATION=1 turns their skips into failures (CI).
TESTFLAGS ?= -race -count=1 -timeout 20m

.PHONY: build build-glide test unit deps generate bench demo lint fuzz corpus clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/stormguard

## build-glide: bin/stormguard with the valkey-glide storm strategy (GLIDE's Go
## client links its Rust core through cgo: needs a C compiler)
build-glide:
	CGO_ENABLED=1 $(GO) build -tags glide -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/stormguard

deps:
	./scripts/install-deps.sh

## generate: rebuild the committed BPF objects and their Go bindings
## (internal/listentrace) with bpf2go; needs clang and libbpf headers, which
## only this target installs
generate:
	./scripts/install-deps.sh generate
	$(GO) generate ./internal/listentrace/...

## test: install what is missing, then unit, integration and fuzz-seed tests with -race
test: deps build
	$(GO) vet ./...
	CGO_ENABLED=1 $(GO) vet -tags glide ./internal/lab/... ./cmd/stormguard/...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	GOOS=darwin $(GO) build ./...
	$(GO) test $(TESTFLAGS) ./...
	# the fallback with eBPF turned off (~10 s): samples, a storm detected
	# through the sock_diag poller alone, a Valkey restart, errors.ebpf
	STORMGUARD_EBPF=0 $(GO) test -count=1 -timeout 5m \
	  -run '^(TestIntegrationEBPFFallback|TestIntegrationNoGapsDuringStorm|TestIntegrationSurvivesValkeyRestart|TestIntegrationSampleListenQueue)$$' \
	  ./internal/source/ ./internal/agent/ ./cmd/stormguard/
	# the Prometheus rules and their unit tests (deploys, per-request churn, fleet storms)
	promtool check rules deploy/prometheus/stormguard-rules.yml
	promtool test rules deploy/prometheus/*.test.yml
	# the valkey-glide strategy (build tag glide, cgo): its own tests only
	CGO_ENABLED=1 $(GO) test $(TESTFLAGS) -tags glide -run Glide ./internal/lab/... ./cmd/stormguard/...

## unit: tests that need neither root nor valkey-server
unit:
	$(GO) test -short -count=1 ./...

## bench: benchmarks and soaks (long); results go to docs/benchmarks.md by hand
bench: deps build
	./bench/run.sh

## demo: a throwaway Valkey in a private namespace, a storm, and stormguard watch catching it (≤ 60 s)
demo: deps build
	./scripts/demo.sh

## corpus: re-record the detector's scenario corpus into internal/corpus/testdata
## (root and valkey-server; about 15 minutes; make test replays the committed recordings)
corpus:
	$(GO) run ./internal/corpus/record -out internal/corpus/testdata

## lint: vet, gofmt, no function over 120 lines without a "funclen:"
## reason in its doc comment (scripts/funclen), and every relative link and
## #anchor in README.md and docs/ resolving (scripts/doclinks); make test
## checks both too, through their TestRepository
lint:
	$(GO) vet ./...
	CGO_ENABLED=1 $(GO) vet -tags glide ./internal/lab/... ./cmd/stormguard/...
	gofmt -l .
	$(GO) run ./scripts/funclen
	$(GO) run ./scripts/doclinks

## fuzz: run each fuzz target for FUZZTIME (default 20s)
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
