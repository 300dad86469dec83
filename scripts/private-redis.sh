# Sourced by the bench scripts (ab.sh, bench.sh, peer-*.sh): starts a redis-server of this
# script's own on a free loopback port, nothing saved, and stops it on exit; sets `port` (and
# `dir`, a scratch directory removed on exit). Never touches a Redis it did not start.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --logfile "$dir/log" --daemonize yes
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
