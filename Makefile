# The two commands a newcomer needs are `make demo` and `make test`.
GO ?= go
BIN := bin/convertro-etl

.PHONY: demo test vet build bench bench-scale fuzz soak clean emulators

demo: ## run the embedded sample export against the built-in simulator
	$(GO) run ./cmd/convertro-etl run

# The race detector needs cgo, and cgo a C compiler.
CC_FOUND := $(shell command -v $${CC:-cc} 2>/dev/null || command -v gcc 2>/dev/null)

# The storage emulators the tests start as processes, installed from the
# module proxy and the npm registry into .emulators/ (objstoretest finds them).
EMULATORS ?= .emulators
AZURITE_VERSION := 3.37.0
# The S3 server: versitygw, built outside this module (its dependencies are
# not ours), and only when the installed one is not this version (a build
# takes minutes).
VERSITYGW ?= v1.8.0
emulators: ## install the storage emulators the tests run: fake-gcs-server, versitygw (S3), Azurite
	$(GO) build -o $(EMULATORS)/bin/fake-gcs-server github.com/fsouza/fake-gcs-server
	@$(GO) version -m $(EMULATORS)/bin/versitygw 2>/dev/null | grep -qE 'mod[[:space:]]+github.com/versity/versitygw[[:space:]]+$(VERSITYGW)[[:space:]]' || \
	  { echo "installing versitygw $(VERSITYGW) into $(EMULATORS)/bin"; \
	    GOBIN=$(abspath $(EMULATORS))/bin $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW); }
	@grep -qs '"version": "$(AZURITE_VERSION)"' $(EMULATORS)/azurite/node_modules/azurite/package.json || \
	  npm install --prefix $(EMULATORS)/azurite azurite@$(AZURITE_VERSION) --no-audit --no-fund

test: emulators ## what CI runs: vet, then every test (fuzz seed corpora included) under the race detector
	$(GO) vet ./...
ifeq ($(CC_FOUND),)
	@echo "make test: WARNING: no C compiler (cc or gcc) on the PATH, and go test -race needs one (cgo);" >&2
	@echo "make test: running the tests WITHOUT the race detector. Install one (apt-get install gcc) to test as CI does." >&2
	$(GO) test -count=1 -timeout 25m ./...
else
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 25m ./...
endif

build:
	$(GO) build -o $(BIN) ./cmd/convertro-etl

bench: ## benchmarks, then the whole-job table (exports kept in BENCHDIR, default the user cache) (not in CI)
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) run ./internal/benchtable -go $(GO) $(if $(BENCHDIR),-work $(BENCHDIR))

bench-scale: ## the job at scale alone: a million row groups, 16 shards, resume, commit size, RSS over 43,800 objects (exports kept in BENCHDIR) (not in CI)
	$(GO) run ./internal/benchtable -go $(GO) -only e $(if $(BENCHDIR),-work $(BENCHDIR))

FUZZTIME ?= 30s
fuzz: ## each fuzz target for FUZZTIME (not in CI)
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

soak: ## SIGKILL a 300,000-row job 10 times against a misbehaving simulator, then check every request (not in CI; CI runs a small one)
	$(GO) test -run '^TestSoak$$' -count=1 -timeout 60m -v ./cmd/convertro-etl -args -soak.rows=300000 -soak.kills=10 -soak.max-rps=700

clean:
	rm -rf bin $(EMULATORS)
