#!/usr/bin/env bash
# Runs the whole test suite: `go test -race ./...`, with OPA_BIN pointing at a real `opa`
# binary (the bundle tests load signed bundles with it). The first run builds opa into
# ./.bin (gitignored), which takes a few minutes; later runs reuse it.
#
# The first run also builds Athenz's own tools (zts-svccert, zts-rolecert, zts-accesstoken
# and zpe-updater, v1.12.13) into ./.bin; the issuer's integration tests run them against a
# live issuer and skip when their variables are unset.
#
# Usage: scripts/test.sh [go test flags...]     e.g. scripts/test.sh -count=1 -v
#
# Environment:
#   OPA_BIN       use this opa binary instead of building one
#   ATHENZ_ZTS_SVCCERT, ATHENZ_ZTS_ROLECERT, ATHENZ_ZTS_ACCESSTOKEN, ATHENZ_ZPE_UPDATER
#                 use these Athenz tool binaries instead of building them
#   ATHENZ_MESH_BIN  use this athenz-mesh binary for the end-to-end test of `dev` instead
#                 of the one built here (as the Dockerfile builds it)
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

# Keep in step with the github.com/AthenZ/athenz version in go.mod.
ATHENZ_VERSION=v1.12.13
athenz_stamp="$PWD/.bin/athenz-tools.version"
if [[ -z "${ATHENZ_ZTS_SVCCERT:-}" ]]; then
	if [[ "$(cat "$athenz_stamp" 2>/dev/null)" != "$ATHENZ_VERSION" ]]; then
		echo "==> building Athenz tools ${ATHENZ_VERSION} into .bin/ (first run only)"
		GOBIN="$PWD/.bin" go install \
			"github.com/AthenZ/athenz/utils/zts-svccert@${ATHENZ_VERSION}" \
			"github.com/AthenZ/athenz/utils/zts-rolecert@${ATHENZ_VERSION}" \
			"github.com/AthenZ/athenz/utils/zts-accesstoken@${ATHENZ_VERSION}" \
			"github.com/AthenZ/athenz/utils/zpe-updater/cmd/tools@${ATHENZ_VERSION}"
		# zpe-updater's main package is named "tools"; give the binary its real name.
		mv -f "$PWD/.bin/tools" "$PWD/.bin/zpe-updater"
		echo "$ATHENZ_VERSION" >"$athenz_stamp"
	fi
	export ATHENZ_ZTS_SVCCERT="$PWD/.bin/zts-svccert"
	export ATHENZ_ZTS_ROLECERT="$PWD/.bin/zts-rolecert"
	export ATHENZ_ZTS_ACCESSTOKEN="$PWD/.bin/zts-accesstoken"
	export ATHENZ_ZPE_UPDATER="$PWD/.bin/zpe-updater"
fi

# The end-to-end test of `athenz-mesh dev` runs the real binary, built exactly as the
# Dockerfile builds it (keep the flags in step).
if [[ -z "${ATHENZ_MESH_BIN:-}" ]]; then
	echo "==> building athenz-mesh into .bin/ (as the Dockerfile does)"
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$PWD/.bin/athenz-mesh" ./cmd/athenz-mesh
	export ATHENZ_MESH_BIN="$PWD/.bin/athenz-mesh"
fi

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
