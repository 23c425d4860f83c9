# syntax=docker/dockerfile:1
# The sessionlog server image: `docker build -t sessionlog:latest .`
# See docs/deploy.md for running it and for the Kubernetes manifests.

# build.rs compiles proto/ with protox, so the builder needs no protoc.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The target dir is a cache mount (kept between builds, absent from the
# layer), so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sessionlog \
    && install -D -m 0755 target/release/sessionlog /out/sessionlog

# The same Debian release as the builder, so the binary finds the glibc it
# was linked against.
FROM debian:bookworm-slim
# A fixed uid/gid, so Kubernetes' runAsUser and fsGroup can name it; the
# volume dir is created here so a fresh Docker volume inherits its owner.
RUN groupadd --system --gid 65532 sessionlog \
    && useradd --system --no-log-init --uid 65532 --gid 65532 \
       --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin sessionlog \
    && install -d -o 65532 -g 65532 -m 0700 /var/lib/sessionlog \
    && install -d -o 65532 -g 65532 -m 0750 /run/sessionlog
# The client commands' https:// connections trust the system roots; copying
# the bundle avoids an apt layer in the runtime image.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/sessionlog /usr/local/bin/sessionlog
# The data dir is a subdirectory of the volume: the server refuses a dir
# holding files it did not write, such as a fresh filesystem's lost+found.
# The grace stays under Docker's default 10 s stop timeout, so the drain
# and the final flush finish before SIGKILL; raise both together.
ENV SESSIONLOG_LISTEN=0.0.0.0:50051 \
    SESSIONLOG_DATA_DIR=/var/lib/sessionlog/data \
    SESSIONLOG_LOG_FORMAT=json \
    SESSIONLOG_SHUTDOWN_GRACE=5s
VOLUME ["/var/lib/sessionlog"]
USER 65532:65532
EXPOSE 50051
# Health answers without a token. Plain http:// to loopback: with
# --tls-cert, add a unix: listener and point the check at it instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["sessionlog", "health", "--server", "http://127.0.0.1:50051"]
ENTRYPOINT ["sessionlog"]
CMD ["serve"]
