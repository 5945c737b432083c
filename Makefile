# counterd and the CounterNamespace operator.
#
# make run       runs counterd standalone on the embedded store (./counterd-data, port 8080)
# make test      runs every test: unit, integration, crash, envtest and brief fuzzing
# make help      lists all targets

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

GO ?= go
BIN := $(CURDIR)/bin
FUZZTIME ?= 10s

BUF_VERSION ?= v1.75.0
PROTOC_GEN_GO_VERSION ?= v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION ?= v1.21.1

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_-]+:.*##/ {printf "  %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ counterd

.PHONY: counterd
counterd: ## Build bin/counterd.
	$(GO) build -o $(BIN)/counterd ./counterd/cmd/counterd

.PHONY: run-counterd
run-counterd: ## Run counterd standalone on the embedded store.
	$(GO) run ./counterd/cmd/counterd serve

.PHONY: test-counterd
test-counterd: ## Run counterd's tests (needs memcached on PATH for the cache suite).
	$(GO) test -count=1 ./counterd/...

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 10s).
	$(GO) test -run='^$$' -fuzz='^FuzzValidateCounterName$$' -fuzztime=$(FUZZTIME) ./counterd/service
	$(GO) test -run='^$$' -fuzz='^FuzzMutate$$' -fuzztime=$(FUZZTIME) ./counterd/service
	$(GO) test -run='^$$' -fuzz='^FuzzJSONRequest$$' -fuzztime=$(FUZZTIME) ./counterd/server

.PHONY: proto
proto: buf protoc-gen-go protoc-gen-connect-go ## Regenerate the API code from counterd/proto.
	cd counterd && PATH=$(BIN):$$PATH $(BIN)/buf lint && PATH=$(BIN):$$PATH $(BIN)/buf generate

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

##@ Tools (installed into ./bin with go install)

.PHONY: buf protoc-gen-go protoc-gen-connect-go
buf: $(BIN)/buf
protoc-gen-go: $(BIN)/protoc-gen-go
protoc-gen-connect-go: $(BIN)/protoc-gen-connect-go
$(BIN)/buf:
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-connect-go:
	GOBIN=$(BIN) $(GO) install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(PROTOC_GEN_CONNECT_GO_VERSION)
