#!/usr/bin/env bash
# Issue 22, real QEMU guest: a host kepler writes VM g1's energy under vm.passthrough.dir, a
# QEMU guest (TCG; KVM where it works) boots Debian's kernel with a busybox initramfs, mounts
# its tree over 9p read-only and runs kepler with the passthrough meter, printing one JSON
# document per tick on the serial console. The guest's node energy must equal the host's
# kepler_vm_* energy of g1 (host JSON output) since the guest's first reading, per guest tick,
# to the microjoule.
#
# Usage: scripts/vm-passthrough-qemu.sh KEPLER_BINARY [GUEST_SECONDS]
# Needs: qemu-system-x86, busybox-static, apt-get download (Debian bookworm), python3.
set -euo pipefail
KEPLER=$(readlink -f "$1")
SECS=${2:-30}
CACHE=${KEPLER_QEMU_CACHE:-$HOME/.cache/kepler-rs/qemu-guest}
KVER=6.1.0-57-amd64
UUID=0b7e6a52-2c4f-4d7e-9a31-6f5e2d1c0a99
mkdir -p "$CACHE"
if [ ! -f "$CACHE/kernel/boot/vmlinuz-$KVER" ]; then
  (cd "$CACHE" && apt-get download "linux-image-$KVER" && dpkg-deb -x linux-image-"$KVER"_*.deb kernel)
fi
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT

# The guest's initramfs: busybox, kepler and its libraries, the 9p and virtio modules.
R=$W/initramfs
mkdir -p "$R"/{bin,mods,proc,sys,dev,tmp,mnt/pt,lib64,lib/x86_64-linux-gnu}
cp /bin/busybox "$R/bin/"
objcopy --strip-debug "$KEPLER" "$R/kepler"
for l in $(ldd "$KEPLER" | grep -o '/lib[^ ]*'); do cp -L "$l" "$R$l"; done
MODS="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci 9pnet 9pnet_virtio netfs fscache 9p"
for m in $MODS; do cp "$(find "$CACHE/kernel/lib/modules/$KVER" -name "$m.ko")" "$R/mods/"; done
cat > "$R/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $MODS; do insmod /mods/\$m.ko || echo "insmod \$m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro kepler-passthrough /mnt/pt || echo "9p mount failed"
echo GUEST-BOOTED
/kepler --cpu.preferred-meters=passthrough --passthrough.path=/mnt/pt --passthrough.stale-after=10s \
  --monitor.interval=500ms --exporter.prometheus=false --exporter.json=- --log.level=warn &
sleep $SECS
kill -TERM \$!
wait
echo GUEST-DONE
poweroff -f
INIT
chmod +x "$R/init"
(cd "$R" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$W/initrd.gz")

# The host kepler: the model meter (this machine has no RAPL), VM trees under $W/vms.
mkdir -p "$W/vms/$UUID"
cat > "$W/host.yaml" <<YAML
cpu:
  preferredMeters: [model]
monitor:
  interval: 1s
attribution:
  idle: cpu-share
vm:
  passthrough:
    enabled: true
    dir: $W/vms
exporter:
  prometheus:
    enabled: false
  json:
    path: $W/host.jsonl
YAML
"$KEPLER" --config.file="$W/host.yaml" 2> "$W/host.log" &
HOST=$!

ACCEL="-accel tcg"
start=$(date +%s)
qemu-system-x86_64 -name guest=g1,debug-threads=on -uuid "$UUID" $ACCEL -m 1024 -smp 1 \
  -nographic -no-reboot -kernel "$CACHE/kernel/boot/vmlinuz-$KVER" -initrd "$W/initrd.gz" \
  -append "console=ttyS0 quiet loglevel=1 panic=-1" \
  -virtfs "local,path=$W/vms/$UUID,mount_tag=kepler-passthrough,security_model=none,readonly=on" \
  > "$W/serial.log" 2>&1
echo "guest ran $(( $(date +%s) - start )) s (boot included)"
kill -TERM $HOST; wait $HOST || true
grep -q GUEST-BOOTED "$W/serial.log" || { cat "$W/serial.log"; exit 1; }

python3 - "$W/host.jsonl" "$W/serial.log" "$UUID" <<'PY'
import json, sys
host_path, serial_path, uuid = sys.argv[1:]
def docs(path):
    out = []
    for line in open(path, errors="replace"):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            out.append(json.loads(line))
    return out
uj = lambda j: round(j * 1e6)
host = [uj(v["joules"]["package"]) for d in docs(host_path) for v in d["vms"] if v["id"] == uuid]
guest = [uj(z["joules"]) for d in docs(serial_path) for z in d["zones"]
         if z["source"] == "passthrough" and z["zone"] == "package"]
assert host and guest, f"host {len(host)} ticks, guest {len(guest)} ticks"
known = set(host)
base = next((b for b in host if all(b + g in known for g in guest)), None)
assert base is not None, f"no host tick explains the guest\nhost {host}\nguest {guest}"
assert all(a <= b for a, b in zip(guest, guest[1:])), "guest not monotonic"
moved = guest[-1]
print(f"OK: {len(guest)} guest ticks, {len(set(guest))} distinct values, each = host kepler_vm energy "
      f"of g1 minus {base} µJ to the microjoule; guest node energy {moved} µJ over the run")
PY
