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

{{- define "mc-backup.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* The policy's secret files: MongoDB URI, keyring, drill scratch URI. */}}
{{- define "mc-backup.secretVolumes" -}}
- name: policy
  configMap:
    name: {{ include "mc-backup.fullname" . }}-policy
- name: mongodb
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
- name: policy
  mountPath: /etc/mc-backup
  readOnly: true
- name: mongodb
  mountPath: /var/run/secrets/mongodb
  readOnly: true
- name: mc-backup-secrets
  mountPath: /var/run/secrets/mc-backup
  readOnly: true
{{- end -}}

{{- define "mc-backup.s3EnvFrom" -}}
{{- if .Values.secrets.s3.name }}
envFrom:
  - secretRef:
      name: {{ .Values.secrets.s3.name }}
      optional: {{ .Values.secrets.s3.optional }}
{{- end }}
{{- end -}}
