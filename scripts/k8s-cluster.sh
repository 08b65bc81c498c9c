#!/usr/bin/env bash
# A real one-node Kubernetes 1.20.2 cluster on this machine, from Debian: etcd (`etcd-server`), the
# control plane and kubelet built from Debian's `kubernetes` source (scripts/kube-build.sh),
# containerd + runc + CNI plugins from Debian packages. No registry: every image is built here
# (scripts/oci-archive.py) and imported into containerd; pods use `imagePullPolicy: Never`.
#
#   scripts/k8s-cluster.sh up DIR       start everything under DIR, wait for the node to be Ready,
#                                       print the path of an admin kubeconfig
#   scripts/k8s-cluster.sh images DIR   (re)build and import kepler's image as kepler-rs/kepler:dev
#                                       (scripts/dist.sh's shipped binary: `bpf` feature, prebuilt
#                                       object, `dist` profile, stripped) and the operator's as
#                                       kepler-rs/kepler-operator:dev (`dist` profile)
#   scripts/k8s-cluster.sh down DIR     stop everything and remove what `up` created
#   scripts/k8s-cluster.sh env DIR      print shell assignments (KUBECONFIG, NODE_NAME, NODE_IP, ...)
#   scripts/k8s-cluster.sh packages     install the Debian packages `up` needs (containerd, runc, ...)
#
# The pod network stays on this machine: a local bridge, pods in 198.18.0.0/24 (the benchmarking
# range), no masquerade, and pods get routes to the pod range and to the node address only (no
# default route): the kubelet and Prometheus reach pods, pods reach the kubelet, nothing leaves.
#
# Kubelet authentication and authorisation are real: webhook token review, webhook authorisation
# (`nodes/proxy` RBAC), anonymous off, no caches, so a ServiceAccount token is checked the way a
# production kubelet checks it.
#
# What the kubelet and containerd change on the host (sysctls, iptables chains, cgroups, mounts,
# network namespaces, /run and /var/lib paths) is recorded at `up` and undone by `down`; `up` first
# runs `down` on DIR, so a crashed run is cleaned by the next one. One cluster per machine.
#
# Env: KEPLER_CACHE_DIR (default ~/.cache/kepler-rs), K8S_NODE_NAME (default kepler-rs-node),
#      CARGO_TARGET_DIR (for `images`). Needs root.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${KEPLER_CACHE_DIR:-$HOME/.cache/kepler-rs}"
node="${K8S_NODE_NAME:-kepler-rs-node}"
run_dir=/run/kepler-rs-k8s
sock="$run_dir/containerd.sock"
etcd_port=12379
api_port=16443
bridge=kepler-br0
pod_subnet=198.18.0.0/24
pod_gateway=198.18.0.1
pod_range=198.18.0.0/15
service_range=10.96.0.0/12
# Sysctls the kubelet sets at start (it panics the node on an oops): restored by `down`.
sysctls=(kernel.panic kernel.panic_on_oops vm.overcommit_memory kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

log() { printf 'k8s-cluster.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ "${1:-}" = packages ] && [ $# -eq 1 ] && set -- packages ""
[ $# -ge 2 ] || usage
cmd=$1
dir=$2
[ "$(id -u)" = 0 ] || die "needs root (containerd, kubelet, cgroups, network)"
if [ "$cmd" != packages ]; then
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
fi

node_ip() {
  ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "src") {print $(i + 1); exit}}'
}

kubectl_admin() { kubectl --kubeconfig "$dir/admin.kubeconfig" "$@"; }

# ---------------------------------------------------------------------------------------------
# down: every step tolerates a half-started or already-stopped cluster.
# ---------------------------------------------------------------------------------------------

# PIDs of every process whose cgroup (any hierarchy) is under /kubepods: the containers.
container_pids() {
  grep -l ':/kubepods' /proc/[0-9]*/cgroup 2>/dev/null | awk -F/ '{print $3}' || true
}

stop_pidfile() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

remove_cgroups() {
  local root
  for root in /sys/fs/cgroup/* /sys/fs/cgroup/unified /sys/fs/cgroup; do
    [ -d "$root/kubepods" ] || continue
    # Deepest first: a cgroup can only be removed once its children are.
    find "$root/kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

unmount_under() {
  local prefix=$1 m
  # Longest paths first (children before parents); lazily, as a shim may still hold one.
  awk -v p="$prefix" '$5 == p || index($5, p "/") == 1 {print $5}' /proc/self/mountinfo \
    | awk '{print length, $0}' | sort -rn | cut -d' ' -f2- \
    | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
}

down() {
  local f n pids
  for f in kubelet kube-scheduler kube-controller-manager kube-apiserver; do
    stop_pidfile "$dir/pids/$f"
  done
  # Containers and their shims outlive the kubelet: kill them by cgroup and by socket.
  for n in 1 2 3; do
    pids=$(container_pids)
    [ -z "$pids" ] && break
    kill -9 $pids 2>/dev/null || true
    sleep 0.3
  done
  pkill -9 -f "containerd-shim.*-address $sock" 2>/dev/null || true
  stop_pidfile "$dir/pids/containerd"
  stop_pidfile "$dir/pids/etcd"
  # Network: the pods' namespaces (containerd names them cni-*), the bridge, the IPAM state.
  if [ -d /var/run/netns ]; then
    for n in /var/run/netns/cni-*; do
      [ -e "$n" ] || continue
      umount "$n" 2>/dev/null || true
      rm -f "$n"
    done
  fi
  ip link del "$bridge" 2>/dev/null || true
  unmount_under "$dir"
  unmount_under "$run_dir"
  unmount_under /run/containerd
  unmount_under /var/lib/kubelet
  remove_cgroups
  # iptables: the kubelet's and the CNI plugins' chains (KUBE-*, CNI-*) and every rule that
  # jumps to them go; whatever else is there stays.
  local t
  for t in iptables ip6tables; do
    command -v "$t-save" >/dev/null || continue
    if "$t-save" 2>/dev/null | grep -qE '(KUBE|CNI)-'; then
      "$t-save" | grep -vE '^:(KUBE|CNI)-|(KUBE|CNI)-' | "$t-restore" \
        || log "warning: $t-restore failed; $t still has KUBE-/CNI- chains"
    fi
  done
  if [ -f "$dir/state/sysctl.before" ]; then
    while read -r key value; do
      sysctl -qw "$key=$value" 2>/dev/null || true
    done <"$dir/state/sysctl.before"
    rm -f "$dir/state/sysctl.before"
  fi
  # Paths containerd and the kubelet use whatever they are configured with; those under
  # /run/containerd only when no other containerd (a system one) is running.
  rm -rf "$run_dir" /var/lib/cni/results/kepler-rs-* 2>/dev/null || true
  if ! pgrep -x containerd >/dev/null; then
    rm -rf /run/containerd/io.containerd.runtime.v2.task/k8s.io /run/containerd/runc/k8s.io \
      /run/containerd/fifo 2>/dev/null || true
  fi
  if [ -f "$dir/state/created-var-lib-kubelet" ]; then
    rm -rf /var/lib/kubelet
  fi
  rm -rf "$dir/etcd" "$dir/containerd" "$dir/kubelet" "$dir/cni" "$dir/pids" "$dir/state" \
    "$dir"/*.kubeconfig "$dir/pki" "$dir/tokens.csv" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------------------------

need_packages() {
  local need=()
  command -v etcd >/dev/null || need+=(etcd-server)
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  [ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
  [ -x /bin/busybox ] || need+=(busybox-static)
  command -v iptables >/dev/null || need+=(iptables)
  command -v conntrack >/dev/null || need+=(conntrack)
  command -v socat >/dev/null || need+=(socat)
  command -v ethtool >/dev/null || need+=(ethtool)
  command -v ebtables >/dev/null || need+=(ebtables)
  command -v openssl >/dev/null || need+=(openssl)
  command -v gcc >/dev/null || need+=(gcc libc6-dev)
  command -v kubectl >/dev/null || need+=(kubernetes-client)
  command -v python3 >/dev/null || need+=(python3)
  if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "${need[@]}" >/dev/null
  fi
  # The Debian package enables a system containerd; this cluster runs its own.
}

pki() {
  local p="$dir/pki" ip=$1
  mkdir -p "$p"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=kepler-rs-cluster-ca" \
    -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
  sign() { # name subject [san]
    local name=$1 subj=$2 san=${3:-}
    openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$p/$name.key" -out "$p/$name.csr" 2>/dev/null
    if [ -n "$san" ]; then
      printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$p/$name.ext"
    else
      printf 'extendedKeyUsage=clientAuth\n' >"$p/$name.ext"
    fi
    openssl x509 -req -in "$p/$name.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
      -days 30 -extfile "$p/$name.ext" -out "$p/$name.crt" 2>/dev/null
  }
  sign apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:$ip,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  chmod 0600 "$p"/*.key
}

token() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

kubeconfig() { # file user token
  local ca
  ca=$(base64 -w0 <"$dir/pki/ca.crt")
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kepler-rs
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $ca
users:
- name: $2
  user:
    token: $3
contexts:
- name: kepler-rs
  context: {cluster: kepler-rs, user: $2}
current-context: kepler-rs
EOF
  chmod 0600 "$1"
}

start() { # name command...
  local name=$1
  shift
  "$@" >"$dir/logs/$name.log" 2>&1 &
  echo $! >"$dir/pids/$name"
}

wait_for() { # what seconds command...
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}

fail_start() { # name why
  log "$1 did not start: $2; last lines of $dir/logs/$1.log:"
  tail -n 30 "$dir/logs/$1.log" >&2 || true
  down
  exit 1
}

ctr_k8s() { ctr -a "$sock" -n k8s.io "$@"; }

# The pause image (a static program that sleeps until a signal) and the workload image (Debian's
# static busybox with `sh` as entrypoint): built here, there is no registry to pull from.
base_images() {
  local build="$dir/state/images"
  mkdir -p "$build/pause" "$build/busybox/bin"
  cat >"$build/pause.c" <<'EOF'
/* Pod sandbox: holds the pod's namespaces, reaps zombies, exits on SIGINT or SIGTERM. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  signal(SIGINT, quit);
  signal(SIGTERM, quit);
  signal(SIGCHLD, reap);
  for (;;) pause();
}
EOF
  gcc -static -O2 -o "$build/pause/pause" "$build/pause.c"
  cp /bin/busybox "$build/busybox/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$build/busybox/bin/$applet"
  done
  python3 "$here/oci-archive.py" --tag k8s.gcr.io/pause:3.2 --entrypoint /pause \
    --out "$build/pause.tar" "$build/pause"
  python3 "$here/oci-archive.py" --tag kepler-rs/busybox:dev --entrypoint sh \
    --env PATH=/bin --out "$build/busybox.tar" "$build/busybox"
  ctr_k8s images import "$build/pause.tar" >/dev/null
  ctr_k8s images import "$build/busybox.tar" >/dev/null
}

up() {
  local ip t_admin t_node t_kcm t_sched started=$SECONDS
  down
  need_packages
  local bin
  bin=$("$here/kube-build.sh")
  ip=$(node_ip)
  [ -n "$ip" ] || die "no IPv4 source address for a route off this machine: cannot pick the node IP"
  mkdir -p "$dir/logs" "$dir/pids" "$dir/state" "$dir/cni/net.d" "$dir/kubelet" "$run_dir"
  printf 'NODE_NAME=%s\nNODE_IP=%s\n' "$node" "$ip" >"$dir/state/env"

  # What the kubelet changes, to put back at `down`.
  local key
  for key in "${sysctls[@]}"; do
    printf '%s %s\n' "$key" "$(sysctl -n "$key" 2>/dev/null || echo)" >>"$dir/state/sysctl.before"
  done
  [ -d /var/lib/kubelet ] || touch "$dir/state/created-var-lib-kubelet"

  pki "$ip"
  t_admin=$(token) t_node=$(token) t_kcm=$(token) t_sched=$(token)
  cat >"$dir/tokens.csv" <<EOF
$t_admin,admin,admin,"system:masters"
$t_node,system:node:$node,kubelet,"system:nodes"
$t_kcm,system:kube-controller-manager,kube-controller-manager,""
$t_sched,system:kube-scheduler,kube-scheduler,""
EOF
  chmod 0600 "$dir/tokens.csv"
  kubeconfig "$dir/admin.kubeconfig" admin "$t_admin"
  kubeconfig "$dir/kubelet.kubeconfig" "system:node:$node" "$t_node"
  kubeconfig "$dir/controller-manager.kubeconfig" system:kube-controller-manager "$t_kcm"
  kubeconfig "$dir/scheduler.kubeconfig" system:kube-scheduler "$t_sched"

  log "etcd"
  start etcd etcd --name kepler-rs --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-cluster "kepler-rs=http://127.0.0.1:$((etcd_port + 1))" \
    --listen-metrics-urls "http://127.0.0.1:$((etcd_port + 2))"
  wait_for etcd 30 curl -sf "http://127.0.0.1:$etcd_port/health" || fail_start etcd "no /health in 30 s"

  log "kube-apiserver"
  start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 0.0.0.0 --secure-port "$api_port" --advertise-address "$ip" --insecure-port 0 \
    --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
    --client-ca-file "$dir/pki/ca.crt" --token-auth-file "$dir/tokens.csv" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$dir/pki/sa.pub" --service-account-signing-key-file "$dir/pki/sa.key" \
    --service-cluster-ip-range "$service_range" --allow-privileged=true \
    --kubelet-client-certificate "$dir/pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$dir/pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP,Hostname
  wait_for kube-apiserver 90 kubectl_admin get --raw /readyz \
    || fail_start kube-apiserver "not ready in 90 s"

  log "kube-controller-manager, kube-scheduler"
  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$dir/controller-manager.kubeconfig" --leader-elect=false --port 0 \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$dir/pki/sa.key" --root-ca-file "$dir/pki/ca.crt" \
    --cluster-signing-cert-file "$dir/pki/ca.crt" --cluster-signing-key-file "$dir/pki/ca.key" \
    --service-cluster-ip-range "$service_range"
  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$dir/scheduler.kubeconfig" --leader-elect=false --port 0

  log "containerd"
  mkdir -p "$dir/containerd/root" "$dir/containerd/state" "$dir/cni/ipam"
  cat >"$dir/containerd/config.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$run_dir/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$run_dir/containerd.ttrpc.sock"
[debug]
  address = "$run_dir/containerd.debug.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "k8s.gcr.io/pause:3.2"
  # Root in this VM kind lacks CAP_SYS_RESOURCE: a negative oom_score_adj is refused and every
  # sandbox then fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
EOF
  cat >"$dir/cni/net.d/10-kepler-rs.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "kepler-rs-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni/ipam",
        "ranges": [[{"subnet": "$pod_subnet", "gateway": "$pod_gateway"}]],
        "routes": [{"dst": "$pod_range"}, {"dst": "$ip/32"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  start containerd containerd --config "$dir/containerd/config.toml"
  wait_for containerd 30 ctr -a "$sock" version || fail_start containerd "no socket in 30 s"
  base_images

  log "kubelet"
  cat >"$dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 0s}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 0s, cacheUnauthorizedTTL: 0s}
cgroupDriver: cgroupfs
failSwapOn: false
readOnlyPort: 0
clusterDomain: cluster.local
# Images cannot be pulled again here: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
EOF
  start kubelet "$bin/kubelet" --config "$dir/kubelet/config.yaml" \
    --kubeconfig "$dir/kubelet.kubeconfig" \
    --container-runtime remote --container-runtime-endpoint "unix://$sock" \
    --root-dir "$dir/kubelet/root" --cert-dir "$dir/kubelet/pki" \
    --hostname-override "$node" --node-ip "$ip" --v 1
  wait_for kubelet 120 sh -c "kubectl --kubeconfig '$dir/admin.kubeconfig' get node '$node' \
    -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True" \
    || fail_start kubelet "node $node not Ready in 120 s"
  # The default ServiceAccount must exist before pods can be created in a namespace.
  wait_for kube-controller-manager 60 kubectl_admin -n default get serviceaccount default \
    || fail_start kube-controller-manager "no default ServiceAccount in 60 s"
  log "node $node ($ip) Ready in $((SECONDS - started)) s"
  echo "$dir/admin.kubeconfig"
}

# One image from one binary: the binary without debug info, the dynamic loader and every
# library ldd resolves (at the paths the binary asks for), nothing else. ship_image BIN NAME TAG
ship_image() {
  local bin=$1 name=$2 tag=$3 build="$dir/state/images/$2" lib
  rm -rf "$build"
  mkdir -p "$build/usr/bin" "$build/tmp"
  objcopy --strip-debug "$bin" "$build/usr/bin/$name"
  chmod 0755 "$build/usr/bin/$name"
  for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    mkdir -p "$build$(dirname "$lib")"
    cp -L "$lib" "$build$lib"
  done
  python3 "$here/oci-archive.py" --tag "$tag" --entrypoint "/usr/bin/$name" \
    --out "$dir/state/images/$name.tar" "$build"
  ctr_k8s images import "$dir/state/images/$name.tar" >/dev/null
  log "imported $tag ($(du -h "$dir/state/images/$name.tar" | cut -f1))"
}

# kepler's image: the shipped binary of scripts/dist.sh (`dist` profile, eBPF source from the
# committed prebuilt object, so clang is not needed; stripped; kepler.debug stays out of the
# image). CI builds that binary once, in the release-artifact step before this one, and this
# build finds it done. The operator's image (issue 16): the same profile, its own binary.
images() {
  [ -S "$sock" ] || die "no cluster under $dir (run: $0 up $dir)"
  local dist="$dir/state/images/dist" target="${CARGO_TARGET_DIR:-$repo/target}"
  log "scripts/dist.sh (dist profile, bpf feature)"
  DIST_FEATURES=bpf "$here/dist.sh" "$dist" >/dev/null
  ship_image "$dist/kepler" kepler kepler-rs/kepler:dev
  log "cargo build --profile dist -p kepler-operator"
  (cd "$repo" && cargo build --profile dist --locked -q -p kepler-operator --bin kepler-operator)
  ship_image "$target/dist/kepler-operator" kepler-operator kepler-rs/kepler-operator:dev
}

case "$cmd" in
  packages) need_packages ;;
  up) up ;;
  down) down; log "down: $dir cleaned" ;;
  images) images ;;
  env)
    [ -f "$dir/state/env" ] || die "no cluster under $dir"
    cat "$dir/state/env"
    printf 'KUBECONFIG=%s\nAPISERVER=https://127.0.0.1:%s\nCA=%s\n' "$dir/admin.kubeconfig" "$api_port" "$dir/pki/ca.crt"
    ;;
  *) usage ;;
esac
