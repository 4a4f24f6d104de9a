#!/usr/bin/env bash
# The standby of docker-compose.yml's `postgres` profile: on first start, a copy of the primary made with
# pg_basebackup (a replication slot of its own, standby.signal written by -R) under the name `standby`, which the
# primary's synchronous_standby_names waits for; then the server, as the postgres image runs it.
set -euo pipefail
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h db -U postgres -q; do sleep 1; done
  pg_basebackup -h db -U postgres -D "$PGDATA" -c fast -X stream -C -S standby -R
  echo "primary_conninfo = 'host=db user=postgres application_name=standby'" >> "$PGDATA/postgresql.auto.conf"
  echo "synchronous_standby_names = ''" >> "$PGDATA/postgresql.auto.conf"
  chmod 0700 "$PGDATA"
fi
exec postgres
