#!/usr/bin/env python3
"""Renders and validates mc-backup's deployment manifests offline, for tests/tests/deploy.rs.

Run through `scripts/deploy-tools.sh render` (the virtualenv has helm-python-sdk, which is Helm's
own Go SDK as a library, and kubernetes-validate with the Kubernetes OpenAPI schemas). Prints one
JSON object on stdout:

  {"kube_version": "1.32.0",
   "files":  {"<path>": [document, ...]},                  every *.yaml under deploy/kubernetes
   "builds": {"<name>": {"documents": [...],                kustomize overlays, Helm renders
                         "validation": [{"kind", "name", "result": "valid"|"no-schema"|"invalid",
                                         "error"}],
                         "lint": [...]}}}                   Helm lint messages (Helm builds only)

Kustomize is kubectl's built-in one (`kubectl kustomize DIR`). Exits 1 on any tool failure, with
the message on stderr.
"""
import json
import os
import subprocess
import sys

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
KUBE_VERSION = "1.32.0"

KUSTOMIZE = {
    "kustomize:base": "deploy/kubernetes/base",
    "kustomize:dev": "deploy/kubernetes/overlays/dev",
    "kustomize:staging": "deploy/kubernetes/overlays/staging",
    "kustomize:production": "deploy/kubernetes/overlays/production",
    "kustomize:sidecar-example": "deploy/kubernetes/sidecar-example",
}
CHART = "deploy/helm/mc-backup"
HELM = {
    "helm:default": [],
    "helm:production": ["deploy/helm/mc-backup/values-production.yaml"],
    # Every optional object on, so each template is rendered and validated at least once.
    "helm:everything": ["deploy/helm/mc-backup/values-production.yaml", None],
}
EVERYTHING = {
    "namespace": {"create": True},
    "monitoring": {"drillMetricAlerts": {"enabled": True}},
    "agent": {"spool": {"hostPath": "/var/lib/mc-backup"}},
    "drill": {"extraArgs": ["--ns", "interviews.*"]},
    "secrets": {"s3": {"name": "mc-backup-s3", "optional": False}},
}


def docs_of(text, where):
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        sys.exit(f"deploy-render: {where}: not YAML: {e}")


def validate(doc):
    kind = doc.get("kind", "?")
    name = (doc.get("metadata") or {}).get("name", "?")
    entry = {"kind": kind, "name": name, "api_version": doc.get("apiVersion")}
    try:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        entry["result"] = "valid"
    except kubernetes_validate.SchemaNotFoundError:
        entry["result"] = "no-schema"
    except kubernetes_validate.ValidationError as e:
        entry["result"] = "invalid"
        entry["error"] = f"{'.'.join(str(p) for p in e.path)}: {e.message}"
    except kubernetes_validate.InvalidSchemaError as e:
        entry["result"] = "invalid"
        entry["error"] = str(e)
    return entry


def merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def main():
    os.chdir(ROOT)
    files = {}
    for base, _, names in os.walk("deploy/kubernetes"):
        for n in sorted(names):
            if n.endswith((".yaml", ".yml")):
                p = os.path.join(base, n)
                with open(p) as f:
                    files[p] = docs_of(f.read(), p)
    builds = {}
    for name, path in KUSTOMIZE.items():
        r = subprocess.run(["kubectl", "kustomize", path], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"deploy-render: kubectl kustomize {path} failed:\n{r.stderr}")
        docs = docs_of(r.stdout, name)
        builds[name] = {"documents": docs, "validation": [validate(d) for d in docs]}
    for name, value_files in HELM.items():
        values = {}
        for vf in value_files:
            if vf is None:
                values = merge(values, EVERYTHING)
                continue
            with open(vf) as f:
                values = merge(values, yaml.safe_load(f))
        with helm.Chart.load(CHART) as chart:
            rendered = chart.render(values, name="mc-backup", namespace="mc-backup", is_install=True)
        docs = []
        for template, text in sorted(rendered.items()):
            if template.endswith(".yaml"):
                docs.extend(docs_of(text, template))
        lint = helm.lint(CHART, values, strict=True, namespace="mc-backup", kube_version="v" + KUBE_VERSION)
        builds[name] = {
            "documents": docs,
            "validation": [validate(d) for d in docs],
            "lint": lint.get("messages", []) + [{"severity": 3, "error": e} for e in lint.get("errors", []) or []],
        }
    json.dump({"kube_version": KUBE_VERSION, "files": files, "builds": builds}, sys.stdout)


if __name__ == "__main__":
    main()
