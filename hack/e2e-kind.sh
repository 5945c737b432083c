#!/usr/bin/env bash
# End-to-end check on a kind cluster: builds the manager and counterd images, loads them into
# kind, deploys the operator and an Embedded CounterNamespace, and counts through the gateway.
#
# Needs docker, kind and kubectl on PATH (kind installs with
# `go install sigs.k8s.io/kind@v0.33.0`). It is not run in CI, which has no Docker engine.
#
# Environment:
#   KIND_CLUSTER   cluster name (default counterd-e2e); created when missing
#   KEEP_CLUSTER   set to 1 to keep a cluster this script created
#   E2E_TAG        image tag (default e2e)
set -euo pipefail

cd "$(dirname "$0")/.."

cluster=${KIND_CLUSTER:-counterd-e2e}
tag=${E2E_TAG:-e2e}
manager_image="counterd-operator:${tag}"
counterd_image="counterd:${tag}"
ns=counterd-e2e
local_port=18080

log() { echo "e2e-kind: $*" >&2; }

for tool in docker kind kubectl; do
	if ! command -v "$tool" >/dev/null; then
		log "$tool is not on PATH; install it first (kind: go install sigs.k8s.io/kind@v0.33.0)"
		exit 1
	fi
done

created=0
if ! kind get clusters | grep -qx "$cluster"; then
	log "creating kind cluster $cluster"
	kind create cluster --name "$cluster" --wait 2m
	created=1
fi
port_forward_pid=""
cleanup() {
	if [[ -n "$port_forward_pid" ]]; then
		kill "$port_forward_pid" 2>/dev/null || true
	fi
	if [[ "$created" == 1 && "${KEEP_CLUSTER:-0}" != 1 ]]; then
		log "deleting kind cluster $cluster"
		kind delete cluster --name "$cluster"
	fi
}
trap cleanup EXIT
kubectl config use-context "kind-$cluster" >/dev/null

log "building images"
docker build --target manager -t "$manager_image" .
docker build --target counterd -t "$counterd_image" .
kind load docker-image --name "$cluster" "$manager_image" "$counterd_image"

log "deploying the operator"
make --no-print-directory kustomize >/dev/null
kustomize=$(ls bin/kustomize-* | head -n 1)
"$kustomize" build config/default |
	sed "s#ghcr.io/counterd/counterd-operator:dev#${manager_image}#" |
	kubectl apply --server-side -f -
kubectl -n counterd-system rollout status deployment/counterd-operator-controller-manager --timeout=3m

log "creating an Embedded CounterNamespace"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$ns" apply -f - <<YAML
apiVersion: counter.counterd.dev/v1alpha1
kind: CounterNamespace
metadata:
  name: plays
spec:
  store:
    type: Embedded
  image: ${counterd_image}
  deletionPolicy: Delete
YAML
kubectl -n "$ns" wait counternamespace/plays --for=condition=Ready --timeout=5m
kubectl -n "$ns" get counternamespace plays

log "counting through the gateway"
kubectl -n "$ns" port-forward --address 127.0.0.1 service/plays-gateway "${local_port}:8080" >/dev/null &
port_forward_pid=$!
for _ in $(seq 1 50); do
	if curl -fsS "http://127.0.0.1:${local_port}/readyz" >/dev/null 2>&1; then
		break
	fi
	sleep 0.2
done

call() { # method json
	curl -fsS -X POST -H 'Content-Type: application/json' \
		--data "$2" "http://127.0.0.1:${local_port}/counter.v1.CounterService/$1"
}

want=10
for i in $(seq 1 "$want"); do
	call AddCount "{\"namespace\":\"plays\",\"counterName\":\"e2e\",\"delta\":1,\"idempotencyToken\":{\"token\":\"e2e-$i\"}}" >/dev/null
done
# A retry with a used token must not count again.
call AddCount '{"namespace":"plays","counterName":"e2e","delta":1,"idempotencyToken":{"token":"e2e-1"}}' >/dev/null

# EventuallyConsistent reads trail writes by the accept limit plus the skew margin.
count=""
for _ in $(seq 1 60); do
	count=$(call GetCount '{"namespace":"plays","counterName":"e2e"}' | sed -n 's/.*"count":"\{0,1\}\([0-9]*\)"\{0,1\}.*/\1/p')
	if [[ "$count" == "$want" ]]; then
		log "PASS: counter e2e reads $count after $want adds and one retried add"
		exit 0
	fi
	sleep 1
done
log "FAIL: counter e2e reads '${count}', want $want"
kubectl -n "$ns" get counternamespace plays -o yaml >&2
exit 1
