#!/usr/bin/env bash
# Usage: hack/image.sh [--binary PATH] [--tag REF] [--output FILE] [--version V]
# Builds the operator's OCI image without a container engine, from this
# machine's build output (see docs/image.md, "Building without a daemon"):
#   --binary PATH  the keyrotor binary (default: builds it with
#                  `cargo build --release --locked --bin keyrotor`)
#   --tag REF      image name (default: the chart's image.repository + ":dev")
#   --output FILE  the image archive (default: target/image/keyrotor-image.tar)
#   --version V    org.opencontainers.image.version (default: `keyrotor --version`)
# Environment: SOURCE_DATE_EPOCH (every timestamp in the image; default: the
# last commit's time), KEYROTOR_IMAGE_REVISION (org.opencontainers.image.revision;
# default: `git rev-parse HEAD`, empty leaves the label out).
# Prints the image's manifest digest (sha256:...) as the last line on stdout;
# progress goes to stderr.
#
# Why standard tools (GNU tar, gzip, sha256sum, python3 for JSON) and not
# umoci/skopeo/crane: the archive must be ONE tar that `ctr images import`,
# `docker load` and `skopeo copy oci-archive:` all read, i.e. an OCI image
# layout that also carries Docker's manifest.json (what `ctr images export`
# writes). No daemon-free tool writes that pair (skopeo writes either
# oci-archive or docker-archive, crane either a layout directory or a docker
# tarball), so the last step would be hand-written anyway; and the layer,
# config, manifest and index are four small files whose bytes we can then pin
# exactly for reproducibility.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "image: $*" >&2; }
die() { echo "image: $*" >&2; exit 1; }
# The header comment up to its first empty line.
usage() { sed -n '2,/^#$/p' "${BASH_SOURCE[0]}" | sed -e '/^#$/d' -e 's/^# \{0,1\}//'; }

binary="" tag="" output="" version=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --tag) tag=${2:?--tag needs an image reference}; shift 2 ;;
    --output) output=${2:?--output needs a file}; shift 2 ;;
    --version) version=${2:?--version needs a value}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

for tool in tar gzip sha256sum python3 ldd git; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
tar --version | head -1 | grep -q 'GNU tar' || die "GNU tar is needed (--sort=name, --mtime)"

if [[ -z "$tag" ]]; then
  repository=$(awk '/^image:/ {in_image = 1; next} in_image && /^[^ #]/ {in_image = 0}
    in_image && $1 == "repository:" {print $2; exit}' "$root/charts/keyrotor/values.yaml")
  [[ -n "$repository" ]] || die "cannot read image.repository from charts/keyrotor/values.yaml"
  tag="$repository:dev"
fi
[[ "$tag" =~ ^[a-z0-9./_-]+(:[0-9]+)?(/[a-z0-9./_-]+)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] ||
  die "--tag must be NAME:TAG (lowercase name, a tag), got '$tag'"

if [[ -z "$binary" ]]; then
  log "building the release binary (cargo build --release --locked --bin keyrotor) ..."
  (cd "$root" && cargo build --release --locked --bin keyrotor >&2)
  binary="${CARGO_TARGET_DIR:-$root/target}/release/keyrotor"
fi
[[ -f "$binary" && -x "$binary" ]] || die "no executable at $binary"
binary=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")
[[ -n "$version" ]] || version=$("$binary" --version | awk '{print $NF}')
[[ -n "$version" ]] || die "cannot read the version from $binary --version"

# The port the operator serves /metrics, /healthz and /readyz on by default.
port=$(env -u KEYROTOR_METRICS_ADDRESS "$binary" run --help |
  sed -n '/--metrics-address/,/default:/s/.*\[default: [^]]*:\([0-9][0-9]*\)\].*/\1/p' | head -1)
[[ "$port" =~ ^[0-9]+$ ]] || die "cannot read the default --metrics-address port from $binary run --help"

output=${output:-$root/target/image/keyrotor-image.tar}
mkdir -p "$(dirname "$output")"
output=$(cd "$(dirname "$output")" && pwd)/$(basename "$output")

epoch=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct)}
[[ "$epoch" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be seconds since 1970, got '$epoch'"
revision=${KEYROTOR_IMAGE_REVISION-$(git -C "$root" rev-parse HEAD 2>/dev/null || true)}
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) die "unsupported architecture $(uname -m)" ;;
esac
certs=/etc/ssl/certs/ca-certificates.crt
[[ -f "$certs" ]] || die "no CA bundle at $certs (apt-get install ca-certificates)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$work/layout/blobs/sha256"

log "root filesystem: $binary, the libraries ldd lists, $certs, passwd/group"
cp "$binary" "$rootfs/keyrotor"
# The loader and every library the binary links, at the path ldd prints (the
# loader's path is the one written in the binary's PT_INTERP). cp -L copies
# the file a symlink points to.
ldd_out=$(ldd "$binary") || die "ldd $binary failed (not a dynamic executable?)"
if grep -q 'not found' <<<"$ldd_out"; then die "missing libraries: $ldd_out"; fi
libs=$(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$ldd_out" | sort -u)
[[ -n "$libs" ]] || die "ldd lists no libraries for $binary"
for lib in $libs; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
cp -L "$certs" "$rootfs$certs"
# The same users and groups as distroless' nonroot images.
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
# /etc/hosts (which the kubelet mounts) before DNS, as distroless has it.
echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"

# Modes do not depend on the umask or on the source files' modes.
find "$rootfs" -type d -exec chmod 0755 {} +
find "$rootfs" -type f -exec chmod 0644 {} +
chmod 0755 "$rootfs/keyrotor"
for lib in $libs; do chmod 0755 "$rootfs$lib"; done
chmod 1777 "$rootfs/tmp"

# Reproducible tar: sorted names, one mtime, owner root, no atime/ctime or
# other per-build pax records, no xattrs/ACLs.
repro_tar() { # repro_tar DIR OUT ENTRIES...
  local dir=$1 out=$2
  shift 2
  (cd "$dir" && LC_ALL=C tar --format=posix --sort=name --mtime="@$epoch" \
    --owner=0 --group=0 --numeric-owner --no-acls --no-xattrs --no-selinux \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -cf "$out" "$@")
}
mapfile -t top < <(cd "$rootfs" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort)
repro_tar "$rootfs" "$work/layer.tar" "${top[@]}"
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
log "compressing the layer ($(du -h "$work/layer.tar" | cut -f1) uncompressed) ..."
gzip -n -6 -c "$work/layer.tar" >"$work/layer.tar.gz"

# Config, manifest, index and Docker's manifest.json. JSON with sorted keys
# and no whitespace, so the same inputs always give the same bytes.
log "config, manifest, index.json, manifest.json"
python3 - "$work" "$diff_id" "$epoch" "$arch" "$tag" "$version" "$revision" "$port" <<'PY'
import hashlib, json, os, sys
from datetime import datetime, timezone

work, diff_id, epoch, arch, tag, version, revision, port = sys.argv[1:]
blobs = os.path.join(work, "layout", "blobs", "sha256")

def dump(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()

def blob(data, media_type):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

with open(os.path.join(work, "layer.tar.gz"), "rb") as f:
    layer = blob(f.read(), "application/vnd.oci.image.layer.v1.tar+gzip")

created = datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
labels = {
    # The Dockerfile's final stage has the same three.
    "org.opencontainers.image.title": "keyrotor",
    "org.opencontainers.image.description": "Kubernetes operator that keeps Cloudflare Access signing-key rotation as AccessKeyPolicy objects say",
    "org.opencontainers.image.licenses": "Apache-2.0",
    "org.opencontainers.image.version": version,
    "org.opencontainers.image.created": created,
}
if revision:
    labels["org.opencontainers.image.revision"] = revision
config = blob(dump({
    "architecture": arch,
    "os": "linux",
    "created": created,
    "config": {
        "User": "65532:65532",
        "Entrypoint": ["/keyrotor"],
        "Cmd": ["run"],
        "ExposedPorts": {port + "/tcp": {}},
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "WorkingDir": "/",
        "Labels": labels,
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]},
    "history": [{"created": created, "created_by": "hack/image.sh"}],
}), "application/vnd.oci.image.config.v1+json")

manifest = blob(dump({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": config,
    "layers": [layer],
}), "application/vnd.oci.image.manifest.v1+json")

# Like `ctr images export`: the OCI ref name is the tag alone, containerd's
# annotation the whole name.
manifest["annotations"] = {
    "io.containerd.image.name": tag,
    "org.opencontainers.image.ref.name": tag.rsplit(":", 1)[1],
}
layout = os.path.join(work, "layout")
with open(os.path.join(layout, "index.json"), "wb") as f:
    f.write(dump({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [manifest],
    }))
with open(os.path.join(layout, "oci-layout"), "wb") as f:
    f.write(dump({"imageLayoutVersion": "1.0.0"}))
# What `docker load` reads (Docker before 25 knows nothing else).
with open(os.path.join(layout, "manifest.json"), "wb") as f:
    f.write(dump([{
        "Config": "blobs/sha256/" + config["digest"][7:],
        "RepoTags": [tag],
        "Layers": ["blobs/sha256/" + layer["digest"][7:]],
    }]))
with open(os.path.join(work, "digest"), "w") as f:
    f.write(manifest["digest"])
PY

find "$work/layout" -type d -exec chmod 0755 {} +
find "$work/layout" -type f -exec chmod 0644 {} +
repro_tar "$work/layout" "$output.tmp" blobs index.json manifest.json oci-layout
mv "$output.tmp" "$output"
digest=$(cat "$work/digest")
log "wrote $output ($(du -h "$output" | cut -f1)), $tag, layer $(du -h "$work/layer.tar.gz" | cut -f1) compressed"
echo "$digest"
