#!/usr/bin/env bash
# Tools that render and validate deploy/ offline (tests/tests/deploy.rs uses them):
#   kubectl            its built-in kustomize (`kubectl kustomize DIR`); on this machine image
#   helm-python-sdk    Helm 4's Go SDK as a library (PyPI, bundles libhelm_c): renders and lints
#                      the chart without a helm binary or a cluster
#   kubernetes-validate the Kubernetes OpenAPI schemas (PyPI), for strict offline validation
#   @kubernetes-models/{prometheus-operator,external-secrets,istio}
#                      (npm, run with the machine's Node.js) the schemas of the operators' custom
#                      resources (ServiceMonitor, PodMonitor, PrometheusRule, ExternalSecret,
#                      PeerAuthentication), compiled into validate functions; scripts/deploy-render.py
#                      runs them and rejects fields they do not know
#
#   scripts/deploy-tools.sh install   create the virtualenv and the npm schema directory (pinned
#                                     versions) if missing; check kubectl, node and npm
#   scripts/deploy-tools.sh render    print every rendered document and its validation as JSON
#                                     (scripts/deploy-render.py)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MC_CACHE_DIR:-$HOME/.cache/mc-backup}
VENV=$CACHE/deploy-venv
PKGS=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML==6.0.4)
# Custom-resource schemas. prometheus-operator 6.0.0: the monitoring.coreos.com/v1 Go API types of
# prometheus-operator v0.9x; external-secrets 2.0.0: external-secrets.io/v1 (external-secrets
# v0.16 API types); istio 3.0.1: Istio 1.29's CRDs. The packages' own dependencies holding schemas
# (ObjectMeta in apimachinery) and the validation runtime are pinned too (npm overrides).
CRDS=$CACHE/deploy-crd-schemas
NPM_PKGS='{"@kubernetes-models/prometheus-operator": "6.0.0", "@kubernetes-models/external-secrets": "2.0.0", "@kubernetes-models/istio": "3.0.1"}'
NPM_OVERRIDES='{"@kubernetes-models/apimachinery": "3.0.2", "@kubernetes-models/base": "6.0.1", "@kubernetes-models/validate": "5.0.2", "kubernetes-models": "5.1.0"}'

die() { printf 'deploy-tools: error: %s\n' "$*" >&2; exit 1; }

install() {
  command -v kubectl >/dev/null \
    || die "kubectl not found: it provides kustomize (kubectl kustomize); install kubectl >= 1.27"
  kubectl kustomize --help >/dev/null 2>&1 || die "this kubectl has no kustomize"
  if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null \
     && [[ $(cat "$VENV/.pkgs" 2>/dev/null) == "${PKGS[*]}" ]]; then
    return 0
  fi
  printf 'deploy-tools: installing %s into %s\n' "${PKGS[*]}" "$VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PKGS[@]}"
  "$VENV/bin/python" -c 'import helm_python as h; print("deploy-tools: helm SDK", h.helm_sdk_version())' >&2
  printf '%s' "${PKGS[*]}" > "$VENV/.pkgs"
}

install_crd_schemas() {
  command -v node >/dev/null && command -v npm >/dev/null \
    || die "node and npm not found: they run the custom-resource schemas (@kubernetes-models/*); install Node.js >= 20"
  local spec="$NPM_PKGS $NPM_OVERRIDES"
  if [[ -d $CRDS/node_modules/@kubernetes-models && $(cat "$CRDS/.pkgs" 2>/dev/null) == "$spec" ]]; then
    return 0
  fi
  printf 'deploy-tools: installing custom-resource schemas %s into %s\n' "$NPM_PKGS" "$CRDS" >&2
  rm -rf "$CRDS"
  mkdir -p "$CRDS"
  printf '{"name": "mc-backup-crd-schemas", "private": true, "type": "module",\n "dependencies": %s,\n "overrides": %s}\n' \
    "$NPM_PKGS" "$NPM_OVERRIDES" > "$CRDS/package.json"
  # The packages declare Node.js >= 22 but their validate functions run on 20 (this machine's).
  (cd "$CRDS" && npm install --no-audit --no-fund --ignore-scripts --engine-strict=false --loglevel=error) >&2 \
    || die "npm install of the custom-resource schemas failed"
  printf '%s' "$spec" > "$CRDS/.pkgs"
}

case ${1:-} in
  install) install; install_crd_schemas ;;
  render)
    [[ -x $VENV/bin/python && -d $CRDS/node_modules ]] || die "not installed: run scripts/deploy-tools.sh install"
    MC_CRD_SCHEMAS=$CRDS/node_modules exec "$VENV/bin/python" "$ROOT/scripts/deploy-render.py" ;;
  *) die "usage: scripts/deploy-tools.sh install|render" ;;
esac
