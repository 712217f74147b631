{{/* Name of the chart's objects: the release name, or "<release>-mc-backup" when the release name does not contain it. */}}
{{- define "mc-backup.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mc-backup.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/part-of: mc-backup
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "mc-backup.agentSelector" -}}
app.kubernetes.io/name: {{ include "mc-backup.fullname" . }}-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mc-backup.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Pod security context shared by the agent and the drill. */}}
{{- define "mc-backup.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context of the agent and the drill. The user, group and seccomp profile
are set here too, not only in the pod's context: in sidecar mode the pod is MongoDB's. */}}
{{- define "mc-backup.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* "daemonset" or "sidecar" (values.mode), or a failed render. */}}
{{- define "mc-backup.mode" -}}
{{- if not (has .Values.mode (list "daemonset" "sidecar")) -}}
{{- fail (printf "values.mode: %q is neither daemonset nor sidecar" (toString .Values.mode)) -}}
{{- end -}}
{{- .Values.mode -}}
{{- end -}}

{{/* The policy's secret files: MongoDB URI, keyring, drill scratch URI. Every volume name starts
with mc-backup- so that it cannot clash with MongoDB's own volumes in sidecar mode. */}}
{{- define "mc-backup.secretVolumes" -}}
- name: mc-backup-policy
  configMap:
    name: {{ include "mc-backup.fullname" . }}-policy
# The files are 0440: readable through the pod's fsGroup (65532 in the chart's own pods; in
# sidecar mode MongoDB's pod must have an fsGroup too).
- name: mc-backup-mongodb
  secret:
    secretName: {{ .Values.secrets.mongodb.name }}
    defaultMode: 0440
    items:
      - key: {{ .Values.secrets.mongodb.key }}
        path: uri
- name: mc-backup-secrets
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ .Values.secrets.keyring.name }}
          items:
            - key: {{ .Values.secrets.keyring.key }}
              path: keyring
      - secret:
          name: {{ .Values.secrets.drill.name }}
          items:
            - key: {{ .Values.secrets.drill.key }}
              path: drill-mongodb-uri
{{- end -}}

{{- define "mc-backup.secretMounts" -}}
- name: mc-backup-policy
  mountPath: /etc/mc-backup
  readOnly: true
- name: mc-backup-mongodb
  mountPath: /var/run/secrets/mongodb
  readOnly: true
- name: mc-backup-secrets
  mountPath: /var/run/secrets/mc-backup
  readOnly: true
{{- end -}}

{{/* The mc-agent container (a list item), for the DaemonSet and the sidecar alike. */}}
{{- define "mc-backup.agentContainer" -}}
- name: mc-agent
  image: {{ include "mc-backup.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["/usr/local/bin/mc-agent"]
  args:
    - run
    - --policy
    - /etc/mc-backup/policy.yaml
    - --shutdown-timeout
    - {{ .Values.agent.shutdownTimeout | quote }}
  env:
    # The lease holder id is POD_NAME/pid.
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: MC_LOG_FORMAT
      value: {{ .Values.logFormat | quote }}
    - name: MC_LOG_LEVEL
      value: {{ .Values.agent.logLevel | quote }}
    {{- if .Values.secrets.redis.name }}
    - name: MC_REDIS_URL
      valueFrom:
        secretKeyRef:
          name: {{ .Values.secrets.redis.name }}
          key: {{ .Values.secrets.redis.key }}
    {{- end }}
    {{- if .Values.kafka.bootstrap }}
    - name: MC_KAFKA_BOOTSTRAP
      valueFrom:
        configMapKeyRef:
          name: {{ include "mc-backup.fullname" . }}-kafka
          key: bootstrap
    {{- end }}
  {{- include "mc-backup.s3EnvFrom" . | nindent 2 }}
  ports:
    - name: http-metrics
      containerPort: {{ int .Values.agent.metricsPort }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: {{ .Values.agent.probes.livenessPath }}
      port: http-metrics
    periodSeconds: 2
    failureThreshold: 60
  livenessProbe:
    httpGet:
      path: {{ .Values.agent.probes.livenessPath }}
      port: http-metrics
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 3
  readinessProbe:
    httpGet:
      path: {{ .Values.agent.probes.readinessPath }}
      port: http-metrics
    periodSeconds: 10
    timeoutSeconds: 3
  resources:
    {{- toYaml .Values.agent.resources | nindent 4 }}
  securityContext:
    {{- include "mc-backup.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    {{- include "mc-backup.secretMounts" . | nindent 4 }}
    - name: mc-backup-spool
      mountPath: /var/lib/mc-backup
    - name: mc-backup-tmp
      mountPath: /tmp
{{- end -}}

{{/* The volumes of the mc-agent container (list items). A hostPath spool only for the DaemonSet:
sidecars of two MongoDB members on one node would share it. */}}
{{- define "mc-backup.agentVolumes" -}}
{{ include "mc-backup.secretVolumes" . }}
- name: mc-backup-spool
  {{- if and .Values.agent.spool.hostPath (eq (include "mc-backup.mode" .) "daemonset") }}
  hostPath:
    path: {{ .Values.agent.spool.hostPath }}
    type: DirectoryOrCreate
  {{- else }}
  emptyDir:
    sizeLimit: {{ .Values.agent.spool.sizeLimit }}
  {{- end }}
- name: mc-backup-tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{/* The agent pod's annotations: scraping (also through Istio's metrics merging), the policy's
checksum (a changed policy rolls the pods), Istio's proxy first. */}}
{{- define "mc-backup.agentPodAnnotations" -}}
checksum/policy: {{ .Values.policy | sha256sum }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ int .Values.agent.metricsPort | quote }}
prometheus.io/path: /metrics
{{- if .Values.istio.enabled }}
proxy.istio.io/config: '{ "holdApplicationUntilProxyStarts": true }'
{{- end }}
{{- with .Values.agent.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The label by which the PodMonitor (and the PeerAuthentication) find the sidecars. */}}
{{- define "mc-backup.sidecarSelector" -}}
mc-backup.mindcompute.io/sidecar: {{ include "mc-backup.fullname" . | quote }}
{{- end -}}

{{- define "mc-backup.s3EnvFrom" -}}
{{- if .Values.secrets.s3.name -}}
envFrom:
  - secretRef:
      name: {{ .Values.secrets.s3.name }}
      optional: {{ .Values.secrets.s3.optional }}
{{- end }}
{{- end -}}
