#!/usr/bin/env bash
# Builds the Debian bookworm guest that tests/guest_boot.rs boots under qemu, into OUT_DIR:
#   base.raw     ext4 root file system (raw, whole disk, no partition table), made by
#                `mke2fs -d` from a debootstrap tree: nothing is mounted
#   vmlinuz      the guest's kernel, for qemu -kernel
#   initrd.img   its initramfs, for qemu -initrd
#   packages.txt what is installed (dpkg -l), for messages
# The test harness (tests/support/boot.rs) caches OUT_DIR keyed by a hash of this directory,
# so editing any file here rebuilds the guest.
#
# Needs root (debootstrap), debootstrap, e2fsprogs, and a Debian mirror: the one the host's
# apt uses (first bookworm URI in /etc/apt/sources.list.d/*.sources or sources.list), or
# $KVNW_GUEST_MIRROR.
#
# In the guest:
# - cloud-init 22.4 with the NoCloud and ConfigDrive datasources;
# - netplan.io (renderer netplan, with systemd-networkd as backend), ifupdown + isc-dhcp-client
#   + net-tools (renderer eni: cloud-init's eni routes are `route add` lines), systemd-networkd
#   (renderer networkd), systemd-resolved (DNS for all three: networkd feeds it, and ifupdown's
#   if-up.d/resolved hook passes `dns-nameservers` on);
# - kvnw-renderer.service: before cloud-init-local, writes `system_info.network.renderers`
#   from the kernel command line (`kvnw.renderer=netplan|eni|networkd`), so one image serves
#   every renderer; the harness masks the network services of the other renderers with
#   `systemd.mask=` on the same command line;
# - kvnw-report.service: after cloud-final and network-online, prints the guest's network
#   state on the second serial port (ttyS1) between markers, then powers off.
set -euo pipefail

out=${1:?usage: build.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
suite=bookworm

host_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # deb822 stanzas: the URIs of the first one whose Suites name the plain suite.
        awk -v suite="$suite" '
            /^[[:space:]]*$/ { if (uris != "" && ok) { print uris; done = 1; exit } uris = ""; ok = 0; next }
            /^URIs:/ { uris = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
            END { if (!done && uris != "" && ok) print uris }' "$f"
    done
    if [ -f /etc/apt/sources.list ]; then
        awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }' /etc/apt/sources.list
    fi
}
# sed, not head: head would stop reading early, and under pipefail the writer's SIGPIPE (141)
# would fail the script.
mirror=${KVNW_GUEST_MIRROR:-$(host_mirror | sed -n 1p)}
mirror=${mirror:-http://deb.debian.org/debian}

for tool in debootstrap mke2fs; do
    command -v "$tool" >/dev/null || {
        echo "build.sh: $tool not found (apt-get install -y debootstrap e2fsprogs)" >&2
        exit 1
    }
done
[ "$(id -u)" = 0 ] || { echo "build.sh: debootstrap needs root" >&2; exit 1; }

mkdir -p "$out"
root=$out/root
rm -rf "$root"

# debootstrap's resolver does not pick providers of virtual packages: python3-cffi-backend
# (for python3-cryptography) and dbus (for systemd-resolved) are named here.
packages=(
    systemd-sysv udev dbus linux-image-cloud-amd64
    cloud-init python3-cffi-backend
    iproute2 ifupdown isc-dhcp-client net-tools netplan.io systemd-resolved
)
start=$SECONDS
# Three tries: a mirror has been seen to serve a Release file whose signature did not match
# it ("Invalid Release signature") once, and the same command to pass a minute later.
for try in 1 2 3; do
    echo "build.sh: debootstrap $suite from $mirror (try $try)" >&2
    rm -rf "$root"
    if debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
        "$suite" "$root" "$mirror" >"$out/debootstrap.log" 2>&1; then
        break
    fi
    tail -n 20 "$out/debootstrap.log" >&2
    [ -f "$root/debootstrap/debootstrap.log" ] && tail -n 20 "$root/debootstrap/debootstrap.log" >&2
    if [ "$try" = 3 ]; then
        echo "build.sh: debootstrap from $mirror failed 3 times (log above; the mirror comes from the host's apt sources, override with KVNW_GUEST_MIRROR)" >&2
        exit 1
    fi
    sleep 10
done
echo "build.sh: debootstrap took $((SECONDS - start)) s" >&2

# --- configuration -----------------------------------------------------------------------
echo "/dev/vda / ext4 rw,noatime 0 0" >"$root/etc/fstab"
echo guest >"$root/etc/hostname"
# Empty: systemd makes one on first boot (the build host's must not leak into the guest).
: >"$root/etc/machine-id"

cat >"$root/etc/cloud/cloud.cfg.d/90-kvnw.cfg" <<'EOF'
# kubevirt-net-webhook test guest: only the datasources KubeVirt offers.
datasource_list: [NoCloud, ConfigDrive]
EOF

# minbase has neither `locales` nor openssh: cc_locale and cc_ssh would only fail (and log
# Tracebacks the test looks for).
sed -i -e '/^ - locale$/d' -e '/^ - ssh$/d' "$root/etc/cloud/cloud.cfg"

install -m 0755 "$here/kvnw-renderer" "$root/usr/local/sbin/kvnw-renderer"
install -m 0755 "$here/kvnw-report" "$root/usr/local/sbin/kvnw-report"

cat >"$root/etc/systemd/system/kvnw-renderer.service" <<'EOF'
[Unit]
Description=Pick cloud-init's network renderer from the kernel command line
DefaultDependencies=no
After=systemd-remount-fs.service
Before=cloud-init-local.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/kvnw-renderer

[Install]
WantedBy=cloud-init-local.service
EOF

cat >"$root/etc/systemd/system/kvnw-report.service" <<'EOF'
[Unit]
Description=Print the network state on ttyS1, then power off
After=cloud-final.service network-online.target systemd-resolved.service
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/kvnw-report
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS1
TTYReset=no
TTYVHangup=no

[Install]
# Not multi-user.target: cloud-final runs after that, so this would close an ordering cycle.
WantedBy=cloud-init.target
EOF

systemctl --root="$root" enable kvnw-renderer.service kvnw-report.service \
    systemd-networkd.service systemd-networkd-wait-online.service >/dev/null 2>&1
# Nothing that would only cost boot time or wait for a console.
systemctl --root="$root" mask systemd-firstboot.service apt-daily.timer \
    apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer getty@tty1.service >/dev/null 2>&1

dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Package} ${Version}\n' >"$out/packages.txt"
cp "$root"/boot/vmlinuz-* "$out/vmlinuz"
cp "$root"/boot/initrd.img-* "$out/initrd.img"

# --- trim and pack ------------------------------------------------------------------------
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* \
    "$root"/debootstrap "$root"/boot/*
rm -f "$out/base.raw"
mke2fs -q -t ext4 -L kvnw-root -d "$root" "$out/base.raw" 1536M
rm -rf "$root"
echo "build.sh: done in $((SECONDS - start)) s" >&2
