#!/usr/bin/env bash
# Usage: hack/release.sh VERSION
# Builds every artefact of release VERSION into target/release-VERSION/ (see
# docs/release.md): the operator image as an OCI archive, the packaged chart,
# install.yaml and crds.yaml, kubectl-keyrotor archives, the krew manifest, a
# CycloneDX SBOM, RELEASE_NOTES.md (CHANGELOG.md's section) and SHA256SUMS.
# Publishing (push, sign, GitHub release) is .github/workflows/release.yml's job.
# Exits 2 when VERSION is not the workspace version of Cargo.toml, the chart's
# version/appVersion differ from it, or CHANGELOG.md has no section for it.
# Environment:
#   KEYROTOR_RELEASE_PROFILE  release (default) or debug: the cargo profile the
#                             binaries are built with (debug is for tests only)
#   KEYROTOR_RELEASE_KEYROTOR, KEYROTOR_RELEASE_PLUGIN
#                             use these keyrotor / kubectl-keyrotor binaries
#                             instead of building them (tests pass cargo's own)
#   KEYROTOR_RELEASE_OUT      the output directory instead of target/release-VERSION
#   SOURCE_DATE_EPOCH         every timestamp in the archives (default: the
#                             last commit's time)
#
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
log() { echo "release: $*" >&2; }
die() { echo "release: $*" >&2; exit 1; }
refuse() { echo "release: $*" >&2; exit 2; }
usage() { sed -n '2,/^#$/p' "${BASH_SOURCE[0]}" | sed -e '/^#$/d' -e 's/^# \{0,1\}//'; }

# cargo-cyclonedx writes the SBOM; installed from crates.io when missing.
cyclonedx_version=0.5.9

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
esac
[[ $# -eq 1 ]] || { usage >&2; exit 2; }
version=$1
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
  refuse "VERSION must be a semantic version without a leading v (e.g. 0.2.0), got '$version'"

for tool in git tar gzip sha256sum python3 cargo; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

# The single source of the version: [workspace.package] version.
cargo_version=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["workspace"]["package"]["version"])' Cargo.toml)
[[ "$version" == "$cargo_version" ]] ||
  refuse "VERSION $version is not the workspace version $cargo_version ([workspace.package] version in Cargo.toml); bump that first"
chart_version=$(awk '$1 == "version:" {print $2; exit}' charts/keyrotor/Chart.yaml | tr -d '"')
chart_app_version=$(awk '$1 == "appVersion:" {print $2; exit}' charts/keyrotor/Chart.yaml | tr -d '"')
[[ "$chart_version" == "$version" && "$chart_app_version" == "$version" ]] ||
  refuse "charts/keyrotor/Chart.yaml has version $chart_version and appVersion $chart_app_version, not $version"
grep -q "^## \[$version\]" CHANGELOG.md ||
  refuse "CHANGELOG.md has no section '## [$version]'; write the release notes first"

profile=${KEYROTOR_RELEASE_PROFILE:-release}
[[ "$profile" == release || "$profile" == debug ]] ||
  die "KEYROTOR_RELEASE_PROFILE must be release or debug, got '$profile'"

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) die "unsupported build machine architecture $(uname -m)" ;;
esac
os=linux
[[ "$(uname -s)" == Linux ]] || die "releases are built on Linux"

epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
[[ "$epoch" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be seconds since 1970, got '$epoch'"
export SOURCE_DATE_EPOCH=$epoch

out=${KEYROTOR_RELEASE_OUT:-$root/target/release-$version}
if [[ -d "$out" && -n "$(ls -A "$out")" && ! -f "$out/SHA256SUMS" ]]; then
  die "$out is not empty and holds no earlier release; choose another KEYROTOR_RELEASE_OUT"
fi
rm -rf "$out"
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- binaries -----------------------------------------------------------------
keyrotor=${KEYROTOR_RELEASE_KEYROTOR:-}
plugin=${KEYROTOR_RELEASE_PLUGIN:-}
if [[ -z "$keyrotor" || -z "$plugin" ]]; then
  flags=(--locked)
  [[ "$profile" == release ]] && flags+=(--release)
  log "cargo build ${flags[*]} --bin keyrotor --bin kubectl-keyrotor ..."
  cargo build "${flags[@]}" --bin keyrotor --bin kubectl-keyrotor >&2
  target_dir=${CARGO_TARGET_DIR:-$root/target}
  keyrotor=${keyrotor:-$target_dir/$profile/keyrotor}
  plugin=${plugin:-$target_dir/$profile/kubectl-keyrotor}
fi
for bin in "$keyrotor" "$plugin"; do
  [[ -f "$bin" && -x "$bin" ]] || die "no executable at $bin"
  got=$("$bin" --version | awk '{print $NF}')
  [[ "$got" == "$version" ]] || die "$bin --version says $got, not $version (stale build?)"
done

# --- the image ------------------------------------------------------------------
repository=$(awk '/^image:/ {in_image = 1; next} in_image && /^[^ #]/ {in_image = 0}
  in_image && $1 == "repository:" {print $2; exit}' charts/keyrotor/values.yaml)
[[ -n "$repository" ]] || die "cannot read image.repository from charts/keyrotor/values.yaml"
image_archive=keyrotor-image_${version}_${os}_${arch}.tar
log "image $repository:$version ($os/$arch) ..."
digest=$(hack/image.sh --binary "$keyrotor" --version "$version" --tag "$repository:$version" \
  --output "$out/$image_archive" | tail -1)
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || die "hack/image.sh printed no digest"

# The archives this script writes itself are reproducible (docs/release.md).
reproducible_tgz() { # DIR OUTPUT FILE...: FILEs of DIR, sorted, fixed mtime, owner 0
  local dir=$1 output=$2 files
  shift 2
  # --sort=name sorts what tar reads from directories, not its arguments.
  mapfile -t files < <(printf '%s\n' "$@" | LC_ALL=C sort)
  tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
    --format=ustar -C "$dir" -cf - "${files[@]}" | gzip -n -9 >"$output"
}

# --- the chart ------------------------------------------------------------------
helm=$(hack/install-tools.sh --print-dir 2>/dev/null)/helm
log "helm package charts/keyrotor --version $version --app-version $version ..."
"$helm" package charts/keyrotor --version "$version" --app-version "$version" -d "$out" >&2
chart=$out/keyrotor-$version.tgz
[[ -f "$chart" ]] || die "helm package wrote no $chart"
# helm package dates the entries with the current time: the same files again,
# sorted, dated SOURCE_DATE_EPOCH, owned by 0 (helm reads any such tgz).
mkdir -p "$work/chart"
tar -xzf "$chart" -C "$work/chart"
reproducible_tgz "$work/chart" "$chart" keyrotor

# --- plain manifests (as hack/gen-manifests.sh renders deploy/, image pinned) ----
crd=crds/accesskeypolicies.keyrotor.dev.yaml
"$keyrotor" crd >"$out/crds.yaml"
cmp -s "$out/crds.yaml" "$crd" || die "$crd differs from what keyrotor crd prints; run hack/gen-manifests.sh"
{
  echo "# keyrotor $version: namespace, CRD, RBAC, ServiceAccount, Service and Deployment."
  echo "# kubectl apply --server-side -f install.yaml"
  echo "# Rendered from the chart keyrotor-$version.tgz with default values by hack/release.sh."
  cat deploy/namespace.yaml
  echo "---"
  cat "$out/crds.yaml"
  "$helm" template keyrotor "$chart" --namespace keyrotor-system \
    --kube-version 1.36.3 --set crds.enabled=false --set "image.tag=$version" \
    | grep -v '^ *helm.sh/chart: ' \
    | sed 's/app.kubernetes.io\/managed-by: Helm/app.kubernetes.io\/managed-by: kubectl/'
} >"$out/install.yaml"
grep -q "image: \"$repository:$version\"" "$out/install.yaml" ||
  die "install.yaml does not pin the image $repository:$version"

# --- kubectl-keyrotor archives and the krew manifest ------------------------------
# The archive holds the binary, kubectl's completion hook for it
# (deploy/krew/kubectl_complete-keyrotor, see docs/kubectl-plugin.md) and LICENSE.
plugin_archive=kubectl-keyrotor_${version}_${os}_${arch}.tar.gz
mkdir -p "$work/plugin"
install -m 0755 "$plugin" "$work/plugin/kubectl-keyrotor"
install -m 0755 deploy/krew/kubectl_complete-keyrotor "$work/plugin/kubectl_complete-keyrotor"
install -m 0644 LICENSE "$work/plugin/LICENSE"
reproducible_tgz "$work/plugin" "$out/$plugin_archive" kubectl-keyrotor kubectl_complete-keyrotor LICENSE
sha=$(sha256sum "$out/$plugin_archive" | awk '{print $1}')
# The krew manifest has one platform entry per archive built here: the
# template's entry for each os/arch is kept (and filled) only when its archive
# exists, so a platform that could not be built is left out rather than
# shipped broken. Only this machine's platform is built (docs/release.md says why).
python3 - deploy/krew/keyrotor.yaml.tmpl "$out/keyrotor.yaml" "$version" "$os/$arch=$sha" <<'PY'
import re, sys
template, target, version = sys.argv[1:4]
built = dict(arg.split("=", 1) for arg in sys.argv[4:])
text = open(template).read()
# Comment lines starting with "# " are the template's own notes.
text = "".join(l for l in text.splitlines(keepends=True) if not l.startswith("# "))
head, _, platforms = text.partition("  platforms:\n")
entries = re.split(r"(?m)^(?=    - selector:)", platforms)
rest = ""
if entries and not entries[-1].startswith("    - selector:"):
    rest = entries.pop()
kept = []
for entry in entries:
    if not entry.strip():
        continue
    os_ = re.search(r"os: (\S+)", entry).group(1)
    arch = re.search(r"arch: (\S+)", entry).group(1)
    sha = built.get(f"{os_}/{arch}")
    if sha is None:
        continue
    kept.append(entry.replace(f"@SHA256_{os_.upper()}_{arch.upper()}@", sha))
if not kept:
    sys.exit("release: no platform of the krew template was built")
out = (head + "  platforms:\n" + "".join(kept) + rest).replace("@VERSION@", version)
open(target, "w").write(out)
PY
if grep -q '@[A-Z0-9_]*@' "$out/keyrotor.yaml"; then
  die "deploy/krew/keyrotor.yaml.tmpl has placeholders no archive filled"
fi

# --- SBOM ---------------------------------------------------------------------------
# (it prints "cargo-cyclonedx-cyclonedx 0.5.9")
if [[ $(cargo cyclonedx --version 2>/dev/null | awk '{print $NF}') != "$cyclonedx_version" ]]; then
  log "installing cargo-cyclonedx $cyclonedx_version from crates.io ..."
  cargo install --locked --quiet cargo-cyclonedx --version "$cyclonedx_version"
fi
sbom=keyrotor_${version}_sbom.cdx.json
# cargo-cyclonedx writes one file next to each member's Cargo.toml; it runs on
# a copy of the workspace (2-3 MB without target/) so the checkout stays clean.
mkdir -p "$work/src"
tar --exclude=./target --exclude=./.git -C "$root" -cf - . | tar -C "$work/src" -xf -
log "SBOM (cargo cyclonedx $cyclonedx_version, CycloneDX 1.5 JSON, every dependency of every platform) ..."
(cd "$work/src" && cargo cyclonedx --format json --spec-version 1.5 --all --target all \
  --override-filename keyrotor.cdx -q >&2)
[[ -f "$work/src/keyrotor.cdx.json" ]] || die "cargo cyclonedx wrote no keyrotor.cdx.json"
# Its serial number is random and its timestamp the current time: both made
# to follow the version and SOURCE_DATE_EPOCH, so the same commit in the same
# checkout gives the same SBOM.
# The copy's temporary path in the bom-refs becomes the checkout's.
python3 - "$work/src/keyrotor.cdx.json" "$out/$sbom" "$version" "$epoch" "$work/src" "$root" <<'PY'
import datetime, json, sys, uuid
source, target, version, epoch, copy, root = sys.argv[1:]
bom = json.loads(open(source).read().replace("file://" + copy, "file://" + root))
bom["serialNumber"] = "urn:uuid:%s" % uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/keyrotor/keyrotor/releases/v%s/sbom" % version)
bom.setdefault("metadata", {})["timestamp"] = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
with open(target, "w") as f:
    json.dump(bom, f, indent=2)
    f.write("\n")
PY

# --- release notes and checksums -----------------------------------------------------
{
  echo "# keyrotor $version"
  echo
  # The section without its heading, leading and trailing empty lines.
  awk -v heading="## [$version]" 'index($0, heading) == 1 {on = 1; next} on && /^## \[/ {exit} on' CHANGELOG.md |
    sed -e '/./,$!d' | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
  echo
  echo "## Artefacts"
  echo
  echo "- Image \`$repository:$version\` ($os/$arch), manifest digest \`$digest\`; archive \`$image_archive\`"
  echo "- Chart \`oci://ghcr.io/keyrotor/charts/keyrotor\` version $version; archive \`keyrotor-$version.tgz\`"
  echo "- \`install.yaml\` (everything, \`kubectl apply --server-side -f\`) and \`crds.yaml\` (the CRD alone)"
  echo "- \`$plugin_archive\` and the krew manifest \`keyrotor.yaml\`"
  echo "- SBOM of the Rust dependency tree (CycloneDX JSON): \`$sbom\`"
  echo "- \`SHA256SUMS\`: \`sha256sum -c SHA256SUMS\`"
  echo
  echo "Only $os/$arch is built: the build machines have no Rust standard library for"
  echo "other platforms (see docs/release.md)."
} >"$out/RELEASE_NOTES.md"

(cd "$out" && find . -maxdepth 1 -type f -printf '%P\n' | LC_ALL=C sort | xargs sha256sum --) >"$work/SHA256SUMS"
mv "$work/SHA256SUMS" "$out/SHA256SUMS"

log "done: $out"
(cd "$out" && ls -l)
echo "$out"
