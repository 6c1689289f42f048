# Developer shortcuts; each delegates to cargo or `cargo xtask` (which works without `just`).
# Install just with `cargo install just` if you want these.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Start PostgreSQL, Kafka, the mail server and the four services; Ctrl-C stops everything.
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
