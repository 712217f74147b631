#!/usr/bin/env bash
# Tools that render and validate deploy/ offline (tests/tests/deploy.rs uses them):
#   kubectl            its built-in kustomize (`kubectl kustomize DIR`); on this machine image
#   helm-python-sdk    Helm 4's Go SDK as a library (PyPI, bundles libhelm_c): renders and lints
#                      the chart without a helm binary or a cluster
#   kubernetes-validate the Kubernetes OpenAPI schemas (PyPI), for strict offline validation
#
#   scripts/deploy-tools.sh install   create the virtualenv (pinned versions) if missing; check kubectl
#   scripts/deploy-tools.sh render    print every rendered document and its validation as JSON
#                                     (scripts/deploy-render.py)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MC_CACHE_DIR:-$HOME/.cache/mc-backup}
VENV=$CACHE/deploy-venv
PKGS=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML==6.0.4)

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

case ${1:-} in
  install) install ;;
  render)
    [[ -x $VENV/bin/python ]] || die "not installed: run scripts/deploy-tools.sh install"
    exec "$VENV/bin/python" "$ROOT/scripts/deploy-render.py" ;;
  *) die "usage: scripts/deploy-tools.sh install|render" ;;
esac
