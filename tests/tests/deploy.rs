//! deploy/ checked offline and against the real binaries (no cluster here).
//!
//! `scripts/deploy-tools.sh render` (kubectl's built-in kustomize, Helm's Go SDK through
//! helm-python-sdk, kubernetes-validate's OpenAPI schemas, the custom-resource schemas of the
//! @kubernetes-models npm packages; `scripts/deploy-tools.sh install` sets them up,
//! scripts/test.sh and .ci/run call it) builds every overlay and the sidecar example, renders the
//! chart with its default values, with values-production.yaml, with every option on, in sidecar
//! mode (values-production.yaml + values-sidecar.yaml) alone and inside the example MongoDB chart
//! deploy/helm/sidecar-example, and validates every document strictly: Kubernetes kinds against
//! the Kubernetes 1.32 schemas, the operators' custom resources against their own schemas, with
//! unknown fields as errors in both:
//!   ServiceMonitor, PodMonitor, PrometheusRule  @kubernetes-models/prometheus-operator 6.0.0
//!                                               (monitoring.coreos.com/v1 of prometheus-operator
//!                                               v0.9x, from its Go API types)
//!   ExternalSecret                              @kubernetes-models/external-secrets 2.0.0
//!                                               (external-secrets.io/v1, external-secrets v0.16)
//!   PeerAuthentication                          @kubernetes-models/istio 3.0.1 (Istio 1.29 CRDs)
//! Every kind deploy/ uses has a real schema; none is left to structural checks alone. Those
//! schemas ship as compiled validate functions, so deploy-render.py runs them under Node.js and
//! reports as unknown every field they never read (scripts/deploy-render.py, CRD_VALIDATE); the
//! render's canaries (each kind with an unknown field and with a wrongly typed spec) prove that
//! this validation fails when it should. Then the invariants are asserted against the real
//! programs: probe paths are requested from a running `mc-agent run`, every flag in a manifest is
//! looked up in `--help`, every metric name in an alert or a dashboard panel is scraped from the
//! running agent's /metrics, and the Dockerfile copies the workspace's binaries (and is built
//! when a container engine answers).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mc_core::crypto::KeyringSource;
use mc_core::policy::{Policy, SecretRef};
use mc_tests::agent::{free_port, http_get};
use mc_tests::*;
use serde_json::Value;

/// Custom resources of operators (no schema in kubernetes-validate) and the npm package whose
/// schema validates them (scripts/deploy-tools.sh pins the versions).
const CUSTOM_KINDS: &[(&str, &str)] = &[
    ("ServiceMonitor", "@kubernetes-models/prometheus-operator@"),
    ("PodMonitor", "@kubernetes-models/prometheus-operator@"),
    ("PrometheusRule", "@kubernetes-models/prometheus-operator@"),
    ("ExternalSecret", "@kubernetes-models/external-secrets@"),
    ("PeerAuthentication", "@kubernetes-models/istio@"),
];

/// Series the alerts and the dashboard use that are not the agent's: Prometheus' own `up` and
/// kube-state-metrics' Job/CronJob series (for the drill CronJob).
const EXTERNAL_METRICS: &[&str] = &[
    "up",
    "kube_job_failed",
    "kube_job_created",
    "kube_job_status_start_time",
    "kube_job_status_active",
    "kube_job_status_completion_time",
    "kube_job_status_succeeded",
    "kube_cronjob_status_last_successful_time",
    "kube_cronjob_status_last_schedule_time",
];

/// Drill gauges the agent does not export yet. Allowed only in the rules that say they require
/// them (PrometheusRule `*-drill-metrics`) and in dashboard panels titled "(requires mc_drill_*)".
const PENDING_DRILL_METRICS: &[&str] = &[
    "mc_drill_last_success",
    "mc_drill_last_rto_seconds",
    "mc_drill_last_timestamp_seconds",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn render() -> &'static Value {
    static RENDER: OnceLock<Value> = OnceLock::new();
    RENDER.get_or_init(|| {
        let out = Command::new("bash")
            .arg(root().join("scripts/deploy-tools.sh"))
            .arg("render")
            .output()
            .expect("run scripts/deploy-tools.sh render");
        assert!(
            out.status.success(),
            "scripts/deploy-tools.sh render failed (run scripts/deploy-tools.sh install first):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("deploy-render prints JSON")
    })
}

fn builds() -> &'static serde_json::Map<String, Value> {
    render()["builds"].as_object().unwrap()
}

fn docs(build: &str) -> &'static [Value] {
    builds()[build]["documents"]
        .as_array()
        .unwrap_or_else(|| panic!("no build {build}"))
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("")
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Every pod spec in a build with where it comes from.
fn pod_specs(docs: &[Value]) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for d in docs {
        let kind = d["kind"].as_str().unwrap_or("");
        let spec = match kind {
            "DaemonSet" | "StatefulSet" | "Deployment" => &d["spec"]["template"]["spec"],
            "CronJob" => &d["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => continue,
        };
        out.push((format!("{kind}/{}", name(d)), spec));
    }
    out
}

/// Containers that run one of the workspace's binaries: (pod, pod spec, container, binary).
fn our_containers(docs: &[Value]) -> Vec<(String, &Value, &Value, String)> {
    let mut out = Vec::new();
    for (pod, spec) in pod_specs(docs) {
        for c in arr(&spec["containers"]) {
            let cmd = arr(&c["command"])
                .first()
                .and_then(Value::as_str)
                .unwrap_or("");
            let bin = cmd.rsplit('/').next().unwrap_or("");
            if bin == "mc-agent" || bin == "mc-restore" {
                out.push((pod.clone(), spec, c, bin.to_owned()));
            }
        }
    }
    out
}

fn args(c: &Value) -> Vec<String> {
    arr(&c["args"])
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&format!("{flag}=")).map(str::to_owned)
        }
    })
}

const BUILDS: &[&str] = &[
    "kustomize:base",
    "kustomize:dev",
    "kustomize:staging",
    "kustomize:production",
    "kustomize:sidecar-example",
    "helm:default",
    "helm:production",
    "helm:everything",
    "helm:sidecar",
    "helm:sidecar-example",
];

/// Builds with mc-agent as a sidecar in a MongoDB StatefulSet.
const SIDECAR_EXAMPLES: &[&str] = &["kustomize:sidecar-example", "helm:sidecar-example"];

/// Helm renders in sidecar mode: everything but the agent's own workload.
const HELM_SIDECAR: &[&str] = &["helm:sidecar", "helm:sidecar-example"];

/// Builds that install the whole of mc-backup (DaemonSet, drill, monitoring).
const INSTALLS: &[&str] = &[
    "kustomize:dev",
    "kustomize:staging",
    "kustomize:production",
    "helm:default",
    "helm:production",
    "helm:everything",
];

#[test]
fn every_yaml_file_parses_and_names_its_objects() {
    let files = render()["files"].as_object().unwrap();
    assert!(files.len() >= 20, "{:?}", files.keys());
    for (path, docs) in files {
        let docs = docs.as_array().unwrap();
        assert!(!docs.is_empty(), "{path}: no YAML document");
        if path.ends_with("/policy.yaml") {
            // A backup policy for a ConfigMap generator, not a Kubernetes object.
            Policy::load(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
            continue;
        }
        for d in docs {
            assert!(d["apiVersion"].is_string(), "{path}: no apiVersion");
            let kind = d["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{path}: no kind"));
            if kind != "Kustomization" && kind != "Component" {
                assert!(!name(d).is_empty(), "{path}: {kind} without metadata.name");
            }
        }
    }
}

#[test]
fn every_build_renders_and_validates_against_the_kubernetes_schemas() {
    for build in BUILDS {
        let b = &builds()[*build];
        let docs = docs(build);
        assert!(!docs.is_empty(), "{build}: nothing rendered");
        for d in docs {
            assert!(
                d["apiVersion"].is_string() && d["kind"].is_string() && !name(d).is_empty(),
                "{build}: {d}"
            );
        }
        for v in arr(&b["validation"]) {
            let kind = v["kind"].as_str().unwrap();
            assert_eq!(
                v["result"], "valid",
                "{build}: invalid or without a schema: {v}"
            );
            let schema = v["schema"].as_str().unwrap_or("");
            match CUSTOM_KINDS.iter().find(|(k, _)| *k == kind) {
                Some((_, package)) => assert!(schema.starts_with(package), "{build}: {v}"),
                None => assert_eq!(
                    schema,
                    format!(
                        "kubernetes-validate {}",
                        render()["kube_version"].as_str().unwrap()
                    ),
                    "{build}: {v}"
                ),
            }
        }
        for m in arr(&b["lint"]) {
            assert!(
                m["severity"].as_i64().unwrap_or(3) < 2,
                "{build}: helm lint: {m}"
            );
        }
    }
}

/// The custom-resource validation can fail: the render breaks each kind twice (an unknown field
/// in spec, spec of the wrong type) and both must be rejected by the kind's schema.
#[test]
fn custom_resource_schemas_reject_broken_documents() {
    let canaries = arr(&render()["crd_canaries"]);
    for (kind, _) in CUSTOM_KINDS {
        let cases: Vec<&Value> = canaries.iter().filter(|c| c["kind"] == *kind).collect();
        assert_eq!(cases.len(), 2, "{kind}: {canaries:?}");
        for c in cases {
            assert_eq!(
                c["result"], "invalid",
                "{kind}: a broken document passed: {c}"
            );
            let error = c["error"].as_str().unwrap();
            let wanted = if c["case"].as_str().unwrap().starts_with("unknown field") {
                "/spec/mcBackupCanary: unknown field"
            } else {
                "/spec: type"
            };
            assert!(error.contains(wanted), "{kind}: {c}");
        }
    }
}

/// Renders that must fail, with a message that says why (scripts/deploy-render.py).
#[test]
fn helm_refuses_an_unknown_mode_and_sidecar_templates_outside_sidecar_mode() {
    let failures = render()["render_failures"].as_object().unwrap();
    for (case, wanted) in [
        (
            "mode: bogus",
            "values.mode: \"bogus\" is neither daemonset nor sidecar",
        ),
        (
            "sidecar example with mode: daemonset",
            "the mc-backup.sidecar* templates need mode: sidecar",
        ),
    ] {
        let error = failures[case]
            .as_str()
            .unwrap_or_else(|| panic!("{case}: rendered without an error: {failures:?}"));
        assert!(error.contains(wanted), "{case}: {error}");
    }
}

#[test]
fn installs_hold_every_object_and_no_rbac() {
    for build in INSTALLS {
        let docs = docs(build);
        let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        for kind in [
            "ServiceAccount",
            "ConfigMap",
            "DaemonSet",
            "Service",
            "ServiceMonitor",
            "PrometheusRule",
            "CronJob",
        ] {
            assert!(kinds.contains(kind), "{build}: no {kind}");
        }
        for kind in ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"] {
            assert!(!kinds.contains(kind), "{build}: the agent needs no {kind}");
        }
        for sa in of_kind(docs, "ServiceAccount") {
            assert_eq!(sa["automountServiceAccountToken"], false, "{build}");
        }
        for (pod, spec) in pod_specs(docs) {
            if pod.contains("mc-backup") {
                assert_eq!(spec["automountServiceAccountToken"], false, "{build} {pod}");
            }
        }
    }
    // Sidecar mode: the agent is MongoDB's container, so no DaemonSet, metrics Service or
    // ServiceMonitor, but a PodMonitor; the rest as in daemonset mode.
    for build in HELM_SIDECAR {
        let docs = docs(build);
        let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        for kind in [
            "ServiceAccount",
            "ConfigMap",
            "PodMonitor",
            "PrometheusRule",
            "CronJob",
        ] {
            assert!(kinds.contains(kind), "{build}: no {kind}");
        }
        for kind in [
            "DaemonSet",
            "Service",
            "ServiceMonitor",
            "Namespace",
            "Role",
            "ClusterRole",
            "RoleBinding",
            "ClusterRoleBinding",
        ] {
            assert!(
                !kinds.contains(kind),
                "{build}: sidecar mode renders a {kind}"
            );
        }
        for d in docs {
            if d["metadata"]["namespace"].is_string() {
                assert_eq!(
                    d["metadata"]["namespace"],
                    "mongodb",
                    "{build}: {}",
                    name(d)
                );
            }
        }
    }
    for build in [
        "kustomize:staging",
        "kustomize:production",
        "helm:production",
        "helm:sidecar",
        "helm:sidecar-example",
    ] {
        let secrets: BTreeSet<&str> = of_kind(docs(build), "ExternalSecret")
            .into_iter()
            .map(name)
            .collect();
        for s in [
            "mc-backup-keyring",
            "mongodb-backup",
            "mc-backup-drill",
            "mc-backup-redis",
        ] {
            assert!(
                secrets.contains(s),
                "{build}: no ExternalSecret {s}: {secrets:?}"
            );
        }
    }
}

#[test]
fn containers_are_locked_down_and_sized() {
    for build in BUILDS {
        for (pod, spec, c, bin) in our_containers(docs(build)) {
            let at = format!("{build} {pod} {bin}");
            let sc = &c["securityContext"];
            let psc = &spec["securityContext"];
            let either = |k: &str| {
                if sc[k].is_null() {
                    &psc[k]
                } else {
                    &sc[k]
                }
            };
            assert_eq!(either("runAsNonRoot"), true, "{at}");
            assert_ne!(either("runAsUser"), 0, "{at}");
            assert_eq!(either("seccompProfile")["type"], "RuntimeDefault", "{at}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{at}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{at}");
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{at}"
            );
            for k in ["requests", "limits"] {
                assert!(c["resources"][k]["memory"].is_string(), "{at}: {k}");
            }
            assert!(c["resources"]["requests"]["cpu"].is_string(), "{at}");
            // Everything the programs write is on a volume: the root filesystem is read-only.
            let mounts: Vec<&str> = arr(&c["volumeMounts"])
                .iter()
                .map(|m| m["mountPath"].as_str().unwrap())
                .collect();
            assert!(mounts.contains(&"/tmp"), "{at}: {mounts:?}");
            assert!(mounts.contains(&"/var/lib/mc-backup"), "{at}: {mounts:?}");
            // Every mount has its volume, and no two volumes share a name (in the sidecar the pod
            // is MongoDB's, with volumes of its own).
            let volumes: Vec<&str> = arr(&spec["volumes"])
                .iter()
                .map(|v| v["name"].as_str().unwrap())
                .collect();
            let unique: BTreeSet<&str> = volumes.iter().copied().collect();
            assert_eq!(unique.len(), volumes.len(), "{at}: {volumes:?}");
            for m in arr(&c["volumeMounts"]) {
                let v = m["name"].as_str().unwrap();
                assert!(unique.contains(v), "{at}: mount of a missing volume {v}");
                // Secret files are 0440 root:<fsGroup>: the program (65532) reads them only
                // through the pod's fsGroup.
                let volume = arr(&spec["volumes"])
                    .iter()
                    .find(|x| x["name"] == v)
                    .unwrap();
                let mode = volume["secret"]["defaultMode"]
                    .as_u64()
                    .or(volume["projected"]["defaultMode"].as_u64());
                if mode.is_some_and(|m| m & 0o004 == 0) {
                    assert!(
                        psc["fsGroup"].is_u64(),
                        "{at}: volume {v} is mode {:o} but the pod has no fsGroup",
                        mode.unwrap()
                    );
                }
            }
            if bin == "mc-agent" {
                let a = args(c);
                let timeout = flag_value(&a, "--shutdown-timeout").unwrap_or("25s".into());
                let timeout = humantime::parse_duration(&timeout).unwrap();
                let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
                assert!(
                    Duration::from_secs(grace) > timeout,
                    "{at}: terminationGracePeriodSeconds {grace} must exceed --shutdown-timeout {timeout:?}"
                );
            }
        }
    }
}

/// The policy a pod mounts, loaded with mc-core's own loader.
fn mounted_policy(
    docs: &[Value],
    spec: &Value,
    c: &Value,
    dir: &Path,
) -> (Policy, String, BTreeMap<String, String>) {
    let policy_path = flag_value(&args(c), "--policy").expect("--policy");
    let (mount_dir, file) = policy_path.rsplit_once('/').unwrap();
    let (volume, cm) = mount_source(spec, c, mount_dir).expect("policy mount");
    assert_eq!(volume, "configMap");
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && name(d) == cm)
        .unwrap_or_else(|| panic!("ConfigMap {cm} is not in the build"));
    let text = cm["data"][file].as_str().unwrap().to_owned();
    let path = dir.join(format!("{}.yaml", name(cm)));
    std::fs::write(&path, &text).unwrap();
    let policy = Policy::load(&path).unwrap_or_else(|e| panic!("{}: {e}", name(cm)));
    let env: BTreeMap<String, String> = arr(&c["env"])
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e.to_string()))
        .collect();
    (policy, text, env)
}

/// (volume kind, source name) of the volume mounted at `dir`; for a projected volume the kind is
/// "projected" and the name lists its secrets.
fn mount_source(spec: &Value, c: &Value, dir: &str) -> Option<(String, String)> {
    let m = arr(&c["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"] == dir)?;
    let v = arr(&spec["volumes"])
        .iter()
        .find(|v| v["name"] == m["name"])?;
    if let Some(cm) = v["configMap"]["name"].as_str() {
        return Some(("configMap".into(), cm.into()));
    }
    if let Some(s) = v["secret"]["secretName"].as_str() {
        return Some(("secret".into(), s.into()));
    }
    if v["projected"].is_object() {
        return Some(("projected".into(), v["projected"].to_string()));
    }
    v["emptyDir"]
        .is_object()
        .then(|| ("emptyDir".into(), String::new()))
        .or_else(|| {
            v["hostPath"]
                .is_object()
                .then(|| ("hostPath".into(), String::new()))
        })
}

/// A `{ file: PATH }` reference resolves to a key of a mounted Secret.
fn assert_file_mounted(at: &str, spec: &Value, c: &Value, path: &Path) {
    let dir = path.parent().unwrap().to_str().unwrap();
    let file = path.file_name().unwrap().to_str().unwrap();
    let (kind, source) =
        mount_source(spec, c, dir).unwrap_or_else(|| panic!("{at}: nothing mounted at {dir}"));
    let items: Vec<Value> = match kind.as_str() {
        "secret" => {
            let v = arr(&spec["volumes"])
                .iter()
                .find(|v| v["secret"]["secretName"] == source.as_str())
                .unwrap();
            arr(&v["secret"]["items"]).to_vec()
        }
        "projected" => {
            let p: Value = serde_json::from_str(&source).unwrap();
            arr(&p["sources"])
                .iter()
                .flat_map(|s| arr(&s["secret"]["items"]).iter().cloned())
                .collect()
        }
        other => panic!("{at}: {dir} is a {other} volume, not a Secret"),
    };
    assert!(
        items.iter().any(|i| i["path"] == file),
        "{at}: no Secret key mounted as {}",
        path.display()
    );
}

#[test]
fn policies_load_and_agree_with_the_pods() {
    let dir = tempfile::tempdir().unwrap();
    let production = std::fs::read_to_string(root().join("policies/production.yaml")).unwrap();
    for build in BUILDS {
        let docs = docs(build);
        for (pod, spec, c, bin) in our_containers(docs) {
            let at = format!("{build} {pod} {bin}");
            if *build == "kustomize:base" {
                continue; // the policy ConfigMap comes from an overlay
            }
            let (policy, text, env) = mounted_policy(docs, spec, c, dir.path());
            if build.ends_with("production") || build.contains("sidecar") {
                assert_eq!(
                    text.trim_end(),
                    production.trim_end(),
                    "{at}: policy drifted from policies/production.yaml"
                );
            }
            let mut files = vec![];
            let mut vars = vec![];
            let mut note = |r: &SecretRef| match r {
                SecretRef::File(p) => files.push(p.clone()),
                SecretRef::Env(v) => vars.push(v.clone()),
            };
            note(&policy.source.mongodb.uri);
            if let Some(l) = &policy.lease {
                note(&l.redis_url);
            }
            if let Some(d) = &policy.drills {
                note(&d.scratch_uri);
            }
            match &policy.repository.keyring {
                KeyringSource::File(p) => files.push(p.clone()),
                KeyringSource::Env(v) => vars.push(v.clone()),
            }
            for f in &files {
                assert_file_mounted(&at, spec, c, f);
            }
            if bin == "mc-agent" {
                // `mc-agent run` resolves every reference at start-up, the environment's too.
                for v in &vars {
                    assert!(
                        env.contains_key(v),
                        "{at}: policy needs ${v}; env has {env:?}"
                    );
                }
                if policy.kafka.is_some() {
                    assert!(env.contains_key("MC_KAFKA_BOOTSTRAP"), "{at}");
                }
                let spool = policy.spool_dir();
                assert!(
                    spool.starts_with("/var/lib/mc-backup"),
                    "{at}: spool {} not on the spool volume",
                    spool.display()
                );
                // Probes and Prometheus reach the port the policy listens on, on the pod's IP.
                let listen = policy.http.listen;
                assert!(listen.ip().is_unspecified(), "{at}: http.listen {listen}");
                let port = arr(&c["ports"])
                    .iter()
                    .find(|p| p["name"] == "http-metrics")
                    .unwrap_or_else(|| panic!("{at}: no port http-metrics"));
                assert_eq!(port["containerPort"], listen.port(), "{at}");
                for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                    assert_eq!(c[probe]["httpGet"]["port"], "http-metrics", "{at} {probe}");
                }
            }
        }
    }
}

#[test]
fn metrics_service_and_monitors_point_at_the_agent_port() {
    for build in INSTALLS {
        let docs = docs(build);
        let ds = of_kind(docs, "DaemonSet")[0];
        let pod_labels = ds["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .unwrap();
        let svc = of_kind(docs, "Service")
            .into_iter()
            .find(|s| name(s).ends_with("agent-metrics"))
            .unwrap_or_else(|| panic!("{build}: no metrics Service"));
        for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
            assert_eq!(pod_labels.get(k), Some(v), "{build}: Service selector {k}");
        }
        let port = &arr(&svc["spec"]["ports"])[0];
        let pname = port["name"].as_str().unwrap();
        assert!(
            pname.starts_with("http-"),
            "{build}: Istio needs an http- port name: {pname}"
        );
        assert_eq!(port["targetPort"], "http-metrics", "{build}");
        let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true", "{build}");
        assert_eq!(annotations["prometheus.io/path"], "/metrics", "{build}");
        assert_eq!(
            annotations["prometheus.io/port"],
            port["port"].to_string(),
            "{build}"
        );
        let svc_labels = svc["metadata"]["labels"].as_object().unwrap();
        for sm in of_kind(docs, "ServiceMonitor") {
            for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
                assert_eq!(
                    svc_labels.get(k),
                    Some(v),
                    "{build}: ServiceMonitor selector {k}"
                );
            }
            for e in arr(&sm["spec"]["endpoints"]) {
                assert_eq!(e["port"], pname, "{build}");
                assert_eq!(e["path"], "/metrics", "{build}");
            }
        }
    }
    // The sidecar's PodMonitor selects the patched pods' label and the agent's port, and the pods
    // carry the scrape annotations.
    for build in SIDECAR_EXAMPLES {
        let docs = docs(build);
        let sts = of_kind(docs, "StatefulSet")[0];
        let template = &sts["spec"]["template"];
        let labels = &template["metadata"]["labels"];
        let pm = of_kind(docs, "PodMonitor")[0];
        for (k, v) in pm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&labels[k], v, "{build}: PodMonitor selector {k}");
        }
        let agent = arr(&template["spec"]["containers"])
            .iter()
            .find(|c| c["name"] == "mc-agent")
            .unwrap_or_else(|| panic!("{build}: no mc-agent container"));
        let port = arr(&agent["ports"])
            .iter()
            .find(|p| p["name"] == "http-metrics")
            .unwrap_or_else(|| panic!("{build}: mc-agent has no port http-metrics"));
        let annotations = &template["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true", "{build}");
        assert_eq!(annotations["prometheus.io/path"], "/metrics", "{build}");
        assert_eq!(
            annotations["prometheus.io/port"],
            port["containerPort"].to_string(),
            "{build}"
        );
        for e in arr(&pm["spec"]["podMetricsEndpoints"]) {
            assert_eq!(e["port"], "http-metrics", "{build}");
            assert_eq!(e["path"], "/metrics", "{build}");
        }
    }
}

/// The job label McBackupAgentsDown looks for (`up{job="…"}`).
fn agents_down_job(docs: &[Value]) -> Option<String> {
    let (rule, _) = rules(docs)
        .into_iter()
        .find(|(r, _)| r["alert"] == "McBackupAgentsDown")?;
    let expr = rule["expr"].as_str().unwrap();
    let job = expr.split("job=\"").nth(1)?.split('"').next()?;
    Some(job.to_owned())
}

/// McBackupAgentsDown sees the agents of every variant: a ServiceMonitor's targets have the
/// Service's name as their job; a PodMonitor's have "<namespace>/<name>" unless relabelled, so
/// the sidecars' PodMonitors set it to the rule's job.
#[test]
fn agents_down_alert_matches_the_scrape_job() {
    for build in INSTALLS {
        let docs = docs(build);
        let job = agents_down_job(docs).unwrap_or_else(|| panic!("{build}: no McBackupAgentsDown"));
        let services: Vec<&str> = of_kind(docs, "Service").into_iter().map(name).collect();
        assert!(
            services.contains(&job.as_str()),
            "{build}: job {job}, Services {services:?}"
        );
    }
    for build in SIDECAR_EXAMPLES.iter().chain(HELM_SIDECAR) {
        let docs = docs(build);
        // Kustomize: the rules come from the base, installed beside the sidecar Component.
        let job = agents_down_job(docs)
            .or_else(|| agents_down_job(self::docs("kustomize:base")))
            .unwrap();
        for pm in of_kind(docs, "PodMonitor") {
            for e in arr(&pm["spec"]["podMetricsEndpoints"]) {
                let relabelled = arr(&e["relabelings"]).iter().any(|r| {
                    r["targetLabel"] == "job"
                        && r["replacement"] == job.as_str()
                        && arr(&r["sourceLabels"]).is_empty()
                        && r["action"].as_str().unwrap_or("replace") == "replace"
                });
                assert!(
                    relabelled,
                    "{build} PodMonitor {}: job is not {job}",
                    name(pm)
                );
            }
        }
    }
}

/// Every alert rule of a build: (rule object, name of its PrometheusRule).
fn rules(docs: &[Value]) -> Vec<(&Value, &str)> {
    of_kind(docs, "PrometheusRule")
        .into_iter()
        .flat_map(|pr| {
            arr(&pr["spec"]["groups"])
                .iter()
                .flat_map(|g| arr(&g["rules"]).iter())
                .map(move |r| (r, name(pr)))
        })
        .collect()
}

#[test]
fn alert_rules_are_complete_and_link_existing_runbooks() {
    let wanted = [
        "McBackupRpoAboveTarget",
        "McBackupNoDurableUpload",
        "McBackupTimelineGap",
        "McBackupDrillFailed",
        "McBackupDrillRtoAboveTarget",
        "McBackupLeaseFlapping",
    ];
    for build in INSTALLS.iter().chain(HELM_SIDECAR) {
        let rules = rules(docs(build));
        let names: BTreeSet<&str> = rules
            .iter()
            .filter_map(|(r, _)| r["alert"].as_str())
            .collect();
        for w in wanted {
            assert!(names.contains(w), "{build}: no alert {w}");
        }
        for (r, _) in &rules {
            let alert = r["alert"].as_str().unwrap();
            assert!(r["expr"].is_string(), "{build} {alert}");
            let sev = r["labels"]["severity"].as_str().unwrap_or("");
            assert!(
                ["critical", "warning"].contains(&sev),
                "{build} {alert}: severity"
            );
            assert!(r["annotations"]["summary"].is_string(), "{build} {alert}");
            let url = r["annotations"]["runbook_url"].as_str().unwrap();
            let file = url
                .split("/blob/main/")
                .nth(1)
                .unwrap_or_else(|| panic!("{url}"));
            assert!(
                root().join(file).exists(),
                "{build} {alert}: runbook {file} missing"
            );
        }
    }
}

/// Metric names in a PromQL expression: identifiers that are not functions, keywords, label
/// names (inside `{}` or after by/without/on/ignoring/group_*), strings, durations or variables.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "Inf",
        "NaN",
        // aggregation operators, written before their `by (…)`
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "limitk",
        "limit_ratio",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Drop strings, label matchers, ranges and Grafana variables.
    let mut s = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut quote: Option<char> = None;
    for ch in expr.chars() {
        if let Some(q) = quote {
            if ch == q {
                quote = None;
            }
            continue;
        }
        match ch {
            '"' | '\'' | '`' => quote = Some(ch),
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            _ => s.push(ch),
        }
    }
    let chars: Vec<char> = s.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let ch = chars[i];
        if ch == '$' {
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            continue;
        }
        if ch.is_ascii_digit() || ch == '.' {
            // numbers and durations (5m, 1e3)
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let call = chars.get(j) == Some(&'(');
            if GROUPING.contains(&word.as_str()) {
                skip_group = call;
            } else if !call && !KEYWORDS.contains(&word.as_str()) {
                names.insert(word);
            }
            continue;
        }
        if ch == '(' && skip_group {
            // label list of by/without/on/ignoring/group_*
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            skip_group = false;
        }
        i += 1;
    }
    names
}

#[test]
fn promql_names_are_found() {
    let n = metric_names(
        r#"min by (namespace, source) (mc_rpo_seconds{a="b"} >= 0) > 900 and on (namespace, job_name) (time() - kube_job_created[5m]) < 6e5 unless sum without(x) (rate(mc_x_total[$__rate_interval]))"#,
    );
    assert_eq!(
        n.into_iter().collect::<Vec<_>>(),
        ["kube_job_created", "mc_rpo_seconds", "mc_x_total"]
    );
}

/// (where, expression) of every dashboard query.
fn dashboard_queries() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(root().join("deploy/monitoring/grafana-dashboard.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut out = Vec::new();
    for p in arr(&dash["panels"]) {
        let title = p["title"].as_str().unwrap_or("").to_owned();
        for t in arr(&p["targets"]) {
            out.push((title.clone(), t["expr"].as_str().unwrap().to_owned()));
        }
    }
    for v in arr(&dash["templating"]["list"]) {
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or("");
        // label_values(metric, label)
        if let Some(inner) = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let metric = inner.rsplit_once(',').map_or(inner, |(m, _)| m);
            out.push((format!("variable {}", v["name"]), metric.trim().to_owned()));
        }
    }
    out
}

/// Starts `mc-agent run` with lease and Kafka capture on (as production), waits until every
/// series is exported, requests the manifests' probe paths, and checks every metric name the
/// alerts and the dashboard use. Needs MongoDB, Redis and Kafka (scripts/services.sh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_alerted_metrics_exist_on_a_running_agent() {
    let dir = tempfile::tempdir().unwrap();
    let source_id = unique_db("deploy").replace('_', "-");
    let port = free_port();
    mc_core::crypto::keys::create_keyring_file(&dir.path().join("keyring")).unwrap();
    std::fs::write(dir.path().join("scratch"), mongodb_uri()).unwrap();
    let extra = format!(
        "capture:\n  seal_interval: 300ms\nlease:\n  redis_url: {{ env: MC_REDIS_URL }}\n  ttl: 5s\n\
http:\n  listen: 127.0.0.1:{port}\n\
kafka:\n  bootstrap_servers: {{ env: MC_KAFKA_BOOTSTRAP }}\n  interval: 1s\n\
drills:\n  schedule: \"0 0 3 * * Sun\"\n  scratch_uri: {{ file: {dir}/scratch }}\n",
        dir = dir.path().display(),
    );
    let policy = mc_tests::agent::write_test_policy(
        dir.path(),
        "deploy-test",
        &source_id,
        "MC_TEST_MONGODB_URI",
        &extra,
    );
    let log = dir.path().join("agent.log");
    let mut agent = Command::new(workspace_bin("mc-agent"))
        .args(["run", "--policy"])
        .arg(&policy)
        .env("MC_TEST_MONGODB_URI", mongodb_uri())
        .env("MC_REDIS_URL", redis_url())
        .env("MC_KAFKA_BOOTSTRAP", kafka_bootstrap())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start mc-agent");
    let get = |path: &str| http_get(port, path);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // Every series is exported once the agent holds the lease and Kafka capture has run a cycle
    // (mc_kafka_* appear only then).
    let t0 = Instant::now();
    let metrics = loop {
        if let Some((200, body)) = get("/metrics") {
            if get("/readyz").is_some_and(|(c, _)| c == 200)
                && body.contains("# TYPE mc_kafka_rpo_seconds gauge")
                && !body.contains(&format!("mc_rpo_seconds{{source=\"{source_id}\"}} -1"))
            {
                break body;
            }
        }
        if let Ok(Some(status)) = agent.try_wait() {
            panic!("mc-agent exited {status}: {}", log_text());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "agent not capturing with every metric within 60 s; log: {}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Probe paths of every manifest: served, and 200 on a capturing agent.
    let mut paths = BTreeSet::new();
    for build in BUILDS {
        for (_, _, c, bin) in our_containers(docs(build)) {
            if bin == "mc-agent" {
                for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                    paths.insert(c[probe]["httpGet"]["path"].as_str().unwrap().to_owned());
                }
            }
        }
    }
    paths.insert("/metrics".into()); // ServiceMonitor / PodMonitor / annotations
    for path in &paths {
        let (code, _) = get(path).unwrap_or_else(|| panic!("GET {path}: no answer"));
        assert_eq!(code, 200, "GET {path}");
    }
    assert_eq!(get("/no-such-path").map(|r| r.0), Some(404));

    let exported: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let check = |at: &str, expr: &str, pending_allowed: bool| {
        for m in metric_names(expr) {
            let ok = exported.contains(&m)
                || EXTERNAL_METRICS.contains(&m.as_str())
                || (pending_allowed && PENDING_DRILL_METRICS.contains(&m.as_str()));
            assert!(
                ok,
                "{at}: metric {m} is not exported by mc-agent (exported: {exported:?})"
            );
        }
    };
    let mut checked = 0;
    for build in BUILDS {
        for (rule, pr) in rules(docs(build)) {
            let at = format!("{build} {pr} {}", rule["alert"]);
            check(
                &at,
                rule["expr"].as_str().unwrap(),
                pr.ends_with("drill-metrics"),
            );
            checked += 1;
        }
    }
    for (title, expr) in dashboard_queries() {
        check(
            &format!("dashboard panel {title:?}"),
            &expr,
            title.contains("requires mc_drill_"),
        );
        checked += 1;
    }
    assert!(checked > 40, "{checked}");

    Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(agent.wait().unwrap().code(), Some(0), "{}", log_text());
}

fn help(bin: &str, sub: &[&str]) -> String {
    let out = Command::new(workspace_bin(bin))
        .args(sub)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{bin} {sub:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_flag_in_a_manifest_exists() {
    let mut seen = 0;
    for build in BUILDS {
        for (pod, _, c, bin) in our_containers(docs(build)) {
            let a = args(c);
            // The subcommand is the first argument that is not a flag (drill, run, …).
            let sub: Vec<&str> = a
                .iter()
                .take_while(|x| !x.starts_with('-'))
                .map(String::as_str)
                .collect();
            assert!(!sub.is_empty(), "{build} {pod}: no subcommand in {a:?}");
            let text = help(&bin, &sub);
            for flag in a.iter().filter(|x| x.starts_with("--")) {
                let flag = flag.split('=').next().unwrap();
                assert!(
                    text.contains(&format!("{flag} ")) || text.contains(&format!("{flag}\n")),
                    "{build} {pod}: `{bin} {}` has no {flag}",
                    sub.join(" ")
                );
                seen += 1;
            }
        }
    }
    assert!(seen >= 20, "{seen}");
}

#[test]
fn dockerfile_builds_the_workspace_binaries() {
    let dockerfile = std::fs::read_to_string(root().join("deploy/container/Dockerfile")).unwrap();
    // The toolchain is rust-toolchain.toml's.
    let toolchain = std::fs::read_to_string(root().join("rust-toolchain.toml")).unwrap();
    let channel = toolchain
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        dockerfile.contains(&format!("ARG RUST_VERSION={channel}\n")),
        "Dockerfile's RUST_VERSION is not {channel}"
    );
    assert!(dockerfile.contains("FROM rust:${RUST_VERSION}-"));
    // The binaries of the workspace's packages, by cargo's own account.
    let meta = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(meta.status.success());
    let meta: Value = serde_json::from_slice(&meta.stdout).unwrap();
    let mut bins = BTreeMap::new();
    for p in arr(&meta["packages"]) {
        for t in arr(&p["targets"]) {
            if arr(&t["kind"]).iter().any(|k| k == "bin") {
                bins.insert(
                    t["name"].as_str().unwrap().to_owned(),
                    p["name"].as_str().unwrap().to_owned(),
                );
            }
        }
    }
    let copied: Vec<(String, String)> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY --from=build /out/"))
        .map(|l| {
            let (src, dst) = l.split_once(' ').unwrap();
            (src.to_owned(), dst.trim().to_owned())
        })
        .collect();
    assert_eq!(copied.len(), 2, "{copied:?}");
    for (bin, dst) in &copied {
        assert_eq!(
            bins.get(bin).map(String::as_str),
            Some(bin.as_str()),
            "{bin} is not a binary of package {bin}"
        );
        assert_eq!(dst, &format!("/usr/local/bin/{bin}"));
        assert!(
            dockerfile.contains(&format!("-p {bin}"))
                && dockerfile.contains(&format!("--bin {bin}")),
            "Dockerfile does not build {bin}"
        );
        assert!(dockerfile.contains(&format!("target/release/{bin}")));
    }
    // Every command in the manifests is a copied binary.
    for build in BUILDS {
        for (pod, _, c, _) in our_containers(docs(build)) {
            let cmd = c["command"][0].as_str().unwrap();
            assert!(
                copied.iter().any(|(_, dst)| dst == cmd),
                "{build} {pod}: {cmd} is not in the image"
            );
        }
    }
    assert!(dockerfile.contains("FROM gcr.io/distroless/cc-debian12:nonroot"));
    assert!(dockerfile.contains("\nUSER 65532:65532\n"));

    let engine = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if engine {
        let status = Command::new("docker")
            .args([
                "build",
                "-f",
                "deploy/container/Dockerfile",
                "-t",
                "mc-backup:deploy-test",
                ".",
            ])
            .current_dir(root())
            .status()
            .unwrap();
        assert!(status.success(), "docker build failed");
        for bin in ["mc-agent", "mc-restore"] {
            let out = Command::new("docker")
                .args([
                    "run",
                    "--rm",
                    "--entrypoint",
                    &format!("/usr/local/bin/{bin}"),
                    "mc-backup:deploy-test",
                    "version",
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "{bin} version in the image");
        }
    } else {
        eprintln!(
            "deploy: no container engine answers `docker info`: the Dockerfile was checked statically \
             (toolchain, copied binaries = the workspace's, commands in the manifests), not built"
        );
    }
}
