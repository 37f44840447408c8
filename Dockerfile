# Multi-stage build: compile in the Rust image, run as a non-root user in a slim Debian image.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY migrations migrations
COPY templates templates
RUN cargo build --release --locked && cp target/release/ostiary /ostiary

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/ostiary --create-home ostiary
COPY --from=build /ostiary /usr/local/bin/ostiary
COPY config/example.toml /etc/ostiary/config.toml
# The example configuration names the demo assertion issuer's key set by a path relative to the
# working directory (config/demo-keys/...): the image has it there.
COPY config/demo-keys /var/lib/ostiary/config/demo-keys
USER ostiary
WORKDIR /var/lib/ostiary
ENV OSTIARY_SERVER__LISTEN=0.0.0.0:8080 \
    OSTIARY_DATABASE__URL=sqlite:///var/lib/ostiary/ostiary.db \
    OSTIARY_KEYS__KEK_FILE=/var/lib/ostiary/ostiary.kek
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ostiary"]
CMD ["serve", "--config", "/etc/ostiary/config.toml"]
