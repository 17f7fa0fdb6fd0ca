#!/usr/bin/env bash
# Installs or rotates the webhook's TLS without cert-manager:
#   1. `kubevirt-net-webhook certs` writes a fresh CA and serving certificate to a temp dir;
#   2. every webhook of both webhook configurations gets the new CA in its caBundle
#      (plus the previous CA, so pods still serving the old certificate stay trusted
#      until the kubelet has refreshed their Secret volume);
#   3. the Secret kubevirt-net-webhook-tls (type kubernetes.io/tls, plus ca.crt) is
#      created or replaced; the server reloads it without a restart.
# Run it after `kubectl apply -k deploy/`, and again to rotate. See certs/README.md.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: certs/install.sh [options]

  --namespace NS        namespace of the webhook (default: kubevirt-net-webhook)
  --service NAME        Service name the certificate is for (default: kubevirt-net-webhook)
  --secret NAME         TLS Secret the Deployment mounts (default: kubevirt-net-webhook-tls)
  --webhook-config NAME name of the Mutating- and ValidatingWebhookConfiguration
                        (default: kubevirt-net-webhook)
  --days N              validity of the serving certificate in days (default: 365)
  --bin PATH            kubevirt-net-webhook binary (default: from PATH, else
                        target/release or target/debug of this repository)
  -h, --help            this help

Environment: KUBECTL (default: kubectl), plus the usual KUBECONFIG/--context of kubectl.
USAGE
}

die() {
  echo "install.sh: error: $*" >&2
  exit 1
}

namespace=kubevirt-net-webhook
service=kubevirt-net-webhook
secret=kubevirt-net-webhook-tls
webhook_config=kubevirt-net-webhook
days=365
bin=""
kubectl=${KUBECTL:-kubectl}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --namespace | --service | --secret | --webhook-config | --days | --bin)
      [[ $# -ge 2 ]] || die "$1 needs a value"
      case "$1" in
        --namespace) namespace=$2 ;;
        --service) service=$2 ;;
        --secret) secret=$2 ;;
        --webhook-config) webhook_config=$2 ;;
        --days) days=$2 ;;
        --bin) bin=$2 ;;
      esac
      shift 2
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      die "unknown argument: $1"
      ;;
  esac
done

if [[ -z "$bin" ]]; then
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if command -v kubevirt-net-webhook >/dev/null 2>&1; then
    bin=$(command -v kubevirt-net-webhook)
  elif [[ -x "$repo/target/release/kubevirt-net-webhook" ]]; then
    bin=$repo/target/release/kubevirt-net-webhook
  elif [[ -x "$repo/target/debug/kubevirt-net-webhook" ]]; then
    bin=$repo/target/debug/kubevirt-net-webhook
  else
    die "kubevirt-net-webhook not found: run 'cargo build --release' or pass --bin PATH"
  fi
fi
command -v "$kubectl" >/dev/null 2>&1 || die "$kubectl not found (set KUBECTL)"

kinds=(mutatingwebhookconfiguration validatingwebhookconfiguration)

# Fail before generating anything if deploy/ has not been applied.
"$kubectl" get namespace "$namespace" -o name >/dev/null ||
  die "namespace $namespace not found: run 'kubectl apply -k deploy/' first"
for kind in "${kinds[@]}"; do
  "$kubectl" get "$kind" "$webhook_config" -o name >/dev/null ||
    die "$kind $webhook_config not found: run 'kubectl apply -k deploy/' first"
done

umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$bin" certs --service "$service" --namespace "$namespace" --days "$days" --out "$tmp/certs"

# The CA of the Secret being replaced stays trusted next to the new one (see above).
cp "$tmp/certs/ca.crt" "$tmp/bundle.crt"
old_ca=$("$kubectl" -n "$namespace" get secret "$secret" -o 'jsonpath={.data.ca\.crt}' \
  2>/dev/null || true)
if [[ -n "$old_ca" ]]; then
  printf '%s' "$old_ca" | base64 -d >>"$tmp/bundle.crt" ||
    die "the ca.crt of Secret $namespace/$secret is not valid base64"
fi
# `tr` rather than `base64 -w0`, which BSD/macOS base64 lacks.
ca_bundle=$(base64 <"$tmp/bundle.crt" | tr -d '\n')

for kind in "${kinds[@]}"; do
  names=$("$kubectl" get "$kind" "$webhook_config" \
    -o 'jsonpath={range .webhooks[*]}{.name}{"\n"}{end}')
  patch="["
  i=0
  while IFS= read -r name; do
    [[ -n "$name" ]] || continue
    # The test op makes the patch fail rather than hit the wrong entry if the list changed.
    patch+="{\"op\":\"test\",\"path\":\"/webhooks/$i/name\",\"value\":\"$name\"},"
    patch+="{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$ca_bundle\"},"
    i=$((i + 1))
  done <<<"$names"
  [[ $i -gt 0 ]] || die "$kind $webhook_config has no webhooks"
  patch="${patch%,}]"
  "$kubectl" patch "$kind" "$webhook_config" --type=json -p "$patch"
done

# Server-side apply: client-side apply would copy the private key into the
# last-applied-configuration annotation, which `kubectl describe` prints.
"$kubectl" -n "$namespace" create secret generic "$secret" \
  --type=kubernetes.io/tls \
  --from-file=tls.crt="$tmp/certs/tls.crt" \
  --from-file=tls.key="$tmp/certs/tls.key" \
  --from-file=ca.crt="$tmp/certs/ca.crt" \
  --dry-run=client -o yaml |
  "$kubectl" apply --server-side --force-conflicts \
    --field-manager=kubevirt-net-webhook-certs -f -

echo "install.sh: Secret $namespace/$secret and the caBundle of $webhook_config are set;" \
  "the webhook picks up the certificate within about a minute."
