# counterd and the CounterNamespace operator.
#
# make run-counterd  runs counterd standalone on the embedded store (./counterd-data, port 8080)
# make test          runs every test: unit, integration, crash, envtest and brief fuzzing
# make help          lists all targets

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

GO ?= go
BIN := $(CURDIR)/bin
# FUZZTIME is a count of inputs per fuzz target, not a duration: with a duration, Go 1.26's
# fuzzing can fail at the deadline with "context deadline exceeded" and no failing input.
FUZZTIME ?= 20000x

BUF_VERSION ?= v1.75.0
PROTOC_GEN_GO_VERSION ?= v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION ?= v1.21.1
CONTROLLER_GEN_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.8.2

LOCALBIN ?= $(BIN)
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)

IMG ?= ghcr.io/counterd/counterd-operator:dev
COUNTERD_IMG ?= ghcr.io/counterd/counterd:dev
CONTAINER_TOOL ?= docker

.PHONY: all
all: build counterd

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_-]+:.*##/ {printf "  %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Everything

.PHONY: test
test: test-counterd test-operator fuzz ## Run every test suite, then each fuzz target briefly.

##@ counterd

.PHONY: counterd
counterd: ## Build bin/counterd.
	$(GO) build -o $(BIN)/counterd ./counterd/cmd/counterd

.PHONY: run-counterd
run-counterd: ## Run counterd standalone on the embedded store.
	$(GO) run ./counterd/cmd/counterd serve

.PHONY: test-counterd
test-counterd: ## Run counterd's and the benchmark harness's tests (needs memcached on PATH for the cache suite).
	$(GO) test -count=1 ./counterd/... ./hack/...

.PHONY: fuzz
fuzz: ## Run each fuzz target on FUZZTIME inputs (default 20000x).
	$(GO) test -run='^$$' -fuzz='^FuzzValidateCounterName$$' -fuzztime=$(FUZZTIME) ./counterd/service
	$(GO) test -run='^$$' -fuzz='^FuzzMutate$$' -fuzztime=$(FUZZTIME) ./counterd/service
	$(GO) test -run='^$$' -fuzz='^FuzzJSONRequest$$' -fuzztime=$(FUZZTIME) ./counterd/server
	$(GO) test -run='^$$' -fuzz='^FuzzBatchDecode$$' -fuzztime=$(FUZZTIME) ./counterd/server

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

##@ Operator

.PHONY: manifests
manifests: controller-gen ## Generate the CRD, RBAC role and webhook manifests from the Go markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases

.PHONY: generate
generate: controller-gen ## Generate the DeepCopy methods of the API types.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: envtest
envtest: ## Build (or reuse) kube-apiserver and etcd for envtest and print their directory.
	@hack/setup-envtest.sh

.PHONY: test-operator
test-operator: ## Run the API and controller tests against a real kube-apiserver and etcd.
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" go test -count=1 ./api/... ./controllers/... $(TEST_ARGS)

.PHONY: check-generated
check-generated: ## Fail when the generated files differ from a fresh `make manifests generate`.
	hack/check-generated.sh

##@ Build

.PHONY: build
build: ## Build the manager binary into bin/manager.
	go build -o $(LOCALBIN)/manager .

.PHONY: run
run: manifests generate ## Run the manager against the cluster in the current kubeconfig.
	go run . --leader-elect=false --metrics-secure=false

.PHONY: docker-build
docker-build: ## Build the manager and counterd images.
	$(CONTAINER_TOOL) build --target manager -t $(IMG) .
	$(CONTAINER_TOOL) build --target counterd -t $(COUNTERD_IMG) .

##@ Deployment

.PHONY: install
install: manifests kustomize ## Install the CRD into the cluster in the current kubeconfig.
	$(KUSTOMIZE) build config/crd | kubectl apply --server-side -f -

.PHONY: uninstall
uninstall: manifests kustomize ## Remove the CRD, and with it every CounterNamespace.
	$(KUSTOMIZE) build config/crd | kubectl delete --ignore-not-found -f -

.PHONY: deploy
deploy: manifests kustomize ## Deploy the operator with the image IMG.
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build config/default | kubectl apply --server-side -f -

.PHONY: undeploy
undeploy: kustomize ## Remove the operator.
	$(KUSTOMIZE) build config/default | kubectl delete --ignore-not-found -f -

##@ Operator tools

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(LOCALBIN)/controller-gen $@

.PHONY: kustomize
kustomize: $(KUSTOMIZE)
$(KUSTOMIZE): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(LOCALBIN)/kustomize $@
