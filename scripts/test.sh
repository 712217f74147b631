#!/usr/bin/env bash
# Runs mc-backup's whole test suite against real services (started here if they are not up).
#   scripts/test.sh                 everything
#   scripts/test.sh -E 'test(smoke)' extra arguments go to cargo nextest (filters, --no-capture, …)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/services.sh up
eval "$(scripts/services.sh env)"
# kustomize (kubectl), Helm's SDK and the Kubernetes schemas for tests/tests/deploy.rs.
scripts/deploy-tools.sh install

# Integration tests run the real binaries (mc-agent, mc-restore, mc-loadgen) from target/debug.
cargo build --workspace --bins --quiet
cargo test --workspace --doc --quiet
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  echo "test: cargo-nextest not found (cargo install cargo-nextest); using cargo test" >&2
  cargo test --workspace --no-fail-fast "$@"
fi
