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
# The example configuration names the demo assertion issuer's public key set by a path relative
# to the working directory (config/demo-keys/...): the image has that file there, and no private
# key. The example configuration is a demonstration (its clients' secrets and the demo issuer's
# private key are in the repository): give the image a configuration of your own for real use.
COPY config/demo-keys/demo-idp.jwks.json /var/lib/ostiary/config/demo-keys/demo-idp.jwks.json
USER ostiary
WORKDIR /var/lib/ostiary
ENV OSTIARY_SERVER__LISTEN=0.0.0.0:8080 \
    OSTIARY_DATABASE__URL=sqlite:///var/lib/ostiary/ostiary.db \
    OSTIARY_KEYS__KEK_FILE=/var/lib/ostiary/ostiary.kek
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ostiary"]
CMD ["serve", "--config", "/etc/ostiary/config.toml"]
