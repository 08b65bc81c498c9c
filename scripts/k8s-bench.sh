#!/usr/bin/env bash
# kepler's cost inside a real one-node cluster (scripts/k8s-cluster.sh): the DaemonSet of
# deploy/kubernetes/ with N sleeping pods beside it. Prints the cluster start-up time, kepler's
# CPU (share of one core over the window) and RSS, and the kubelet `/pods` poll cost as kepler
# measures it (kepler_kube_request_duration_seconds_total / requests), then tears down.
#
# usage: sudo scripts/k8s-bench.sh [PODS (50)] [SECONDS (120)]
set -euo pipefail
pods="${1:-50}"
secs="${2:-120}"
here="$(cd "$(dirname "$0")" && pwd)"
dir=$(mktemp -d /tmp/kepler-k8s-bench-XXXXXX)
trap '"$here/k8s-cluster.sh" down "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT

t0=$(date +%s.%N)
export KUBECONFIG=$("$here/k8s-cluster.sh" up "$dir")
t1=$(date +%s.%N)
"$here/k8s-cluster.sh" images "$dir"
# Everything but the Prometheus Operator's objects (its CRDs are not installed), one document
# per file, the image swapped for the one built here.
for f in "$here"/../deploy/kubernetes/[0-5]*.yaml; do cat "$f"; echo '---'; done \
  | sed 's|image: ghcr.io/kepler-rs/kepler:0.1.0|image: kepler-rs/kepler:dev|' | kubectl apply -f - >/dev/null
kubectl -n kepler rollout status daemonset/kepler --timeout=120s >/dev/null
kubectl create namespace bench >/dev/null
for i in $(seq "$pods"); do
  cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: sleeper-$i, namespace: bench}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: sleeper
    image: kepler-rs/busybox:dev
    imagePullPolicy: Never
    command: [sh, -c, "sleep 100000"]
    resources: {requests: {cpu: 1m, memory: 4Mi}}
---
EOF
done | kubectl apply -f - >/dev/null
t2=$(date +%s.%N)
until [ "$(kubectl -n bench get pods --no-headers 2>/dev/null | grep -c ' Running ')" = "$pods" ]; do sleep 1; done
t3=$(date +%s.%N)
# Let the kubelet poll pick the pods up before measuring.
sleep 20

pod_ip=$(kubectl -n kepler get pods -o jsonpath='{.items[0].status.podIP}')
pid=$(pgrep -f '^/usr/bin/kepler --config.file' | head -n1)
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
metric() { curl -s "http://$pod_ip:28282/metrics" | awk -v m="$1" '$1 ~ "^"m {s += $2} END {print s + 0}'; }
c0=$(ticks); r0=$(metric 'kepler_kube_requests_total\{.*request="kubelet_pods",result="ok"'); d0=$(metric 'kepler_kube_request_duration_seconds_total\{.*request="kubelet_pods"')
sleep "$secs"
c1=$(ticks); r1=$(metric 'kepler_kube_requests_total\{.*request="kubelet_pods",result="ok"'); d1=$(metric 'kepler_kube_request_duration_seconds_total\{.*request="kubelet_pods"')
hz=$(getconf CLK_TCK)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
cached=$(metric 'kepler_kube_cache_pods')
awk -v up="$(echo "$t1 - $t0" | bc)" -v sched="$(echo "$t3 - $t2" | bc)" -v c="$((c1 - c0))" \
  -v hz="$hz" -v s="$secs" -v rss="$rss" -v hwm="$hwm" -v n="$((r1 - r0))" -v d="$(echo "$d1 - $d0" | bc)" \
  -v pods="$pods" -v cached="$cached" 'BEGIN {
  printf "cluster up (cached binaries): %.1f s\n", up
  printf "%d pods Running after apply: %.1f s\n", pods, sched
  printf "kepler pod metadata cache: %d pods\n", cached
  printf "kepler CPU over %d s: %.2f%% of one core\n", s, 100 * c / hz / s
  printf "kepler RSS: %.1f MiB (peak %.1f MiB)\n", rss / 1024, hwm / 1024
  if (n > 0) printf "kubelet /pods polls: %d, mean %.1f ms each\n", n, 1000 * d / n
}'
