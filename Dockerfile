# syntax=docker/dockerfile:1
# Argon's two images from one multi-stage build:
#
#   docker build --target operator -t argon-operator:0.1.0 .
#   docker build --target sidecar  -t argon-sidecar:0.1.0 .
#
# (names and tags = the chart's defaults: <name>:<appVersion>). Each binary is
# linked statically against musl in the rust:alpine builder and copied into
# distroless/static (no shell, no package manager), run as the `nonroot`
# user 65532. Without Docker, tests/infra/images writes the same images
# (same path, user, entrypoint, ports) as OCI archives from release binaries.

FROM rust:1-alpine AS builder
# ring and zstd compile C; musl-dev provides the static libc.
RUN apk add --no-cache musl-dev gcc make
WORKDIR /src
COPY . .

FROM builder AS build-operator
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p argon-operator \
 && install -D -m 0755 target/release/argon-operator /out/argon-operator

FROM builder AS build-sidecar
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p argon-sidecar \
 && install -D -m 0755 target/release/argon-sidecar /out/argon-sidecar

FROM gcr.io/distroless/static-debian12:nonroot AS sidecar
COPY --from=build-sidecar /out/argon-sidecar /usr/local/bin/argon-sidecar
USER 65532:65532
# MongoDB wire protocol; /metrics /healthz /readyz.
EXPOSE 27017 9218
ENTRYPOINT ["/usr/local/bin/argon-sidecar"]
CMD ["serve"]

FROM gcr.io/distroless/static-debian12:nonroot AS operator
COPY --from=build-operator /out/argon-operator /usr/local/bin/argon-operator
USER 65532:65532
# /metrics /healthz /readyz; the admission webhook (TLS).
EXPOSE 8080 9443
ENTRYPOINT ["/usr/local/bin/argon-operator"]
CMD ["run"]
