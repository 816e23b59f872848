#!/usr/bin/env bash
# A 3-node RabbitMQ cluster beside the system broker, on loopback, for the
# cluster tests and benchmarks (issue: Sundial on a 3-node cluster).
#
#   tests/cluster/cluster.sh up            # start sd1..sd3 (blank nodes join on first boot)
#   tests/cluster/cluster.sh down          # stop them and delete their data
#   tests/cluster/cluster.sh kill N        # SIGKILL node N (1..3)
#   tests/cluster/cluster.sh start N       # start node N again (it rejoins)
#   tests/cluster/cluster.sh freeze N      # SIGSTOP node N; thaw N: SIGCONT
#   tests/cluster/cluster.sh status        # cluster_status as node 1 sees it
#   tests/cluster/cluster.sh ctl N ARGS…   # rabbitmqctl against node N
#   tests/cluster/cluster.sh pid N         # the beam pid of node N
#
# Node N is sdN@localhost: AMQP on 127.0.0.1:570N, AMQP over TLS on
# 127.0.0.1:571N (certificates made at `up` under $SUNDIAL_CLUSTER_DIR/tls:
# ca.pem, server.pem, client.pem/client.key, other-ca.pem), distribution
# port 2570N, data under $SUNDIAL_CLUSTER_DIR (default /tmp/sundial-cluster). The
# nodes have their own HOME and Erlang cookie, so they can never reach the
# system node (which shares epmd with them: never kill epmd).
set -euo pipefail

BASE=${SUNDIAL_CLUSTER_DIR:-/tmp/sundial-cluster}
BIN=/usr/lib/rabbitmq/bin
NODES=(1 2 3)

die() { echo "cluster.sh: $*" >&2; exit 1; }

node_name() { echo "sd$1@localhost"; }

node_env() {
  local n=$1 dir="$BASE/sd$1"
  export HOME="$BASE/home"
  export RABBITMQ_NODENAME; RABBITMQ_NODENAME=$(node_name "$n")
  export RABBITMQ_DIST_PORT=$((25700 + n))
  export RABBITMQ_MNESIA_BASE="$dir/mnesia"
  export RABBITMQ_LOG_BASE="$dir/log"
  export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$BASE/enabled_plugins"
  export RABBITMQ_PID_FILE="$dir/rabbitmq.pid"
  export RABBITMQ_CONF_ENV_FILE="$BASE/empty-env.conf"
}

prepare() {
  mkdir -p "$BASE/home"
  if [ ! -f "$BASE/home/.erlang.cookie" ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$BASE/home/.erlang.cookie"
    chmod 400 "$BASE/home/.erlang.cookie"
  fi
  echo '[].' > "$BASE/enabled_plugins"
  : > "$BASE/empty-env.conf"
  make_tls
  for n in "${NODES[@]}"; do
    local dir="$BASE/sd$n"
    mkdir -p "$dir/mnesia" "$dir/log"
    cat > "$dir/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$((5700 + n))
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = sd1@localhost
cluster_formation.classic_config.nodes.2 = sd2@localhost
cluster_formation.classic_config.nodes.3 = sd3@localhost
cluster_partition_handling = autoheal
loopback_users = none
log.file.level = warning
listeners.ssl.default = 127.0.0.1:$((5710 + n))
ssl_options.cacertfile = $BASE/tls/ca.pem
ssl_options.certfile = $BASE/tls/server.pem
ssl_options.keyfile = $BASE/tls/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
CONF
  done
}

# A CA, a server certificate for localhost/127.0.0.1, a client
# certificate (CN sundial-test-client) and an unrelated CA, under
# $BASE/tls: for the TLS listeners (127.0.0.1:571N).
make_tls() {
  local t="$BASE/tls"
  [ -f "$t/client.pem" ] && return
  mkdir -p "$t"
  (
    cd "$t"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=sundial-test-ca"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 2 -subj "/CN=another-ca"
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext
    openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/CN=sundial-test-client"
    printf 'extendedKeyUsage=clientAuth\n' > client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 -extfile client.ext
    chmod 644 ./*.key
  ) >/dev/null 2>&1 || die "openssl could not make the test certificates (apt-get install openssl)"
}

ctl() {
  local n=$1; shift
  ( node_env "$n"; "$BIN/rabbitmqctl" -n "$(node_name "$n")" "$@" )
}

pid_of() {
  local f="$BASE/sd$1/rabbitmq.pid"
  [ -s "$f" ] || die "node $1 has no pid file ($f)"
  cat "$f"
}

start_node() {
  local n=$1
  ( node_env "$n"; "$BIN/rabbitmq-server" -detached >/dev/null 2>&1 )
}

await_node() {
  # await_startup needs the node registered with epmd first.
  local i
  for i in $(seq 1 600); do
    ctl "$1" -q ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  ctl "$1" -q await_startup --timeout 120 >/dev/null
}

check_n() {
  case "${1:-}" in 1|2|3) ;; *) die "node number must be 1, 2 or 3, got '${1:-}'" ;; esac
}

case "${1:-}" in
  up)
    prepare
    for n in "${NODES[@]}"; do start_node "$n"; done
    for n in "${NODES[@]}"; do await_node "$n"; done
    # Quorum queues and streams need their feature flags everywhere.
    ctl 1 -q enable_feature_flag all >/dev/null
    echo "cluster up: amqp://guest:guest@127.0.0.1:5701 5702 5703"
    ;;
  down)
    for n in "${NODES[@]}"; do
      if [ -s "$BASE/sd$n/rabbitmq.pid" ]; then
        pid=$(cat "$BASE/sd$n/rabbitmq.pid")
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
    rm -rf "$BASE"
    ;;
  kill) check_n "${2:-}"; kill -KILL "$(pid_of "$2")" ;;
  freeze) check_n "${2:-}"; kill -STOP "$(pid_of "$2")" ;;
  thaw) check_n "${2:-}"; kill -CONT "$(pid_of "$2")" ;;
  start) check_n "${2:-}"; start_node "$2"; await_node "$2" ;;
  pid) check_n "${2:-}"; pid_of "$2" ;;
  status) ctl 1 cluster_status ;;
  ctl) check_n "${2:-}"; n=$2; shift 2; ctl "$n" "$@" ;;
  *) die "usage: cluster.sh up|down|kill N|start N|freeze N|thaw N|status|pid N|ctl N ARGS" ;;
esac
