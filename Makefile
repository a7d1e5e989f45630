# The two commands a newcomer needs are `make demo` and `make test`.
GO ?= go
BIN := bin/convertro-etl

.PHONY: demo test vet build bench bench-gocloud bench-duckdb bench-scale cross fuzz soak clean emulators image-check

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

# make test vets with the race detector's build flags, so that the test
# build after it finds every dependency compiled, and cross-compiles (make
# cross) beside the tests, which leave a core idle much of the time: on two
# cores, each alone is minutes of cold compiling.
test: emulators ## what CI runs: vet, then every test (fuzz seed corpora included) under the race detector, beside vet for Windows and a build for macOS
ifeq ($(CC_FOUND),)
	@echo "make test: WARNING: no C compiler (cc or gcc) on the PATH, and go test -race needs one (cgo);" >&2
	@echo "make test: running the tests WITHOUT the race detector. Install one (apt-get install gcc) to test as CI does." >&2
	$(GO) vet ./...
	$(MAKE) --no-print-directory cross
	$(GO) test -count=1 -timeout 25m ./...
else
	CGO_ENABLED=1 $(GO) vet -race ./...
	@log=$$(mktemp); ( $(MAKE) --no-print-directory cross >$$log 2>&1 ) & cross=$$!; \
	  rc=0; CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 25m ./... || rc=$$?; \
	  if wait $$cross; then echo "make cross (vet for Windows, build for macOS): ok"; \
	  else cat $$log; echo "make test: make cross failed" >&2; rc=1; fi; rm -f $$log; exit $$rc
endif

build:
	$(GO) build -o $(BIN) ./cmd/convertro-etl

bench: emulators ## benchmarks, then the whole-job table (exports kept in BENCHDIR, default the user cache) (not in CI)
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) run ./internal/benchtable -go $(GO) $(if $(BENCHDIR),-work $(BENCHDIR))

# A module of its own (objstore/internal/gocloudbench), so that gocloud.dev
# stays out of go.mod; ./... above does not reach it. Its test (the
# conditional writes through gocloud) runs first, then the benchmark
# BENCHCOUNT times, each run a new process taking the ways of reading in
# the other order than the last.
BENCHCOUNT ?= 6
bench-gocloud: emulators ## objstore against gocloud.dev/blob on each emulator; pipe to benchstat -col /impl (not in CI)
	cd objstore/internal/gocloudbench && export CONVERTRO_ETL_EMULATORS=$(abspath $(EMULATORS)) && \
	  $(GO) test -count 1 . && $(GO) test -c -o gocloudbench.test . && \
	  for i in $$(seq $(BENCHCOUNT)); do \
	    ./gocloudbench.test -test.run '^$$' -test.bench . -test.benchmem -test.timeout 30m -reverse=$$((i % 2 == 0)) || exit 1; \
	  done; rm -f gocloudbench.test

# Another module of its own (internal/duckdbbench): the DuckDB driver
# needs cgo and carries a prebuilt libduckdb, so neither enters go.mod and
# ./... does not reach it. The first build compiles the driver (a minute
# or more). Its tests check that the sides read the same rows and that the
# whole job in SQL writes the dry run's lines, then the comparison runs
# once, alternating the sides DUCKDBREPS times.
DUCKDBREPS ?= 3
bench-duckdb: ## the dry run against DuckDB scanning the same columns and doing the whole job in SQL, on generated exports and a wide 41-column file (exports kept in BENCHDIR) (not in CI)
	cd internal/duckdbbench && export CGO_ENABLED=1 && \
	  $(GO) test -count 1 . && \
	  $(GO) run . -reps $(DUCKDBREPS) $(if $(BENCHDIR),-work $(abspath $(BENCHDIR)))

bench-scale: ## the job at scale alone: a million row groups, 16 shards, resume, commit size, RSS over 43,800 objects, the Indexed Job of 16 processes with kills (exports kept in BENCHDIR) (not in CI)
	$(GO) run ./internal/benchtable -go $(GO) -only ef $(if $(BENCHDIR),-work $(BENCHDIR))

# Windows and macOS: the module vets and builds there (Unix-only calls are
# behind build tags). Not in CI: cold, each is one more compile of every
# dependency, minutes on two cores.
cross: ## vet for Windows, build for macOS (make test does it too)
	GOOS=windows $(GO) vet ./...
	GOOS=darwin $(GO) build ./...

FUZZTIME ?= 30s
fuzz: ## each fuzz target for FUZZTIME (not in CI)
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

soak: ## SIGKILL a 300,000-row job 10 times against a misbehaving simulator, then check every request (not in CI; CI runs a small one)
	$(GO) test -run '^TestSoak$$' -count=1 -timeout 60m -v ./cmd/convertro-etl -args -soak.rows=300000 -soak.kills=10 -soak.max-rps=700

# What deploy/Dockerfile's image holds, checked without a container engine:
# the binary built as its build stage builds it, alone in a root with the CA
# certificates and /tmp, run as the image's user. chroot needs root. The
# root is made here, not by the Dockerfile's COPYs: TestDeployDockerfile
# checks those.
IMAGE_ROOT := bin/image-root
image-check: ## run the bundled sample with the image's static binary in an empty root as uid 65532 (needs root; not in CI)
	rm -rf $(IMAGE_ROOT) && mkdir -p $(IMAGE_ROOT)/etc/ssl/certs $(IMAGE_ROOT)/tmp && chmod 1777 $(IMAGE_ROOT)/tmp
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w -X main.version=image-check" -o $(IMAGE_ROOT)/convertro-etl ./cmd/convertro-etl
	cp /etc/ssl/certs/ca-certificates.crt $(IMAGE_ROOT)/etc/ssl/certs/
	chroot --userspec=65532:65532 $(IMAGE_ROOT) /convertro-etl run

clean:
	rm -rf bin $(EMULATORS)
