# One image for every role; SERVICE_ROLE picks what a container runs.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
# The commit the image is built from (`prosaas --version`, health, metrics): the build context
# has no .git, so pass it: docker build --build-arg PROSAAS_COMMIT=$(git rev-parse --short=7 HEAD)
ARG PROSAAS_COMMIT=unknown
ENV PROSAAS_COMMIT=${PROSAAS_COMMIT}
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY config config
COPY tests tests
RUN cargo build --release --locked --bin prosaas

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin prosaas
COPY --from=build /src/target/release/prosaas /usr/local/bin/prosaas
# Call recordings (written by the calls role, finalized by workers: mount one volume in both).
RUN mkdir -p /var/lib/prosaas/recordings && chown -R 10001 /var/lib/prosaas
WORKDIR /var/lib/prosaas
USER 10001
ENV SERVICE_ROLE=all \
    PORT=8080 \
    PROSAAS__LOG__FORMAT=json \
    PROSAAS__RECORDINGS__DIR=/var/lib/prosaas/recordings
EXPOSE 8080
ENTRYPOINT ["prosaas"]
