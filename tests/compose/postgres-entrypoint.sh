#!/bin/sh
# First start: a cluster whose superuser is $POSTGRES_USER with the password of
# $POSTGRES_PASSWORD_FILE, and the database $POSTGRES_DB; then PostgreSQL itself,
# answering on every address of the container with password authentication.
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin | head -1)
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -f "$PGDATA/.initialized" ]; then  # written last: a cut-short first start redoes it
    find "$PGDATA" -mindepth 1 -delete
    password=$(mktemp)
    cat "$POSTGRES_PASSWORD_FILE" > "$password"
    chown postgres "$password"
    runuser -u postgres -- "$bin/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$password" \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$password"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
    runuser -u postgres -- "$bin/psql" -q -h /run/postgresql -p 5432 -U "$POSTGRES_USER" -d postgres \
        -c "CREATE DATABASE \"$POSTGRES_DB\""
    runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" -w stop >/dev/null
    touch "$PGDATA/.initialized"
fi
exec runuser -u postgres -- "$bin/postgres" -D "$PGDATA"
