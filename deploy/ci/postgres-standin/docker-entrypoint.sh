#!/bin/sh
# TEST STAND-IN entrypoint (see the Dockerfile): the official image's first-run behaviour for
# the variables docker-compose.yml sets, then `exec "$@"` as the postgres user.
set -eu

if [ "${1:-}" != postgres ]; then
    exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    user="${POSTGRES_USER:-postgres}"
    auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    password_file=
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        password_file="$(mktemp)"
        printf '%s\n' "$POSTGRES_PASSWORD" > "$password_file"
    elif [ "$auth" != trust ]; then
        echo "error: set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust" >&2
        exit 1
    fi
    initdb --username="$user" --auth-local=trust --auth-host="$auth" \
        ${password_file:+--pwfile="$password_file"} --encoding=UTF8 -D "$PGDATA" >/dev/null
    [ -z "$password_file" ] || rm -f "$password_file"
    echo "host all all all $auth" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    database="${POSTGRES_DB:-$user}"
    if [ "$database" != postgres ]; then
        echo "CREATE DATABASE \"$database\";" \
            | postgres --single -D "$PGDATA" -j postgres >/dev/null
    fi
    echo "stand-in: initialised $PGDATA (user $user, database $database, host auth $auth)"
fi

exec "$@"
