# Multi-stage build: compile in the Rust image, run from a slim Debian image as a non-root user.
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
COPY src ./src
COPY config ./config
COPY loadtest ./loadtest
RUN cargo build --release --locked -p understudy

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home understudy
COPY --from=build /src/target/release/understudy /usr/local/bin/understudy
COPY config /etc/understudy
USER understudy
ENV UNDERSTUDY_LISTEN=0.0.0.0:8080 \
    UNDERSTUDY_ADMIN_LISTEN=0.0.0.0:9090 \
    UNDERSTUDY_LOG_FORMAT=json
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["understudy", "healthcheck", "127.0.0.1:8080"]
ENTRYPOINT ["understudy"]
CMD ["serve", "--config", "/etc/understudy/understudy.toml"]
