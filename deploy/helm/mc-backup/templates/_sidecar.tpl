{{- /*
Sidecar mode (values.mode: sidecar): mc-agent as a container of each pod of MongoDB's StatefulSet,
the Helm form of deploy/kubernetes/sidecar. This chart then renders no DaemonSet, Service or
ServiceMonitor; it renders the policy and Kafka ConfigMaps, a PodMonitor, the alert rules, the drill
CronJob and (externalSecrets.enabled) the ExternalSecrets, in the release namespace, which must be
MongoDB's. The chart that deploys MongoDB lists this one as a dependency (values under
`mc-backup:`, with `mode: sidecar`) and adds the agent to its pod template with the templates below,
each called with this chart's scope, `(index .Subcharts "mc-backup")`:

  spec:
    template:
      metadata:
        labels:
          {{- include "mc-backup.sidecarPodLabels" (index .Subcharts "mc-backup") | nindent 8 }}
        annotations:
          {{- include "mc-backup.sidecarPodAnnotations" (index .Subcharts "mc-backup") | nindent 8 }}
      spec:
        terminationGracePeriodSeconds: 60    # above agent.shutdownTimeout (and MongoDB's own need)
        securityContext:
          fsGroup: 999                       # any: makes the 0440 secret files readable to the agent
        containers:
          - name: mongod
            ...
          {{- include "mc-backup.sidecarContainer" (index .Subcharts "mc-backup") | nindent 10 }}
        volumes:
          {{- include "mc-backup.sidecarVolumes" (index .Subcharts "mc-backup") | nindent 10 }}

deploy/helm/sidecar-example is such a chart (tests/tests/deploy.rs renders and validates it).
Every member then runs an agent; the policy's Redis lease lets one capture. The agent runs under
MongoDB's ServiceAccount: give that one the IRSA role, or use the S3 Secret (secrets.s3).
*/ -}}

{{- define "mc-backup.sidecarOnly" -}}
{{- if ne (include "mc-backup.mode" .) "sidecar" -}}
{{- fail "the mc-backup.sidecar* templates need mode: sidecar in mc-backup's values (one variant per source: no DaemonSet next to the sidecars)" -}}
{{- end -}}
{{- end -}}

{{/* The mc-agent container: one item of the pod's `containers` list. */}}
{{- define "mc-backup.sidecarContainer" -}}
{{- include "mc-backup.sidecarOnly" . -}}
{{ include "mc-backup.agentContainer" . }}
{{- end -}}

{{/* Its volumes (names start with mc-backup-): items of the pod's `volumes` list. */}}
{{- define "mc-backup.sidecarVolumes" -}}
{{- include "mc-backup.sidecarOnly" . -}}
{{ include "mc-backup.agentVolumes" . }}
{{- end -}}

{{/* Pod labels: the PodMonitor selects the sidecars' pods by them. Not for the StatefulSet's
selector (adding one to an existing StatefulSet's selector is refused). */}}
{{- define "mc-backup.sidecarPodLabels" -}}
{{- include "mc-backup.sidecarOnly" . -}}
{{ include "mc-backup.sidecarSelector" . }}
{{- end -}}

{{/* Pod annotations: scraping, the policy's checksum (a changed policy rolls the MongoDB members,
one at a time, as the StatefulSet's update strategy says), Istio's proxy first. */}}
{{- define "mc-backup.sidecarPodAnnotations" -}}
{{- include "mc-backup.sidecarOnly" . -}}
{{ include "mc-backup.agentPodAnnotations" . }}
{{- end -}}
