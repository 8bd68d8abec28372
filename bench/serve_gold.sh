# Sourced by the API benchmarks: builds the release host, checks the
# scale-S Gold that bench/silver_gold.sh leaves (or the one in $serve_dir,
# with its lake), and starts `host serve` on it (user analyst, a random
# password) on $port, logging to $1. Sets $host, $server (its pid), $base,
# $password and $token, and stops the server on exit.
cargo build --quiet --release -p medallion-host
host="$CARGO_TARGET_DIR/release/host"
serve_dir="${serve_dir:-$work}"
[ -f "$serve_dir/gold.db" ] || { echo "no $serve_dir/gold.db: run bench/silver_gold.sh $scale first" >&2; exit 1; }
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

password="bench-password-$RANDOM$RANDOM"
export MEDALLION_JWT_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n')"
export MEDALLION_ANALYST_HASH="$(echo "$password" | "$host" hash-password 2>/dev/null)"
"$host" serve pipeline.yaml --set "gold.store=sqlite:$serve_dir/gold.db" --set "lake=$serve_dir/lake" \
    --set "plugins.dir=$work/plugins" --listen "127.0.0.1:$port" > "$1" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do grep -q listening "$1" 2>/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port"
token="$(curl -s -d "username=analyst&password=$password" "$base/auth/login" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
