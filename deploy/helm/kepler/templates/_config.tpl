{{/*
kepler's config file: .Values.config as it stands, with what other values decide filled in:
the Redfish BMC file's path when redfish.secretName is set, and no kubelet-only keys in
apiserver mode (kepler would warn that they do nothing).
*/}}
{{- define "kepler.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if .Values.redfish.secretName -}}
{{- $_ := set $config.experimental.platform.redfish "enabled" true -}}
{{- $_ := set $config.experimental.platform.redfish "configFile" (printf "/etc/kepler-redfish/%s" .Values.redfish.secretKey) -}}
{{- end -}}
{{- if eq $config.kube.podInformer.mode "apiserver" -}}
{{- $_ := unset $config.kube.podInformer "pollInterval" -}}
{{- $_ := unset $config.kube.podInformer "kubeletURL" -}}
{{- $_ := unset $config.kube.podInformer "kubeletInsecureTLS" -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Refuses values that cannot work together, naming them. */}}
{{- define "kepler.checks" -}}
{{- if not (has (printf ":%v" .Values.service.port) .Values.config.web.listenAddresses) -}}
{{- fail (printf "service.port %v is not in config.web.listenAddresses %v" .Values.service.port .Values.config.web.listenAddresses) -}}
{{- end -}}
{{- if and .Values.redfish.secretName (ne .Values.privilege "high") -}}
{{- fail "redfish.secretName needs privilege: high: the Secret's files belong to root with mode 0600, which kepler as uid 65534 cannot read" -}}
{{- end -}}
{{- if not (has .Values.privilege (list "high" "low")) -}}
{{- fail (printf "privilege must be high or low, not %v" .Values.privilege) -}}
{{- end -}}
{{- end -}}
