#!/bin/sh
# Run once by the postgres image when the primary's data directory is created: a role for the replica's
# streaming, the line of pg_hba.conf that lets it in, and then, for the server's real start, the synchronous
# standby. (Set on the command line, it would make this script's own commits wait for a standby not there yet.)
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD 'replicator';
ALTER SYSTEM SET synchronous_standby_names = 'tally_replica';
SQL
echo "host replication replicator all scram-sha-256" >>"$PGDATA/pg_hba.conf"
