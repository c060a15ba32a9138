# syntax=docker/dockerfile:1
# The athenz-mesh image: one static binary (issuer, agent, authz, policy) on distroless.
#
#   docker build -t athenz-mesh:dev .
#   docker run --rm athenz-mesh:dev version
#
# The binary is built as scripts and docs build it (go build ./cmd/athenz-mesh), plus
# -trimpath and -ldflags "-s -w", which change neither behaviour nor `athenz-mesh version`:
# the version, revision and commit time come from the Go build information, which the Go
# toolchain stamps from the .git directory in the build context (so .dockerignore keeps it).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# CGO_ENABLED=0: a static binary (the SQLite driver is pure Go). -buildvcs=true fails the
# build instead of silently producing a binary that cannot say which commit it is.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOFLAGS=-buildvcs=true \
    go build -trimpath -ldflags "-s -w" -o /out/athenz-mesh ./cmd/athenz-mesh \
    && /out/athenz-mesh version \
    && mkdir -p /out/run/athenz-mesh

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="athenz-mesh" \
      org.opencontainers.image.description="Athenz service identity and authorization for Envoy and Istio: issuer, agent, authz and policy compiler in one binary" \
      org.opencontainers.image.source="https://github.com/athenz-mesh/athenz-mesh" \
      org.opencontainers.image.url="https://github.com/athenz-mesh/athenz-mesh" \
      org.opencontainers.image.documentation="https://github.com/athenz-mesh/athenz-mesh/tree/main/docs" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /out/athenz-mesh /athenz-mesh
# An empty directory the non-root user owns, for sockets and `athenz-mesh dev --dir`: a
# named volume mounted there starts with this owner (examples/envoy-compose).
COPY --from=build --chown=65532:65532 /out/run/athenz-mesh /run/athenz-mesh
# The nonroot user of distroless (65532:65532), which the Helm chart also runs as.
USER 65532:65532
ENTRYPOINT ["/athenz-mesh"]
CMD ["--help"]
