# Multi-stage build: dependencies compiled from the manifests alone (cached until Cargo.toml or
# Cargo.lock change), then the sources, then a slim Debian runtime as a non-root user.
# The build image must be at least the Rust version the locked dependencies need:
# scripts/check-toolchain checks it (and scripts/test runs that check).
FROM rust:1.95-bookworm AS build
WORKDIR /src

# Stage 1: dependencies only. Empty targets stand in for the sources so `cargo build` compiles
# every locked dependency; this layer is reused for every source change.
COPY Cargo.toml Cargo.lock ./
COPY loadtest/Cargo.toml loadtest/Cargo.toml
RUN mkdir -p src loadtest/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > loadtest/src/main.rs \
 && cargo build --release --locked -p understudy \
 && rm -rf src loadtest/src \
      target/release/understudy target/release/deps/understudy-* \
      target/release/deps/libunderstudy-* target/release/.fingerprint/understudy-*

# Stage 2: the sources.
COPY rustfmt.toml clippy.toml ./
COPY src ./src
COPY config ./config
COPY loadtest/src ./loadtest/src
RUN cargo build --release --locked -p understudy

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home understudy \
 && mkdir -p /var/lib/understudy/audit \
 && chown -R understudy:understudy /var/lib/understudy
COPY --from=build /src/target/release/understudy /usr/local/bin/understudy
COPY config /etc/understudy
USER understudy
# Listening on 0.0.0.0 is refused while a public development credential is in force (protected
# mode): a production start sets UNDERSTUDY_PUBLISHER_KEYS, UNDERSTUDY_SUBSCRIBER_SECRET and
# UNDERSTUDY_ADMIN_TOKEN (`understudy gen-secret` prints fresh ones); see the README.
ENV UNDERSTUDY_LISTEN=0.0.0.0:8080 \
    UNDERSTUDY_ADMIN_LISTEN=0.0.0.0:9090 \
    UNDERSTUDY_LOG_FORMAT=json \
    UNDERSTUDY_AUDIT_DIR=/var/lib/understudy/audit
# The audit trail outlives the container: mount a volume here.
VOLUME ["/var/lib/understudy"]
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["understudy", "healthcheck", "127.0.0.1:8080"]
ENTRYPOINT ["understudy"]
CMD ["serve", "--config", "/etc/understudy/understudy.toml"]
