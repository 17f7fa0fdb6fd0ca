#!/usr/bin/env bash
# Builds (or reuses) the kube-apiserver and etcd that tests/apiserver.rs runs, and prints the
# directory holding them on its last line:
#
#   export KNW_APISERVER_DIR=$(tests/apiserver/build.sh | tail -n 1)
#
# kube-apiserver comes from the Go module proxy: go.mod beside this script requires
# k8s.io/kubernetes at one release with its staging modules at the matching v0.x (the usual
# way to build it outside its own tree). etcd is Debian's etcd-server (3.4), installed if
# missing; only its binary is used, the tests run their own on a loopback port.
# The binaries are cached outside the checkout, so a second run takes a moment.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# The release is the one go.mod requires: one place to change it.
version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" { print $3 }' "$here/go.mod")
[ -n "$version" ] || { echo "build.sh: no k8s.io/kubernetes requirement in $here/go.mod" >&2; exit 1; }
cache="${XDG_CACHE_HOME:-$HOME/.cache}/kubevirt-net-webhook/apiserver-$version"
mkdir -p "$cache"

# Go: the one on PATH, else where these machines have it.
go=$(command -v go || echo /usr/local/go/bin/go)

# Under pipefail, a reader that stops early (grep -q, head) can kill the writer with SIGPIPE
# and fail the pipeline (exit 141): compare the whole output instead.
if [ "$("$cache/kube-apiserver" --version 2>/dev/null || true)" = "Kubernetes $version" ]; then
    echo "kube-apiserver $version: cached in $cache" >&2
else
    echo "kube-apiserver $version: building (several minutes on 2 cores)" >&2
    minor=${version#v1.}
    minor=${minor%%.*}
    # Outside its tree the version is not stamped by the build: set it, so that --version
    # (the cache check above) and /version say which release runs.
    pkg=k8s.io/component-base/version
    ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags="$ldflags -X $pkg.gitTreeState=clean"
    # Built to a temporary name and moved into place: an interrupted build leaves no binary
    # that the cache check would take.
    (cd "$here" && CGO_ENABLED=0 "$go" build -trimpath -ldflags="$ldflags" \
        -o "$cache/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
    mv "$cache/kube-apiserver.tmp" "$cache/kube-apiserver"
fi

if ! command -v etcd >/dev/null && [ ! -x /usr/bin/etcd ]; then
    echo "etcd: installing Debian's etcd-server" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    # policy-rc.d refusing every start keeps the package's own service from starting (on a
    # machine with an init that would run it): the tests start etcd themselves.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod +x "$policy"
        trap '$sudo rm -f "$policy"' EXIT
    fi
    install="$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends"
    # A fresh machine may not have read its package lists yet.
    $install etcd-server >/dev/null 2>&1 || { $sudo apt-get update -qq && $install etcd-server >/dev/null; }
    $sudo systemctl disable --now etcd >/dev/null 2>&1 || true
fi
ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "$cache/etcd"
etcd_version=$("$cache/etcd" --version)
echo "${etcd_version%%$'\n'*}" >&2

echo "$cache"
