#!/usr/bin/env bash
# The compose smoke test `cargo xtask containers` runs once the images and stand-ins are built,
# against its own Docker engine (DOCKER_HOST, with `docker compose` installed as a plugin
# under DOCKER_CONFIG): the stack as README's "Running with Docker" tells a user to start and
# use it, with the .env file given as $1. Leaves the stack removed (`down -v`) on every exit.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
env_file="$(realpath "${1:?usage: compose-smoke.sh ENV_FILE}")"
work="$(dirname "$env_file")"
deadline_seconds=120

compose() { docker compose --project-directory "$root" --env-file "$env_file" "$@"; }
say() { printf 'compose: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; compose ps --all >&2 || true; compose logs --tail 40 >&2 || true; exit 1; }
trap 'compose down -v --timeout 30 >/dev/null 2>&1 || say "down -v failed"' EXIT

# Polls `"$@"` (a command printing a value) until it prints something non-empty.
poll() {
    local what="$1"; shift
    local until=$((SECONDS + deadline_seconds)) value
    while true; do
        value="$("$@" 2>/dev/null || true)"
        if [ -n "$value" ]; then printf '%s' "$value"; return; fi
        [ "$SECONDS" -lt "$until" ] || fail "no $what within ${deadline_seconds} s"
        sleep 1
    done
}

# Every long-running service healthy, the migration exited 0.
check_health() {
    local expected_workers="$1" expected_webhooks="$2" line service state health
    while read -r service state health; do
        case "$service" in
            migrate) [ "$state" = exited ] || fail "migrate is $state" ;;
            *) [ "$state" = running ] && [ "$health" = healthy ] \
                || fail "$service is $state ${health:-without a healthcheck}" ;;
        esac
    done < <(compose ps --all --format '{{.Service}} {{.State}} {{.Health}}')
    [ "$(compose ps --all --format '{{.Service}} {{.ExitCode}}' | grep '^migrate ')" = "migrate 0" ] \
        || fail "migrate did not exit 0"
    for service in postgres kafka mailpit api scheduler tracker inbox-watcher; do
        [ "$(compose ps -q "$service" | wc -l)" = 1 ] || fail "$service is not running once"
    done
    [ "$(compose ps -q sender-worker | wc -l)" = "$expected_workers" ] \
        || fail "not $expected_workers sender workers"
    [ "$(compose ps -q webhooks | wc -l)" = "$expected_webhooks" ] \
        || fail "not $expected_webhooks webhooks replicas"
    say "every service healthy ($expected_workers sender-worker, $expected_webhooks webhooks)"
}

say "up --wait"
compose up -d --no-build --wait --wait-timeout 300 || fail "up --wait"
check_health 1 1

# Only loopback ports are published.
while read -r ports; do
    IFS=',' read -ra mappings <<< "$ports"
    for mapping in "${mappings[@]}"; do
        mapping="${mapping# }"
        case "$mapping" in
            *'->'*) [[ "$mapping" == 127.0.0.1:* ]] || fail "a port is published beyond loopback: $mapping" ;;
        esac
    done
done < <(docker ps --format '{{.Ports}}')
say "ports published on loopback only"

# As a user would: curl fails on any answer of the API that is not 2xx.
curl() { case "$*" in *'/api/v1/'*) command curl --fail-with-body "$@";; *) command curl "$@";; esac; }
api=http://127.0.0.1:8080/api/v1

# README's example for the compose stack, as written, from the directory of .env.
example="$(awk '
    /^<!-- docker compose example:/ { marked = 1; next }
    marked && /^```sh/ { inside = 1; next }
    inside && /^```/ { exit }
    inside { print }
' "$root/README.md")"
[ -n "$example" ] || fail "README.md has no docker compose example"
say "running README's docker compose example"
(cd "$work" && set -x && eval "$example") >&2 || fail "README's example"

# The seed's POST /api/v1/sequences body, as README's quick start sends it.
key="$(command curl -s -H "Authorization: Bearer $(sed -n 's/^SEQ_ADMIN_TOKEN=//p' "$env_file")" \
    -H 'Content-Type: application/json' "$api/workspaces" -d '{"name": "Seed"}' | jq -r .api_key.key)"
status="$(curl -s -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    "$api/sequences" -d '{"name": "Welcome Sequence", "open_tracking_enabled": true, "click_tracking_enabled": true, "steps": [{"step_order": 0, "subject": "Welcome!", "content": "Hi {name}, welcome!", "wait_days": 0}]}' \
    | jq -r .status)"
[ "$status" = draft ] || fail "the seed's sequence is $status, not a draft"
say "the seed's sequence body accepted"

# The example's email in Mailpit, and its tracked link redirecting through the tracker.
mailpit=http://127.0.0.1:58025/api/v1
first_message() { command curl -sf "$mailpit/messages" | jq -re '.messages[0].ID // empty'; }
id="$(poll "email in Mailpit" first_message)"
message="$(command curl -sf "$mailpit/message/$id")"
[ "$(jq -r '.Subject' <<< "$message")" = "Welcome!" ] || fail "unexpected email: $message"
[ "$(jq -r '.To[0].Address' <<< "$message")" = ada@example.com ] || fail "unexpected recipient"
link="$(jq -r .HTML <<< "$message" | grep -o 'href="http://localhost:8081/c/[^"]*"' | head -1 | cut -d'"' -f2)"
[ -n "$link" ] || fail "no tracked link in the email: $(jq -r .HTML <<< "$message")"
answer="$(command curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "$link")"
[ "$answer" = "302 https://example.com/guide" ] || fail "the tracked link answered $answer"
say "the email arrived in Mailpit; its tracked link answers $answer"

say "up --scale sender-worker=3 --scale webhooks=2"
compose up -d --no-build --wait --wait-timeout 300 --scale sender-worker=3 --scale webhooks=2 \
    || fail "up --scale sender-worker=3 --scale webhooks=2"
check_health 3 2

say "down -v"
compose down -v --timeout 30 || fail "down -v"
trap - EXIT
[ -z "$(compose ps --all -q)" ] || fail "containers left after down -v"
say "passed"
