#!/usr/bin/env bash
# Fails when the committed CRD, RBAC and DeepCopy files differ from what
# `make manifests generate` produces, so a marker change cannot land without
# its generated output.
set -euo pipefail

cd "$(dirname "$0")/.."
make manifests generate
if ! git diff --exit-code -- api config; then
	echo "check-generated: generated files are stale; run 'make manifests generate' and commit the result" >&2
	exit 1
fi
untracked=$(git ls-files --others --exclude-standard -- api config)
if [[ -n "$untracked" ]]; then
	echo "check-generated: generated files are not committed:" >&2
	echo "$untracked" >&2
	exit 1
fi
