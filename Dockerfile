# stormguard container image: docker build -t stormguard:latest .
# (the name deploy/kubernetes uses). Multi-stage: build with the Go toolchain,
# run on a slim Debian with CA certificates (valkeys:// TLS, webhooks).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Static binary: the runtime image needs no libc of a particular version.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/stormguard ./cmd/stormguard

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/stormguard /usr/local/bin/stormguard
# The agent's default HTTP port (dashboard, /metrics, API).
EXPOSE 9877
# Journal and defuse state; mount a volume here to keep them.
VOLUME ["/var/lib/stormguard"]
ENTRYPOINT ["/usr/local/bin/stormguard"]
CMD ["watch", "--http", "0.0.0.0:9877", "--journal", "/var/lib/stormguard"]
