# syntax=docker/dockerfile:1
#
# One image with the three relaygate binaries: gateway (the default
# entrypoint), listener and relay-emulator. docker-compose.yml picks the
# binary per service with `entrypoint`.
#
#   docker build -t relaygate .
#   docker run --rm -p 8080:8080 -e GATEWAY_API_KEYS=change-me-to-a-long-random-key \
#     -e GATEWAY_CONNECTION_STRING='Endpoint=sb://…' relaygate
#   curl -H 'Authorization: Bearer change-me-to-a-long-random-key' \
#     -H 'Content-Type: application/json' -d '{"message":"hi"}' http://127.0.0.1:8080/messages
#   docker run --rm --entrypoint /usr/local/bin/listener relaygate -h
#
# The image listens on 0.0.0.0:8080 (GATEWAY_ADDR below): a gateway bound to
# the container's 127.0.0.1 cannot be reached through a published port. The
# safe-bind rule still holds: on a non-loopback address the gateway refuses to
# start without GATEWAY_API_KEYS, since anyone who reaches it could send
# messages and mint relay tokens. To try it without keys (local mode: no
# credentials, in-process emulator), publish on the host's loopback only and
# opt out explicitly; the gateway then logs a WARN line at start:
#
#   docker run --rm -p 127.0.0.1:8080:8080 -e GATEWAY_ALLOW_INSECURE_BIND=true relaygate
#
# internal/deploy's Dockerfile test runs the gateway with the ENV lines below
# and checks each of these three cases.

# ---- build: static binaries (CGO off, so no libc in the final image) ------
ARG GO_VERSION=1.26.8
FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Module downloads first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# TARGETOS/TARGETARCH are set by BuildKit (docker buildx --platform …), so
# the Go cross-compiler builds for the target without emulation.
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /out/ \
      ./cmd/gateway ./cmd/listener ./cmd/relay-emulator

# ---- run: distroless static, non-root ------------------------------------
# Why distroless/static rather than scratch: it is as small (~2 MB, no shell,
# no package manager) but ships what scratch would need copied in by hand:
# CA certificates (the gateway and listener dial wss://*.servicebus.windows.net),
# tzdata, and an /etc/passwd with the unprivileged user "nonroot" (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gateway /out/listener /out/relay-emulator /usr/local/bin/
USER nonroot:nonroot
# Every interface of the container, so a published port reaches it (API keys
# required, see above). The emulator's address is set in docker-compose.yml.
ENV GATEWAY_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gateway"]
