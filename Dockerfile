# syntax=docker/dockerfile:1
#
# dcs-key-exporter container image.
#
#   docker build -t dcs-key-exporter:0.1.0 --build-arg REVISION="$(git rev-parse --short HEAD)" .
#   docker run --rm --read-only -p 9797:9797 dcs-key-exporter:0.1.0 --demo
#
# Stage 1 builds a release binary with the Rust toolchain (glibc, linked dynamically against
# libc only: TLS is rustls with bundled root certificates, so no OpenSSL and no CA bundle are
# needed). Stage 2 is distroless "cc" (glibc, libgcc, no shell, no package manager) running as
# the unprivileged user 65532. The exporter writes no files, so the container runs with a
# read-only root filesystem (`--read-only`, or `readOnlyRootFilesystem: true` in Kubernetes).

# Any current stable toolchain; pin a minor version (e.g. 1.95) for reproducible builds.
ARG RUST_VERSION=1

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Without --build-arg REVISION the revision is "unknown" (the context has no .git).
ARG REVISION=
ENV DCS_EXPORTER_REVISION=${REVISION} \
    CARGO_TERM_COLOR=never
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin dcs-key-exporter \
    && install -D -m 0755 target/release/dcs-key-exporter /out/dcs-key-exporter

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="dcs-key-exporter" \
      org.opencontainers.image.description="Prometheus exporter for hot keys and big keys: Huawei Cloud DCS analyses and Redis/Valkey scans" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/dcs-key-exporter /usr/local/bin/dcs-key-exporter
USER 65532:65532
EXPOSE 9797
ENTRYPOINT ["/usr/local/bin/dcs-key-exporter"]
CMD ["--config.file=/etc/dcs-exporter/config.yaml"]
