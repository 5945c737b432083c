# Operator targets. Tools are pinned and installed into ./bin with go install.

CONTROLLER_GEN_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.8.2

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)

IMG ?= ghcr.io/counterd/counterd-operator:dev
COUNTERD_IMG ?= ghcr.io/counterd/counterd:dev
CONTAINER_TOOL ?= docker

.PHONY: all
all: build

##@ Development

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
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" go test ./api/... ./controllers/... $(TEST_ARGS)

# The lead's top-level Makefile owns `test`; this one runs the operator suites only.
.PHONY: test
test: test-operator

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

##@ Tools

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

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
