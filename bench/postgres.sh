# Sourced by the benchmarks that need a PostgreSQL of their own:
# `start_postgres` runs Debian's server from a temporary folder on
# loopback, on a free port (as the postgres user when root: PostgreSQL
# refuses root), user `medallion` trusted, stopped and removed on exit.
# It sets pg_bin, pg_dir and port.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_postgres() {
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    pg_dir=$(mktemp -d /tmp/medallion-bench-pg.XXXX)
    [ "$(id -u)" = 0 ] && chown postgres "$pg_dir"
    as_pg "$pg_bin/initdb" -A trust -U medallion --no-sync -D "$pg_dir/data" >/dev/null
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1" -w start >/dev/null
    trap 'as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null; rm -rf "$pg_dir"' EXIT
}
