# casetrail: a two-stage build. The builder compiles the release binary; the runtime image carries only the
# binary, on Debian slim, running as an unprivileged user with its data on a volume.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY tests tests
RUN cargo build --release --locked --bin casetrail

FROM debian:bookworm-slim
# /state and /keys: a node's own directory and the signing key's, when the log is on PostgreSQL (docker-compose.yml's
# `postgres` profile); named volumes mounted there start with these owners.
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin casetrail \
    && mkdir -p /data /state /keys && chown 10001 /data /state /keys
COPY --from=build /src/target/release/casetrail /usr/local/bin/casetrail
USER 10001
ENV CASETRAIL_DATA=/data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["casetrail", "probe", "--url", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["casetrail"]
# SIGTERM (docker stop) stops the server gracefully: no acknowledged event is lost.
STOPSIGNAL SIGTERM
CMD ["serve", "--listen", "0.0.0.0:8080"]
