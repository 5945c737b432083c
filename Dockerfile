# syntax=docker/dockerfile:1
# Builds two images from one module:
#   docker build --target manager  -t counterd-operator .
#   docker build --target counterd -t counterd .
# Both run as the distroless nonroot user (UID 65532), which the operator's pod
# security context also sets.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS source
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .

# One build stage per binary, so building one target does not compile the other.
FROM source AS build-manager
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags="-s -w" -o /out/manager .

FROM source AS build-counterd
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags="-s -w" -o /out/counterd ./counterd/cmd/counterd

FROM gcr.io/distroless/static-debian12:nonroot AS manager
COPY --from=build-manager /out/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]

FROM gcr.io/distroless/static-debian12:nonroot AS counterd
COPY --from=build-counterd /out/counterd /counterd
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/counterd"]
