#!/usr/bin/env python3
"""Renders and validates mc-backup's deployment manifests offline, for tests/tests/deploy.rs.

Run through `scripts/deploy-tools.sh render` (the virtualenv has helm-python-sdk, which is Helm's
own Go SDK as a library, and kubernetes-validate with the Kubernetes OpenAPI schemas;
MC_CRD_SCHEMAS is the node_modules directory of the @kubernetes-models/* npm packages holding the
custom resources' schemas). Prints one JSON object on stdout:

  {"kube_version": "1.32.0",
   "files":  {"<path>": [document, ...]},                  every *.yaml under deploy/kubernetes
   "builds": {"<name>": {"documents": [...],                kustomize overlays, Helm renders
                         "validation": [{"kind", "name", "result": "valid"|"no-schema"|"invalid",
                                         "schema", "error"}],
                         "lint": [...]}},                   Helm lint messages (Helm builds only)
   "crd_canaries": [{"kind", "case", "result", "error"}],  deliberately broken custom resources
   "render_failures": {"<case>": "<Helm's error>"|null}}   values the chart must refuse

Every document is validated strictly: Kubernetes kinds by kubernetes-validate (strict: unknown
fields are errors), custom resources by their operator's schema (CRD_SCHEMAS, "schema" names
it), where a field the schema does not know is an error too. The canaries prove the custom-resource
validation can fail: each kind once with an unknown field, once with a wrong type.

Kustomize is kubectl's built-in one (`kubectl kustomize DIR`). Exits 1 on any tool failure, with
the message on stderr.
"""
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile

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
# Custom resources: (apiVersion, kind) -> the validate function of its schema, a module of the
# pinned npm packages (scripts/deploy-tools.sh).
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"):
        "@kubernetes-models/prometheus-operator/_schemas/ComGithubPrometheusOperatorPrometheusOperatorPkgApisMonitoringV1ServiceMonitor.js",
    ("monitoring.coreos.com/v1", "PodMonitor"):
        "@kubernetes-models/prometheus-operator/_schemas/ComGithubPrometheusOperatorPrometheusOperatorPkgApisMonitoringV1PodMonitor.js",
    ("monitoring.coreos.com/v1", "PrometheusRule"):
        "@kubernetes-models/prometheus-operator/_schemas/ComGithubPrometheusOperatorPrometheusOperatorPkgApisMonitoringV1PrometheusRule.js",
    ("external-secrets.io/v1", "ExternalSecret"):
        "@kubernetes-models/external-secrets/_schemas/ComGithubExternalSecretsExternalSecretsApisExternalsecretsV1ExternalSecret.js",
    ("security.istio.io/v1", "PeerAuthentication"):
        "@kubernetes-models/istio/_schemas/SecurityIstioIoV1PeerAuthentication.js",
}

# Runs the schemas' validate functions (ajv, compiled) on the documents of a JSON file:
#   node --input-type=module -e CRD_VALIDATE NODE_MODULES FILE
# FILE: [{"module": path under NODE_MODULES, "document": {...}}, ...]; prints [{"errors": [...]}].
# The compiled functions do not reject unknown fields (CRD schemas leave additionalProperties
# open), so the document is wrapped in Proxies recording which keys each validate function reads:
# it reads every property its schema declares and every key of a map (additionalProperties), so in
# an object it read keys from, a key it never read is unknown to the schema: an error, as in
# kubernetes-validate's strict mode. Objects it read nothing from (free-form, e.g.
# x-kubernetes-preserve-unknown-fields) are not checked.
CRD_VALIDATE = r"""
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
const [modules, file] = process.argv.slice(1);
const out = [];
for (const { module, document } of JSON.parse(readFileSync(file, "utf8"))) {
  const { validate } = await import(pathToFileURL(join(modules, module)).href);
  const reads = new Map();
  const proxies = new Map();
  const wrap = (v) => {
    if (v === null || typeof v !== "object") return v;
    if (!proxies.has(v)) {
      reads.set(v, new Set());
      proxies.set(v, new Proxy(v, {
        get(t, k, r) {
          if (typeof k === "string") reads.get(t).add(k);
          const x = Reflect.get(t, k, r);
          return Object.hasOwn(t, k) ? wrap(x) : x;
        },
        has(t, k) {
          if (typeof k === "string") reads.get(t).add(k);
          return Reflect.has(t, k);
        },
      }));
    }
    return proxies.get(v);
  };
  const errors = [];
  if (!validate(wrap(document))) {
    for (const e of validate.errors) {
      errors.push(`${e.instancePath || "/"}: ${e.keyword} ${JSON.stringify(e.params)}`);
    }
  }
  const walk = (v, path) => {
    if (v === null || typeof v !== "object") return;
    if (Array.isArray(v)) return v.forEach((x, i) => walk(x, `${path}/${i}`));
    const read = reads.get(v);
    for (const k of Object.keys(v)) {
      if (read && read.size > 0 && !read.has(k)) errors.push(`${path}/${k}: unknown field`);
      walk(v[k], `${path}/${k}`);
    }
  };
  walk(document, "");
  out.push({ errors });
}
process.stdout.write(JSON.stringify(out));
"""

CHART = "deploy/helm/mc-backup"
# A MongoDB chart with mc-backup as a dependency in sidecar mode (its StatefulSet includes the
# templates of mc-backup's templates/_sidecar.tpl).
SIDECAR_EXAMPLE = "deploy/helm/sidecar-example"
PRODUCTION = "deploy/helm/mc-backup/values-production.yaml"
SIDECAR = "deploy/helm/mc-backup/values-sidecar.yaml"
# name: (chart, namespace, value files merged in order; None: EVERYTHING)
HELM = {
    "helm:default": (CHART, "mc-backup", []),
    "helm:production": (CHART, "mc-backup", [PRODUCTION]),
    # Every optional object on, so each template is rendered and validated at least once.
    "helm:everything": (CHART, "mc-backup", [PRODUCTION, None]),
    # Sidecar mode: the chart alone, and inside the example MongoDB chart (the same values under
    # its `mc-backup:` key).
    "helm:sidecar": (CHART, "mongodb", [PRODUCTION, SIDECAR]),
    "helm:sidecar-example": (SIDECAR_EXAMPLE, "mongodb", [PRODUCTION, SIDECAR]),
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
    """Validation against the Kubernetes schemas; custom resources are left "no-schema" here and
    validated in one batch by validate_custom_resources."""
    kind = doc.get("kind", "?")
    name = (doc.get("metadata") or {}).get("name", "?")
    entry = {"kind": kind, "name": name, "api_version": doc.get("apiVersion")}
    try:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        entry["result"] = "valid"
        entry["schema"] = f"kubernetes-validate {KUBE_VERSION}"
    except kubernetes_validate.SchemaNotFoundError:
        entry["result"] = "no-schema"
    except kubernetes_validate.ValidationError as e:
        entry["result"] = "invalid"
        entry["error"] = f"{'.'.join(str(p) for p in e.path)}: {e.message}"
    except kubernetes_validate.InvalidSchemaError as e:
        entry["result"] = "invalid"
        entry["error"] = str(e)
    return entry


def crd_validate(documents):
    """Errors of each document against its custom-resource schema (None: no schema known)."""
    batch = [{"module": CRD_SCHEMAS[(d.get("apiVersion"), d.get("kind"))], "document": d}
             for d in documents if (d.get("apiVersion"), d.get("kind")) in CRD_SCHEMAS]
    modules = os.environ.get("MC_CRD_SCHEMAS")
    if not modules or not os.path.isdir(modules):
        sys.exit("deploy-render: MC_CRD_SCHEMAS is not the schemas' node_modules (run through "
                 "scripts/deploy-tools.sh render after scripts/deploy-tools.sh install)")
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(batch, f)
        f.flush()
        r = subprocess.run(["node", "--input-type=module", "-e", CRD_VALIDATE, modules, f.name],
                           capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"deploy-render: custom-resource validation (node) failed:\n{r.stderr}")
    results = iter(json.loads(r.stdout))
    return [next(results)["errors"] if (d.get("apiVersion"), d.get("kind")) in CRD_SCHEMAS else None
            for d in documents]


def validate_custom_resources(builds):
    """Replaces the "no-schema" entries of custom resources with their schema's verdict."""
    pending = [(b, i) for b in builds.values() for i, v in enumerate(b["validation"])
               if v["result"] == "no-schema"]
    verdicts = crd_validate([b["documents"][i] for b, i in pending])
    for (b, i), errors in zip(pending, verdicts):
        if errors is None:
            continue
        v = b["validation"][i]
        package = CRD_SCHEMAS[(v["api_version"], v["kind"])].split("/_schemas/")[0]
        with open(os.path.join(os.environ["MC_CRD_SCHEMAS"], package, "package.json")) as f:
            v["schema"] = f"{package}@{json.load(f)['version']}"
        v["result"] = "invalid" if errors else "valid"
        if errors:
            v["error"] = "; ".join(errors)


def crd_canaries(builds):
    """Each custom-resource kind of the builds, broken twice: an unknown field in spec, and spec
    of the wrong type. Both must be invalid."""
    first = {}
    for b in builds.values():
        for d in b["documents"]:
            first.setdefault((d.get("apiVersion"), d.get("kind")), d)
    cases = []
    for key in CRD_SCHEMAS:
        if key not in first:
            continue
        unknown = copy.deepcopy(first[key])
        unknown["spec"]["mcBackupCanary"] = True
        wrong_type = copy.deepcopy(first[key])
        wrong_type["spec"] = "not an object"
        cases += [(key[1], "unknown field spec.mcBackupCanary", unknown),
                  (key[1], "spec is a string", wrong_type)]
    verdicts = crd_validate([d for _, _, d in cases])
    return [{"kind": kind, "case": case, "result": "invalid" if errors else "valid",
             "error": "; ".join(errors)}
            for (kind, case, _), errors in zip(cases, verdicts)]


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
    with tempfile.TemporaryDirectory() as tmp:
        for name, (chart, namespace, value_files) in HELM.items():
            values = {}
            for vf in value_files:
                if vf is None:
                    values = merge(values, EVERYTHING)
                    continue
                with open(vf) as f:
                    values = merge(values, yaml.safe_load(f))
            release = "mc-backup"
            if chart == SIDECAR_EXAMPLE:
                # What a user does: `helm dependency update` (file://../mc-backup), on copies.
                for c in (CHART, SIDECAR_EXAMPLE):
                    shutil.copytree(c, os.path.join(tmp, os.path.basename(c)), dirs_exist_ok=True)
                chart = os.path.join(tmp, os.path.basename(SIDECAR_EXAMPLE))
                helm.dependency_update(chart)
                with open(os.path.join(chart, "values.yaml")) as f:
                    values = merge(yaml.safe_load(f), {"mc-backup": values})
                release = "mongodb"
            with helm.Chart.load(chart) as c:
                rendered = c.render(values, name=release, namespace=namespace, is_install=True)
            docs = []
            for template, text in sorted(rendered.items()):
                if template.endswith(".yaml"):
                    docs.extend(docs_of(text, template))
            lint = helm.lint(chart, values, strict=True, namespace=namespace,
                             kube_version="v" + KUBE_VERSION, with_subcharts=True)
            builds[name] = {
                "documents": docs,
                "validation": [validate(d) for d in docs],
                "lint": lint.get("messages", [])
                + [{"severity": 3, "error": e} for e in lint.get("errors", []) or []],
            }
        # Renders that must fail: an unknown mode, the sidecar templates outside sidecar mode.
        failures = {}
        for case, chart, values in [
            ("mode: bogus", CHART, {"mode": "bogus"}),
            ("sidecar example with mode: daemonset",
             os.path.join(tmp, os.path.basename(SIDECAR_EXAMPLE)), {"mc-backup": {"mode": "daemonset"}}),
        ]:
            try:
                with helm.Chart.load(chart) as c:
                    c.render(values, name="mc-backup", namespace="mc-backup", is_install=True)
                failures[case] = None
            except helm.HelmError as e:
                failures[case] = str(e)
    validate_custom_resources(builds)
    json.dump({"kube_version": KUBE_VERSION, "files": files, "builds": builds,
               "crd_canaries": crd_canaries(builds), "render_failures": failures}, sys.stdout)


if __name__ == "__main__":
    main()
