#!/usr/bin/env bash
# Run once by the postgres image when it makes the primary's cluster (/docker-entrypoint-initdb.d): lets the
# standby of docker-compose.yml's `postgres` profile replicate from the compose network. A demonstration: trust
# authentication on a private network; a real deployment uses passwords or certificates (docs/scaling.md).
set -euo pipefail
echo "host replication all all trust" >> "$PGDATA/pg_hba.conf"
