#!/usr/bin/env bash
# Runs the whole test suite: `go test -race ./...`, with OPA_BIN pointing at a real `opa`
# binary (the bundle tests load signed bundles with it). The first run builds opa into
# ./.bin (gitignored), which takes a few minutes; later runs reuse it.
#
# Usage: scripts/test.sh [go test flags...]     e.g. scripts/test.sh -count=1 -v
#
# Environment:
#   OPA_BIN       use this opa binary instead of building one
#   REQUIRE_RACE  when 1, fail instead of running without -race if cgo is unavailable
set -euo pipefail
cd "$(dirname "$0")/.."

# Keep in step with the github.com/open-policy-agent/opa version in go.mod.
OPA_VERSION=v1.22.2

if [[ -z "${OPA_BIN:-}" ]]; then
	OPA_BIN="$PWD/.bin/opa"
	if ! "$OPA_BIN" version 2>/dev/null | grep -qx "Version: ${OPA_VERSION#v}"; then
		echo "==> building opa ${OPA_VERSION} into .bin/ (first run only; takes a few minutes)"
		GOBIN="$PWD/.bin" go install "github.com/open-policy-agent/opa@${OPA_VERSION}"
	fi
fi
export OPA_BIN

# The race detector needs cgo, which needs a C compiler (gcc or clang).
race=-race
if [[ "$(go env CGO_ENABLED)" != 1 ]]; then
	if [[ "${REQUIRE_RACE:-0}" == 1 ]]; then
		echo "error: go test -race needs cgo (a C compiler such as gcc); install one or set CGO_ENABLED=1" >&2
		exit 1
	fi
	echo "warning: cgo is unavailable (no C compiler?), running the tests WITHOUT -race" >&2
	race=
fi

echo "==> go test ${race} ./... (OPA_BIN=${OPA_BIN})"
go test ${race} -timeout 20m "$@" ./...
