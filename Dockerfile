# casetrail: a two-stage build. The builder compiles the release binary; the runtime image carries only the
# binary, on Debian slim, running as an unprivileged user with its data on a volume.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY tests tests
RUN cargo build --release --locked --bin casetrail

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin casetrail \
    && mkdir -p /data && chown 10001 /data
COPY --from=build /src/target/release/casetrail /usr/local/bin/casetrail
USER 10001
ENV CASETRAIL_DATA=/data
VOLUME ["/data"]
ENTRYPOINT ["casetrail"]
# Until `casetrail serve` exists, the image's default job is the demo: fill the volume once, verify, describe.
CMD ["demo"]
