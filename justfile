# Developer shortcuts; each delegates to cargo or `cargo xtask` (which works without `just`).
# Install just with `cargo install just` if you want these.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Without Docker: PostgreSQL, Kafka, a mail server and every service; Ctrl-C stops everything.
up *ARGS:
    cargo xtask up {{ARGS}}

# Stop everything `up`, `test` or `infra` started.
down:
    cargo xtask down

# Provision the infrastructure and run the whole test suite.
test *ARGS:
    cargo xtask test {{ARGS}}

# Format the code.
fmt:
    cargo fmt --all

# Formatting check and clippy with warnings as errors.
lint:
    cargo xtask lint

# Database migrations: `just migrate up`, `just migrate down [--all]`, `just migrate status`.
migrate *ARGS:
    cargo xtask migrate {{ARGS}}

# Write docs/openapi.json from the api's generated spec.
openapi:
    cargo xtask openapi

# Run the benchmarks.
bench *ARGS:
    cargo xtask bench {{ARGS}}

# Fuzz a live api with Schemathesis from docs/openapi.json (600 s unless `--duration N`).
fuzz-api *ARGS:
    cargo xtask fuzz-api {{ARGS}}

# (Tag: SEQ_IMAGE_TAG, default `dev`, as docker-compose.yml uses. Needs Docker; BuildKit or the legacy builder.)
# Build every service's image, tagged sequence-service/<service>:<tag>.
docker-build tag=env_var_or_default("SEQ_IMAGE_TAG", "dev"):
    #!/usr/bin/env bash
    set -euo pipefail
    for service in api scheduler sender-worker tracker inbox-watcher webhooks; do
        docker build -f deploy/docker/Dockerfile --target "$service" \
            -t "sequence-service/$service:{{tag}}" .
    done

# (Writes .env with generated secrets the first time; ARGS go to `docker compose up`.)
# Build and start everything in Docker (docker-compose.yml), e.g. `just compose-up --scale sender-worker=3`.
compose-up *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -f .env ]; then
        {
            echo "SEQ_ENCRYPTION_KEYS=1:$(openssl rand -base64 32)"
            echo "SEQ_TRACKING_KEYS=$(openssl rand -base64 32)"
            echo "SEQ_ADMIN_TOKEN=$(openssl rand -hex 24)"
        } > .env
        echo "wrote .env with generated secrets"
    fi
    docker compose up -d --build --wait {{ARGS}}

# Stop the Docker deployment (keeps volumes; `docker compose down -v` removes them).
compose-down:
    docker compose down

# Build and check every image with a Docker engine of our own (root, Debian; no registry needed).
containers:
    cargo xtask containers
