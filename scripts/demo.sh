#!/usr/bin/env bash
# The README demo: real local services, the agent streaming a generated workload into a
# local-directory repository, then the repository's timeline and a full verification.
#   scripts/demo.sh            (re-runnable: it continues the same demo repository)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "services (MongoDB replica set, S3, Kafka, Redis)"
scripts/services.sh up
eval "$(scripts/services.sh env)"

say "build"
cargo build --quiet --workspace --bins
BIN=target/debug
DEMO=.work/demo
POLICY=policies/dev.yaml
mkdir -p "$DEMO"
export MC_MONGODB_URI="$MC_TEST_MONGODB_URI"

say "keyring and repository"
[[ -f $DEMO/keyring ]] || "$BIN/mc-agent" key generate --keyring "$DEMO/keyring"
"$BIN/mc-agent" check --policy "$POLICY"
"$BIN/mc-agent" init --repo "$DEMO/repo" --keyring "$DEMO/keyring"

say "agent: mc-agent run --policy $POLICY (log: $DEMO/agent.log)"
"$BIN/mc-agent" run --policy "$POLICY" >"$DEMO/agent.log" 2>&1 &
AGENT=$!
trap 'kill "$AGENT" 2>/dev/null || true' EXIT
STATUS=http://127.0.0.1:9187
for _ in $(seq 300); do
  curl -fs "$STATUS/readyz" >/dev/null 2>&1 && break
  kill -0 "$AGENT" 2>/dev/null || { cat "$DEMO/agent.log"; echo "demo: the agent exited" >&2; exit 1; }
  sleep 0.1
done
curl -fs "$STATUS/readyz" || { cat "$DEMO/agent.log"; echo "demo: the agent never became ready" >&2; exit 1; }

say "workload: 5 s of inserts, updates, deletes and transactions at 300 ops/s"
"$BIN/mc-loadgen" --db demo --rate 300 --duration 5s

say "a base snapshot while the agent captures (mc-agent snapshot)"
"$BIN/mc-agent" snapshot --policy "$POLICY"

say "workload: 5 s more after the snapshot"
RESULT=$("$BIN/mc-loadgen" --db demo --rate 300 --duration 5s)
echo "$RESULT"
LAST=$(sed -E 's/.*"last_ts":"([0-9.]+)".*/\1/' <<<"$RESULT")

say "waiting until the agent has made $LAST durable"
for _ in $(seq 600); do
  DURABLE=$(curl -fs "$STATUS/status" | sed -nE 's/.*"newest_durable_ts":"([0-9.]+)".*/\1/p')
  [[ -n $DURABLE && ! $DURABLE < $LAST ]] && break
  sleep 0.1
done
echo "newest durable entry: ${DURABLE:-none}"
[[ -n $DURABLE && ! $DURABLE < $LAST ]] || { echo "demo: the workload did not become durable" >&2; exit 1; }
curl -fs "$STATUS/metrics" | grep -E '^mc_(rpo_seconds|oplog_ops_captured_total|segments_uploaded_total|bytes_uploaded_total)'

say "stopping the agent (SIGTERM: seal, upload, exit 0)"
kill -TERM "$AGENT"
wait "$AGENT"
trap - EXIT

say "the repository's timeline"
"$BIN/mc-restore" catalog timeline --repo "$DEMO/repo" --keyring "$DEMO/keyring" --source rs0

say "verification of every object"
"$BIN/mc-restore" verify --repo "$DEMO/repo" --keyring "$DEMO/keyring"

say "what can be restored"
"$BIN/mc-restore" list --policy "$POLICY"

say "restore the newest point into demo_restored, next to the original"
"$BIN/mc-restore" --at latest --policy "$POLICY" --target "$MC_TEST_MONGODB_URI" \
  --ns 'demo.*' --ns-from demo --ns-to demo_restored --drop

say "prove it: demo_restored against the source (snapshot reads at the same cluster time)"
"$BIN/mc-restore" verify-data --at latest --source-uri "$MC_TEST_MONGODB_URI" \
  --target "$MC_TEST_MONGODB_URI" --ns 'demo.*' --ns-from demo --ns-to demo_restored

say "a recovery drill: timed, verified, judged against the policy's RTO/RPO (report in $DEMO/drills)"
"$BIN/mc-restore" drill --policy "$POLICY" --scratch "$MC_TEST_MONGODB_URI" \
  --scratch-is-source-cluster --ns 'demo.*' --ns-from demo --ns-to demo_drill --out "$DEMO/drills"
