#!/usr/bin/env bash
# Builds the kube-apiserver and etcd binaries that envtest runs, from Go
# modules, and prints the directory holding them (the KUBEBUILDER_ASSETS
# value) as the only line on stdout. Progress goes to stderr.
#
# Prebuilt envtest archives are not always downloadable, so the binaries are
# compiled: kube-apiserver from k8s.io/kubernetes with every staging module
# replaced by its published version, etcd from go.etcd.io/etcd/server/v3.
# The result is cached outside the clone, keyed by the versions, so a fresh
# clone on the same machine reuses it. The first build takes 5 to 10 minutes on
# two cores, depending on what the Go build cache already holds; later calls
# return at once.
#
# Environment:
#   ENVTEST_K8S_VERSION   kube-apiserver version (default 1.37.2)
#   ENVTEST_ETCD_VERSION  etcd version (default 3.6.16)
#   ENVTEST_CACHE_DIR     cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/counterd-envtest)
set -euo pipefail

exec 3>&1 1>&2

k8s_version=${ENVTEST_K8S_VERSION:-1.37.2}
etcd_version=${ENVTEST_ETCD_VERSION:-3.6.16}
cache_root=${ENVTEST_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/counterd-envtest}
goos=$(go env GOOS)
goarch=$(go env GOARCH)
dir="$cache_root/k8s-${k8s_version}-etcd-${etcd_version}-${goos}-${goarch}"

log() { echo "setup-envtest: $*"; }

if [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" ]]; then
	echo "$dir" >&3
	exit 0
fi

mkdir -p "$cache_root"
# One builder at a time; a second caller waits, then finds the cache filled.
exec 9>"$cache_root/.lock"
if command -v flock >/dev/null; then
	log "waiting for the cache lock"
	flock 9
fi
if [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" ]]; then
	echo "$dir" >&3
	exit 0
fi

work=$(mktemp -d "$cache_root/build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Build outside any module or workspace of the caller.
export GOWORK=off GOFLAGS=-mod=mod

k8s_minor=${k8s_version#*.}
k8s_minor=${k8s_minor%%.*}
k8s_major=${k8s_version%%.*}
staging_version="v0.${k8s_minor}.${k8s_version##*.}"

log "building kube-apiserver v${k8s_version} (staging modules at ${staging_version})"
mkdir -p "$work/apiserver"
(
	cd "$work/apiserver"
	go mod init counterd.dev/envtest/apiserver
	gomod=$(go mod download -json "k8s.io/kubernetes@v${k8s_version}" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
	if [[ -z "$gomod" || ! -f "$gomod" ]]; then
		log "could not download the go.mod of k8s.io/kubernetes@v${k8s_version}"
		exit 1
	fi
	# Every "k8s.io/x => ./staging/src/k8s.io/x" line becomes a replace by
	# the published module at the matching staging version.
	staging=$(sed -n 's|^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*$|\1|p' "$gomod")
	if [[ -z "$staging" ]]; then
		log "no staging replace directives found in $gomod"
		exit 1
	fi
	n=0
	for m in $staging; do
		go mod edit -replace "$m=$m@$staging_version"
		n=$((n + 1))
	done
	log "replaced $n staging modules"
	go get "k8s.io/kubernetes/cmd/kube-apiserver@v${k8s_version}"
	ldflags="-X k8s.io/component-base/version.gitVersion=v${k8s_version}"
	ldflags+=" -X k8s.io/component-base/version.gitMajor=${k8s_major}"
	ldflags+=" -X k8s.io/component-base/version.gitMinor=${k8s_minor}"
	ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
	go build -trimpath -ldflags "$ldflags" -o "$work/out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
)

log "building etcd v${etcd_version}"
mkdir -p "$work/etcd"
(
	cd "$work/etcd"
	go mod init counterd.dev/envtest/etcd
	go get "go.etcd.io/etcd/server/v3@v${etcd_version}"
	go build -trimpath -o "$work/out/etcd" go.etcd.io/etcd/server/v3
)

"$work/out/kube-apiserver" --version
"$work/out/etcd" --version | head -n 1

rm -rf "$dir"
mv "$work/out" "$dir"
log "cached in $dir"
echo "$dir" >&3
