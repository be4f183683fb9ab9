# syntax=docker/dockerfile:1
# The keyrotor operator image (see docs/image.md).
# Build: docker build -t ghcr.io/keyrotor/keyrotor:dev .
# Without an engine: hack/image.sh builds the same image from this machine's
# build output; tests/image.rs checks that both agree.
#
# glibc build on Debian 12 (bookworm), run on distroless cc-debian12: the same
# Debian release on both sides, so the binary finds the glibc it was linked
# against; no shell, no package manager; a numeric non-root user.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The whole workspace: cargo reads every member's manifest (cloudflare-sim,
# testenv) even to build one binary, and --locked needs Cargo.lock.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    cargo build --release --locked --bin keyrotor

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="keyrotor" \
      org.opencontainers.image.description="Kubernetes operator that keeps Cloudflare Access signing-key rotation as AccessKeyPolicy objects say" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/release/keyrotor /keyrotor
USER 65532:65532
# /metrics, /healthz and /readyz: the default --metrics-address (0.0.0.0:8080)
# and the chart's metrics.port.
EXPOSE 8080
ENTRYPOINT ["/keyrotor"]
CMD ["run"]
