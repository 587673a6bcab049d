# syntax=docker/dockerfile:1
# One image with Tally's three services; docker-compose.yml picks the one to run with `command:`.

# ---- build ----------------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# sqlx's compile-time checked queries, if any, read the committed .sqlx/ data: there is no database here.
ENV SQLX_OFFLINE=true CARGO_TERM_COLOR=never

# Dependencies first, against stub sources, so that a change to Tally's own code reuses this layer.
COPY Cargo.toml Cargo.lock ./
COPY shared/Cargo.toml shared/
COPY edge/Cargo.toml edge/
COPY command-service/Cargo.toml command-service/
COPY projector/Cargo.toml projector/
COPY query-service/Cargo.toml query-service/
COPY bench/Cargo.toml bench/
COPY audit/Cargo.toml audit/
COPY drill/Cargo.toml drill/
# A crate whose manifest names targets the stubs lack only loses this cache; the full build below still runs.
RUN for crate in shared edge command-service projector query-service bench audit drill; do \
        mkdir -p "$crate/src" && touch "$crate/src/lib.rs" && echo 'fn main() {}' > "$crate/src/main.rs"; \
    done \
    && (cargo build --release --locked -p command-service -p projector -p query-service \
        || echo "warning: dependency pre-build failed; the full build compiles them instead") \
    && rm -rf shared/src edge/src command-service/src projector/src query-service/src bench/src audit/src drill/src

# Tally itself. The sources are touched because the stubs' build is newer than their modification times.
COPY . .
RUN find shared edge command-service projector query-service bench audit drill -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p command-service -p projector -p query-service -p tally-audit \
    && mkdir -p /out \
    && cp target/release/command-service target/release/projector target/release/query-service \
          target/release/tally-audit /out/

# ---- run ------------------------------------------------------------------------------------------
FROM debian:bookworm-slim
# curl serves the compose healthchecks (GET /health/ready).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tally
COPY --from=builder /out/ /usr/local/bin/
USER tally
# The binaries default to 127.0.0.1, which no other container can reach. mimalloc gives freed memory
# back at once rather than after a second, and uses no transparent huge pages (scripts/lib.sh says why).
ENV LISTEN_ADDR=0.0.0.0:8080 RUST_LOG=info MIMALLOC_PURGE_DELAY=0 MIMALLOC_ALLOW_THP=0
EXPOSE 8080 8081 8082
CMD ["command-service"]
