# syntax=docker/dockerfile:1
# extauthz container image: a static binary on distroless, running as nonroot.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t extauthz .
#   docker run --rm -v $PWD/examples/envoy/extauthz.yaml:/etc/extauthz/extauthz.yaml:ro extauthz

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/extauthz ./cmd/extauthz

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="extauthz" \
      org.opencontainers.image.description="Rate limiting for Envoy: RateLimitService v3 and ext_authz v3" \
      org.opencontainers.image.source="https://github.com/extauthz/extauthz" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/extauthz /extauthz
USER 65532:65532
# 8081: gRPC (RateLimitService, ext_authz); 8080: /healthz, /readyz, /metrics.
EXPOSE 8081 8080
ENTRYPOINT ["/extauthz"]
CMD ["serve", "--config", "/etc/extauthz/extauthz.yaml"]
