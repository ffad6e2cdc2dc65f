{{/* Names ---------------------------------------------------------------------------------- */}}

{{- define "product-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release name, plus the chart name unless the release name already contains it. */}}
{{- define "product-proxy.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "product-proxy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "product-proxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "product-proxy.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret the container reads: the existing one, or the one this chart creates. */}}
{{- define "product-proxy.secretName" -}}
{{- default (include "product-proxy.fullname" .) .Values.existingSecret.name -}}
{{- end -}}

{{/* Labels (Kubernetes recommended labels) ----------------------------------------------- */}}

{{/* The version label: the image tag (or appVersion), made a valid label value. */}}
{{- define "product-proxy.version" -}}
{{- default .Chart.AppVersion .Values.image.tag | replace "+" "_" | trunc 63 | trimSuffix "-" | trimSuffix "." | trimSuffix "_" -}}
{{- end -}}

{{/* Selector labels: immutable, so only name, instance and component. Argument: dict ctx component. */}}
{{- define "product-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "product-proxy.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every object's labels. Argument: dict ctx component. */}}
{{- define "product-proxy.labels" -}}
{{ include "product-proxy.selectorLabels" . }}
app.kubernetes.io/version: {{ include "product-proxy.version" .ctx | quote }}
app.kubernetes.io/part-of: {{ .ctx.Values.partOf }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ include "product-proxy.chart" .ctx }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Image ----------------------------------------------------------------------------------- */}}

{{- define "product-proxy.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Monitoring ------------------------------------------------------------------------------ */}}

{{/* "true" when the cluster (or helm template's --api-versions) has the Prometheus Operator API. */}}
{{- define "product-proxy.monitoringApi" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}true{{- end -}}
{{- end -}}

{{- define "product-proxy.serviceMonitor.render" -}}
{{- if and .Values.serviceMonitor.enabled (or .Values.serviceMonitor.forceEnable (include "product-proxy.monitoringApi" .)) -}}true{{- end -}}
{{- end -}}

{{- define "product-proxy.prometheusRule.render" -}}
{{- if and .Values.prometheusRule.enabled (or .Values.prometheusRule.forceEnable (include "product-proxy.monitoringApi" .)) -}}true{{- end -}}
{{- end -}}

{{/* Label matchers that select this release's series in PromQL (no braces). */}}
{{- define "product-proxy.seriesSelector" -}}
{{- if .Values.prometheusRule.seriesSelector -}}
{{- .Values.prometheusRule.seriesSelector -}}
{{- else -}}
{{- printf "job=%q, namespace=%q" (include "product-proxy.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/*
"true" when a PodDisruptionBudget is rendered: podDisruptionBudget.enabled, or when that is null,
whether more than one replica runs (autoscaling.minReplicas with the HPA, else replicaCount).
*/}}
{{- define "product-proxy.pdb.render" -}}
{{- $enabled := .Values.podDisruptionBudget.enabled -}}
{{- if kindIs "invalid" $enabled -}}
{{- $replicas := ternary .Values.autoscaling.minReplicas .Values.replicaCount .Values.autoscaling.enabled -}}
{{- if gt (int $replicas) 1 -}}true{{- end -}}
{{- else if $enabled -}}true{{- end -}}
{{- end -}}

{{/* Where redis.caBundle is mounted; PROXY_REDIS_CA_FILE is the bundle's file in it. */}}
{{- define "product-proxy.redisCaDir" -}}/etc/product-proxy/redis-ca{{- end -}}

{{/* "true" when redis.caBundle names a Secret or a ConfigMap. */}}
{{- define "product-proxy.redisCa" -}}
{{- if or .Values.redis.caBundle.secretName .Values.redis.caBundle.configMapName -}}true{{- end -}}
{{- end -}}

{{/*
The runbook_url annotation of a built-in alert: prometheusRule.runbookBaseUrl plus the alert's
heading anchor there (the name in lower case); nothing when the base is empty. Argument: dict ctx alert.
*/}}
{{- define "product-proxy.runbookUrl" -}}
{{- with .ctx.Values.prometheusRule.runbookBaseUrl -}}
runbook_url: {{ printf "%s#%s" . (lower $.alert) | quote }}
{{- end -}}
{{- end -}}

{{/* Checks across values that the schema cannot express; each fails with one clear line. */}}
{{- define "product-proxy.validate" -}}
{{- $c := .Values.config -}}
{{- if le (float64 $c.lockTimeout) (float64 $c.upstreamTimeout) -}}
{{- fail (printf "config.lockTimeout (%v) must be longer than config.upstreamTimeout (%v): a lock that expires mid-fetch lets a second replica fetch too" $c.lockTimeout $c.upstreamTimeout) -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "url") (not .Values.existingSecret.name) (not .Values.secret.redisUrl) -}}
{{- fail "redis.mode is url but secret.redisUrl is empty (set it, or use existingSecret, or redis.mode=none)" -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "url") .Values.existingSecret.name (not .Values.existingSecret.keys.redisUrl) -}}
{{- fail "redis.mode is url but existingSecret.keys.redisUrl is empty" -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "sentinel") (not .Values.redis.sentinel.hosts) -}}
{{- fail "redis.mode is sentinel but redis.sentinel.hosts is empty (host:port of each Sentinel)" -}}
{{- end -}}
{{- if and (ne .Values.redis.mode "url") .Values.secret.redisUrl -}}
{{- fail (printf "secret.redisUrl is set but redis.mode is %s (set redis.mode=url)" .Values.redis.mode) -}}
{{- end -}}
{{- if and (ne .Values.redis.mode "sentinel") .Values.redis.sentinel.hosts -}}
{{- fail (printf "redis.sentinel.hosts is set but redis.mode is %s (set redis.mode=sentinel)" .Values.redis.mode) -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "cluster") (not .Values.redis.cluster.nodes) -}}
{{- fail "redis.mode is cluster but redis.cluster.nodes is empty (host:port of the seed nodes)" -}}
{{- end -}}
{{- if and (ne .Values.redis.mode "cluster") .Values.redis.cluster.nodes -}}
{{- fail (printf "redis.cluster.nodes is set but redis.mode is %s (set redis.mode=cluster)" .Values.redis.mode) -}}
{{- end -}}
{{- if and (ne .Values.redis.mode "cluster") .Values.redis.tls -}}
{{- fail (printf "redis.tls is for redis.mode=cluster, not %s (with redis.mode=url use a rediss:// URL)" .Values.redis.mode) -}}
{{- end -}}
{{- if and (ne .Values.redis.mode "sentinel") .Values.secret.redisSentinelPassword -}}
{{- fail "secret.redisSentinelPassword is for redis.mode=sentinel" -}}
{{- end -}}
{{- if and (not (has .Values.redis.mode (list "sentinel" "cluster"))) .Values.secret.redisPassword -}}
{{- fail "secret.redisPassword is for redis.mode=sentinel or cluster (with redis.mode=url the password goes in secret.redisUrl)" -}}
{{- end -}}
{{- /* The service refuses PROXY_REDIS_CA_FILE without TLS to Redis: rediss:// or a TLS cluster. */ -}}
{{- if and (include "product-proxy.redisCa" .) (has .Values.redis.mode (list "none" "sentinel")) -}}
{{- fail (printf "redis.caBundle is set but redis.mode is %s (the CA bundle verifies Redis over TLS: a rediss:// URL, or a cluster with redis.tls)" .Values.redis.mode) -}}
{{- end -}}
{{- if and (include "product-proxy.redisCa" .) (eq .Values.redis.mode "url") .Values.secret.redisUrl (not (hasPrefix "rediss://" (lower .Values.secret.redisUrl))) -}}
{{- fail "redis.caBundle is set but secret.redisUrl is not a rediss:// URL (the CA bundle verifies Redis over TLS)" -}}
{{- end -}}
{{- if and (include "product-proxy.redisCa" .) (eq .Values.redis.mode "cluster") (not .Values.redis.tls) -}}
{{- fail "redis.caBundle is set but redis.tls is false (set redis.tls=true for TLS to the cluster nodes)" -}}
{{- end -}}
{{- if and (not (kindIs "invalid" .Values.managementPort)) (eq (int .Values.managementPort) (int .Values.containerPort)) -}}
{{- fail (printf "managementPort (%v) must differ from containerPort: the service refuses to serve both on one port" .Values.managementPort) -}}
{{- end -}}
{{- if and (not (kindIs "invalid" .Values.managementPort)) (eq (int .Values.managementPort) (int .Values.service.port)) -}}
{{- fail (printf "managementPort (%v) must differ from service.port: the Service's management port has the same number" .Values.managementPort) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" -}}
{{- end -}}
{{- $required := .Values.requireApiKeys -}}
{{- if and $required (not .Values.existingSecret.name) (not .Values.secret.apiKeys) -}}
{{- fail "requireApiKeys is true but secret.apiKeys is empty (set the keys, or use existingSecret)" -}}
{{- end -}}
{{- if and $required .Values.existingSecret.name (not .Values.existingSecret.keys.apiKeys) -}}
{{- fail "requireApiKeys is true but existingSecret.keys.apiKeys is empty (name the Secret's key of the API keys)" -}}
{{- end -}}
{{- if and (kindIs "bool" $required) (not $required) (not .Values.existingSecret.name) .Values.secret.apiKeys -}}
{{- fail "requireApiKeys is false but secret.apiKeys is set (remove the keys, or leave requireApiKeys null)" -}}
{{- end -}}
{{- /* The service refuses webhooks it cannot sign. An existingSecret is not seen here: there the
pods refuse to start instead. */ -}}
{{- if and (not .Values.existingSecret.name) .Values.secret.webhookUrls (not .Values.secret.webhookSecret) -}}
{{- fail "secret.webhookUrls is set but secret.webhookSecret is empty (the service refuses to start without PROXY_WEBHOOK_SECRET to sign the webhooks with)" -}}
{{- end -}}
{{- end -}}

{{/* Secrets --------------------------------------------------------------------------------- */}}

{{/*
"true" when the pods must not start without PROXY_API_KEYS: requireApiKeys, or when that is
null, whether secret.apiKeys has keys.
*/}}
{{- define "product-proxy.apiKeysRequired" -}}
{{- $required := .Values.requireApiKeys -}}
{{- if kindIs "invalid" $required -}}
{{- if .Values.secret.apiKeys -}}true{{- end -}}
{{- else if $required -}}true{{- end -}}
{{- end -}}

{{/* Container environment ------------------------------------------------------------------ */}}

{{/*
The secret settings the pods read, as a JSON list of {var, key, optional, file}: the variable,
its key in the Secret, whether the reference may be missing, and the file it becomes with
secret.mountAsFiles. The chart's own Secret holds only the values that are set, so only those
are listed (none optional). An existing Secret is listed by the configured key names: the 1NCE
credentials (and the Redis URL in url mode, and the API keys when required) must be there, the
rest are optional. Each file is named after its variable (PROXY_SECRETS_DIR reads it once),
except required API keys: they are the file api-keys, named by PROXY_API_KEYS_FILE, which the
service re-reads when it changes. An optional one stays PROXY_API_KEYS, because the service
refuses a PROXY_API_KEYS_FILE that names no file, and the key may be missing.
*/}}
{{- define "product-proxy.secretItems" -}}
{{- $mode := .Values.redis.mode -}}
{{- $sentinel := eq $mode "sentinel" -}}
{{- $password := has $mode (list "sentinel" "cluster") -}}
{{- /* variable, values key, wanted in this mode, required in an existing Secret */ -}}
{{- $candidates := list
  (list "PROXY_CLIENT_ID" "clientId" true true)
  (list "PROXY_CLIENT_SECRET" "clientSecret" true true)
  (list "PROXY_API_KEYS" "apiKeys" true (eq (include "product-proxy.apiKeysRequired" .) "true"))
  (list "PROXY_ADMIN_TOKEN" "adminToken" true false)
  (list "PROXY_REDIS_URL" "redisUrl" (eq $mode "url") true)
  (list "PROXY_REDIS_PASSWORD" "redisPassword" $password false)
  (list "PROXY_REDIS_SENTINEL_PASSWORD" "redisSentinelPassword" $sentinel false)
  (list "PROXY_WEBHOOK_URLS" "webhookUrls" true false)
  (list "PROXY_WEBHOOK_SECRET" "webhookSecret" true false) -}}
{{- $items := list -}}
{{- range $candidates -}}
{{- $var := index . 0 -}}
{{- $field := index . 1 -}}
{{- if index . 2 -}}
{{- $item := dict -}}
{{- if $.Values.existingSecret.name -}}
{{- $key := index $.Values.existingSecret.keys $field -}}
{{- if $key -}}
{{- $item = dict "var" $var "key" $key "optional" (not (index . 3)) -}}
{{- end -}}
{{- else if index $.Values.secret $field -}}
{{- $item = dict "var" $var "key" (kebabcase $field) "optional" false -}}
{{- end -}}
{{- if $item -}}
{{- $file := ternary "api-keys" $var (and (eq $var "PROXY_API_KEYS") (not $item.optional)) -}}
{{- $items = append $items (set $item "file" $file) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $items -}}
{{- end -}}

{{/*
PROXY_API_KEYS_FILE's value: the api-keys file in the secrets volume when the pods read required
API keys as files (secret.mountAsFiles); empty otherwise.
*/}}
{{- define "product-proxy.apiKeysFile" -}}
{{- if .Values.secret.mountAsFiles -}}
{{- range include "product-proxy.secretItems" . | fromJsonArray -}}
{{- if and (eq .var "PROXY_API_KEYS") (ne .file .var) -}}
{{- printf "%s/%s" (include "product-proxy.secretsDir" $) .file -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The container port the probes and the scraper use: "management" when set apart, else "http". */}}
{{- define "product-proxy.managementPortName" -}}
{{- if kindIs "invalid" .Values.managementPort -}}http{{- else -}}management{{- end -}}
{{- end -}}

{{/*
The OpenTelemetry variables (otel.enabled), as a JSON list of {name, value}; empty when off.
*/}}
{{- define "product-proxy.otelEnv" -}}
{{- $o := .Values.otel -}}
{{- $env := list -}}
{{- if $o.enabled -}}
{{- $env = append $env (dict "name" "OTEL_TRACES_EXPORTER" "value" "otlp") -}}
{{- with $o.endpoint -}}
{{- $env = append $env (dict "name" "OTEL_EXPORTER_OTLP_ENDPOINT" "value" .) -}}
{{- end -}}
{{- $env = append $env (dict "name" "OTEL_SERVICE_NAME" "value" (default (include "product-proxy.fullname" .) $o.serviceName)) -}}
{{- $env = append $env (dict "name" "OTEL_TRACES_SAMPLER" "value" $o.sampler) -}}
{{- with $o.samplerArg -}}
{{- $env = append $env (dict "name" "OTEL_TRACES_SAMPLER_ARG" "value" .) -}}
{{- end -}}
{{- range $name, $value := $o.extraEnv -}}
{{- $env = append $env (dict "name" $name "value" $value) -}}
{{- end -}}
{{- end -}}
{{- toJson $env -}}
{{- end -}}

{{/* Where the secret files are mounted (secret.mountAsFiles); PROXY_SECRETS_DIR points here. */}}
{{- define "product-proxy.secretsDir" -}}/var/run/secrets/product-proxy{{- end -}}

{{/* Secret settings as env entries (secret.mountAsFiles=false). Argument: dict ctx items. */}}
{{- define "product-proxy.secretEnvs" -}}
{{- range .items }}
- name: {{ .var }}
  valueFrom:
    secretKeyRef:
      name: {{ include "product-proxy.secretName" $.ctx }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end -}}

{{/*
A projected volume of secret items, each a file named by its "file" (secret.mountAsFiles).
Required items and optional ones are separate sources: an optional source skips a missing key
(or Secret), a required one keeps the pod from starting without it. Mode 0440, readable through
podSecurityContext.fsGroup. Argument: dict ctx name items.
*/}}
{{- define "product-proxy.secretVolume" -}}
{{- $required := list -}}
{{- $optional := list -}}
{{- range .items -}}
{{- if .optional -}}
{{- $optional = append $optional . -}}
{{- else -}}
{{- $required = append $required . -}}
{{- end -}}
{{- end -}}
- name: {{ .name }}
  projected:
    defaultMode: 288  # 0440
    sources:
      {{- range $source := list (dict "items" $required "optional" false) (dict "items" $optional "optional" true) }}
      {{- if $source.items }}
      - secret:
          name: {{ include "product-proxy.secretName" $.ctx }}
          {{- if $source.optional }}
          optional: true
          {{- end }}
          items:
            {{- range $source.items }}
            - key: {{ .key }}
              path: {{ .file }}
            {{- end }}
      {{- end }}
      {{- end }}
{{- end -}}

{{/* The chart's Secret data: key (kebab-case of the values key) to value, only when set. */}}
{{- define "product-proxy.secretData" -}}
{{- $s := .Values.secret -}}
{{- $mode := .Values.redis.mode -}}
{{- $data := dict -}}
{{- if $s.clientId }}{{ $_ := set $data "client-id" $s.clientId }}{{ end -}}
{{- if $s.clientSecret }}{{ $_ := set $data "client-secret" $s.clientSecret }}{{ end -}}
{{- if $s.apiKeys }}{{ $_ := set $data "api-keys" (join "," $s.apiKeys) }}{{ end -}}
{{- if $s.adminToken }}{{ $_ := set $data "admin-token" $s.adminToken }}{{ end -}}
{{- if and $s.redisUrl (eq $mode "url") }}{{ $_ := set $data "redis-url" $s.redisUrl }}{{ end -}}
{{- if and $s.redisPassword (has $mode (list "sentinel" "cluster")) }}{{ $_ := set $data "redis-password" $s.redisPassword }}{{ end -}}
{{- if and $s.redisSentinelPassword (eq $mode "sentinel") }}{{ $_ := set $data "redis-sentinel-password" $s.redisSentinelPassword }}{{ end -}}
{{- if $s.webhookUrls }}{{ $_ := set $data "webhook-urls" (join "," $s.webhookUrls) }}{{ end -}}
{{- if $s.webhookSecret }}{{ $_ := set $data "webhook-secret" $s.webhookSecret }}{{ end -}}
{{- range $key, $value := $data }}
{{ $key }}: {{ $value | b64enc }}
{{- end -}}
{{- end -}}

{{/* A number as the service reads it: whole numbers without an exponent (1e+07). */}}
{{- define "product-proxy.number" -}}
{{- if eq (float64 .) (floor .) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{/* Non-secret settings: the ConfigMap's data, PROXY_* name to string value. */}}
{{- define "product-proxy.configData" -}}
{{- $c := .Values.config -}}
PROXY_PORT: {{ include "product-proxy.number" .Values.containerPort | quote }}
{{- if not (kindIs "invalid" .Values.managementPort) }}
PROXY_MANAGEMENT_PORT: {{ include "product-proxy.number" .Values.managementPort | quote }}
{{- end }}
PROXY_UPSTREAM_URL: {{ $c.upstreamUrl | quote }}
PROXY_KEY_PREFIX: {{ $c.keyPrefix | quote }}
PROXY_CACHE_TTL: {{ include "product-proxy.number" $c.cacheTtl | quote }}
PROXY_STALE_TTL: {{ include "product-proxy.number" $c.staleTtl | quote }}
PROXY_UPSTREAM_TIMEOUT: {{ include "product-proxy.number" $c.upstreamTimeout | quote }}
PROXY_UPSTREAM_RETRIES: {{ include "product-proxy.number" $c.upstreamRetries | quote }}
PROXY_LOCK_TIMEOUT: {{ include "product-proxy.number" $c.lockTimeout | quote }}
PROXY_REDIS_TIMEOUT: {{ include "product-proxy.number" $c.redisTimeout | quote }}
PROXY_TOKEN_REFRESH_MARGIN: {{ include "product-proxy.number" $c.tokenRefreshMargin | quote }}
PROXY_LOG_LEVEL: {{ $c.logLevel | quote }}
PROXY_LOG_FORMAT: {{ $c.logFormat | quote }}
PROXY_ACCESS_LOG: {{ $c.accessLog | quote }}
PROXY_ADMIN_REFRESH_INTERVAL: {{ include "product-proxy.number" $c.adminRefreshInterval | quote }}
PROXY_WARMUP: {{ $c.warmup | quote }}
PROXY_HISTORY_VERSIONS: {{ include "product-proxy.number" $c.historyVersions | quote }}
PROXY_HISTORY_MAX_BYTES: {{ include "product-proxy.number" $c.historyMaxBytes | quote }}
PROXY_MAX_STREAMS: {{ include "product-proxy.number" $c.maxStreams | quote }}
PROXY_STREAM_KEEPALIVE: {{ include "product-proxy.number" $c.streamKeepalive | quote }}
PROXY_STREAM_MAX_AGE: {{ include "product-proxy.number" $c.streamMaxAge | quote }}
PROXY_WEBHOOK_TIMEOUT: {{ include "product-proxy.number" $c.webhookTimeout | quote }}
PROXY_WEBHOOK_RETRY_FOR: {{ include "product-proxy.number" $c.webhookRetryFor | quote }}
PROXY_SHUTDOWN_DELAY: {{ include "product-proxy.number" .Values.shutdown.delaySeconds | quote }}
PROXY_SHUTDOWN_GRACE: {{ include "product-proxy.number" .Values.shutdown.graceSeconds | quote }}
{{- if eq .Values.redis.mode "sentinel" }}
PROXY_REDIS_SENTINELS: {{ join "," .Values.redis.sentinel.hosts | quote }}
PROXY_REDIS_SENTINEL_MASTER: {{ .Values.redis.sentinel.masterName | quote }}
PROXY_REDIS_DB: {{ include "product-proxy.number" .Values.redis.sentinel.db | quote }}
{{- else if eq .Values.redis.mode "cluster" }}
PROXY_REDIS_CLUSTER_NODES: {{ join "," .Values.redis.cluster.nodes | quote }}
PROXY_REDIS_TLS: {{ .Values.redis.tls | quote }}
{{- end }}
{{- end -}}

{{/* Seconds the kubelet waits after SIGTERM: the service's delay and grace plus a margin. */}}
{{- define "product-proxy.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown -}}
{{- add (ceil $s.delaySeconds) (ceil $s.graceSeconds) (ceil $s.marginSeconds) -}}
{{- end -}}

{{/* NetworkPolicy egress ports ----------------------------------------------------------------- */}}

{{/*
The port a URL names, else the default. Argument: dict url default. Read as urllib (which the
service and redis-py use) reads it: the authority ends at the first "/", "?" or "#", and the
host follows its last "@", so a password is never mistaken for the port.
*/}}
{{- define "product-proxy.urlPort" -}}
{{- $rest := regexReplaceAll "^[A-Za-z][A-Za-z0-9+.-]*://" .url "" -}}
{{- $host := regexReplaceAll "^.*@" (regexFind "^[^/?#]*" $rest) "" -}}
{{- default .default (regexFind ":[0-9]+$" $host | trimPrefix ":") -}}
{{- end -}}

{{/* The port of an http(s) URL: the one it names, else 443 for https and 80 for http. */}}
{{- define "product-proxy.httpPort" -}}
{{- $default := ternary "443" "80" (hasPrefix "https:" (lower .)) -}}
{{- include "product-proxy.urlPort" (dict "url" . "default" $default) -}}
{{- end -}}

{{/* Ports of the 1NCE API rule, comma-separated: config.upstreamUrl's, then the listed ones. */}}
{{- define "product-proxy.upstreamPorts" -}}
{{- $ports := list (include "product-proxy.httpPort" .Values.config.upstreamUrl) -}}
{{- range .Values.networkPolicy.egress.upstream.ports -}}
{{- $ports = append $ports (toString (int .)) -}}
{{- end -}}
{{- $ports | uniq | join "," -}}
{{- end -}}

{{/*
Ports of the Redis rule, comma-separated (empty: no rule). Read from the values: the port of
secret.redisUrl (6379 unless it names one; none for unix://), of each Sentinel host and of each
cluster seed node. Not readable: the port in a URL kept in an existingSecret and the master's
port the Sentinels name; for those networkPolicy.egress.redis.ports is used, or 6379 when it
is empty. A cluster redirects clients to every node: nodes on ports no seed uses must be
listed (their bus ports, +10000, are between the nodes only).
*/}}
{{- define "product-proxy.redisPorts" -}}
{{- $mode := .Values.redis.mode -}}
{{- $listed := .Values.networkPolicy.egress.redis.ports -}}
{{- $ports := list -}}
{{- $unreadable := false -}}
{{- if eq $mode "url" -}}
{{- $url := .Values.secret.redisUrl -}}
{{- if .Values.existingSecret.name -}}
{{- $unreadable = true -}}
{{- else if not (hasPrefix "unix:" (lower $url)) -}}
{{- $ports = append $ports (include "product-proxy.urlPort" (dict "url" $url "default" "6379")) -}}
{{- end -}}
{{- else if eq $mode "sentinel" -}}
{{- range .Values.redis.sentinel.hosts -}}
{{- $ports = append $ports (regexFind "[0-9]+$" .) -}}
{{- end -}}
{{- $unreadable = true -}}
{{- else if eq $mode "cluster" -}}
{{- range .Values.redis.cluster.nodes -}}
{{- $ports = append $ports (regexFind "[0-9]+$" .) -}}
{{- end -}}
{{- end -}}
{{- range $listed -}}
{{- $ports = append $ports (toString (int .)) -}}
{{- end -}}
{{- if and $unreadable (not $listed) -}}
{{- $ports = append $ports "6379" -}}
{{- end -}}
{{- $ports | uniq | join "," -}}
{{- end -}}

{{/*
Ports of the webhook receivers' rule, comma-separated (empty: no rule): the port of each
secret.webhookUrls entry, then networkPolicy.egress.webhooks.ports. URLs in an existingSecret
cannot be read: only the listed ports are used then.
*/}}
{{- define "product-proxy.webhookPorts" -}}
{{- $ports := list -}}
{{- if not .Values.existingSecret.name -}}
{{- range .Values.secret.webhookUrls -}}
{{- $ports = append $ports (include "product-proxy.httpPort" .) -}}
{{- end -}}
{{- end -}}
{{- range .Values.networkPolicy.egress.webhooks.ports -}}
{{- $ports = append $ports (toString (int .)) -}}
{{- end -}}
{{- $ports | uniq | join "," -}}
{{- end -}}
