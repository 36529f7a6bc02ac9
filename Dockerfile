# tugboat container image: built with the pinned Rust toolchain, run as a fixed non-root UID
# on a distroless base (glibc, libgcc, CA certificates, tzdata: no shell, no package manager).
# git's HTTPS goes through rustls like every other connection, and zlib is linked in, so the
# binary needs nothing else. The HEALTHCHECK is `tugboat health` (exec form: there is no shell
# to run it). The root filesystem can be read-only; the GitOps clone lives in /var/lib/tugboat
# (mount a volume or emptyDir there).
#
# The test command builds this file unmodified with buildah (scripts/test-image) and runs the
# image; the container workflow builds it with Docker against the real base images.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
# cargo-chef derives the dependency layer from the manifest (every declared target gets its
# skeleton: no hand-written stubs to drift); cargo-auditable embeds the crate list in the
# binary, so image scanners (Trivy, grype, `cargo audit bin`) see every crate version.
RUN cargo install --locked --version 0.1.78 cargo-chef \
 && cargo install --locked --version 0.7.7 cargo-auditable
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
# Dependencies first, in their own layer: it is rebuilt only when the recipe (the manifests
# and Cargo.lock) changes.
COPY --from=planner /src/recipe.json recipe.json
# Without the default `sandbox` feature: the image carries no stand-ins (`tugboat demo` and
# `tugboat sandbox` are for a clone), only the code a production daemon runs.
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin tugboat --no-default-features
COPY . .
# The crate roots (the binary's and every workspace library's) are touched so that cargo
# never takes the skeleton's build for the source's.
RUN touch src/main.rs crates/core/src/lib.rs crates/daemon/src/lib.rs crates/sandbox/src/lib.rs \
 && cargo auditable build --release --locked --bin tugboat --no-default-features \
 && cp target/release/tugboat /tugboat \
 && mkdir -p /home-dir

# Nothing runs in this stage (there is no shell): it only receives files. The working
# directory comes from the build stage, owned by the user tugboat runs as.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /tugboat /usr/local/bin/tugboat
COPY --from=build --chown=10001:10001 /home-dir /var/lib/tugboat
USER 10001:10001
WORKDIR /var/lib/tugboat
# The uid has no /etc/passwd entry: HOME says where its home is (libgit2 reads it).
ENV HOME=/var/lib/tugboat
ENV TUGBOAT_CONFIG=/etc/tugboat/tugboat.toml
# glibc gives each thread that allocates an arena of its own (up to 8 per core), each keeping
# its freed memory: half a MiB of a 20 MiB daemon that waits on the network. Two suffice.
ENV MALLOC_ARENA_MAX=2
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/tugboat", "health"]
ENTRYPOINT ["/usr/local/bin/tugboat"]
CMD ["run"]
