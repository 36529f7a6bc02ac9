# tugboat container image: built with the pinned Rust toolchain, run as a fixed non-root UID
# on Debian slim with only what git2 (OpenSSL, zlib) and TLS need. No shell is used at run
# time: the HEALTHCHECK is `tugboat health`. The root filesystem can be read-only; the GitOps
# clone lives in /var/lib/tugboat (mount a volume or emptyDir there).

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, in their own layer: only Cargo.toml / Cargo.lock changes rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && for b in editor planning idle_cycle; do echo 'fn main() {}' > "benches/$b.rs"; done \
 && cargo build --release --locked --bin tugboat \
 && rm -rf src benches
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin tugboat \
 && cp target/release/tugboat /tugboat

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 tugboat \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/tugboat --shell /usr/sbin/nologin tugboat \
 && mkdir -p /var/lib/tugboat \
 && chown 10001:10001 /var/lib/tugboat
COPY --from=build /tugboat /usr/local/bin/tugboat
USER 10001:10001
WORKDIR /var/lib/tugboat
ENV TUGBOAT_CONFIG=/etc/tugboat/tugboat.toml
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/tugboat", "health"]
ENTRYPOINT ["/usr/local/bin/tugboat"]
CMD ["run"]
