#!/usr/bin/env bash
# Builds the Agent Growth image without a Docker daemon, then runs `agent-growth --help` in it.
#
# Uses podman (or buildah when podman is missing) with the vfs storage driver, the runc runtime
# and the cgroupfs cgroup manager, which work inside VMs and CI machines that run no systemd and
# no container daemon. When the base image is neither present locally nor pullable, the script
# builds one with debootstrap: Debian bookworm from the machine's Debian mirror, with Debian's
# python3.11 and its venv module.
#
# Usage: scripts/build-image.sh [--install-tools]
#
#   --install-tools   apt-get install podman, buildah, debootstrap and runc first (needs root)
#
# Environment (all optional):
#   IMAGE          tag of the project image               (default: localhost/agent-growth:dev)
#   BASE_IMAGE     base for the Dockerfile's BASE_IMAGE   (default: python:3.11-slim)
#   LOCAL_BASE     tag for the debootstrapped base        (default: localhost/agent-growth-base:bookworm)
#   PULL           1 = try to pull BASE_IMAGE first        (default: 0; needs a reachable registry)
#   BUILD_TOOL     podman or buildah                      (default: podman if installed)
#   DEBIAN_MIRROR  Debian archive for debootstrap         (default: the one apt uses here)
#   CA_BUNDLE      CA file mounted into build steps, so pip trusts this machine's TLS proxy, if
#                  any (default: /etc/ssl/certs/ca-certificates.crt; set empty to skip)
#   KEEP_ROOTFS    1 = keep the debootstrap folder after importing it
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

IMAGE=${IMAGE:-localhost/agent-growth:dev}
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
LOCAL_BASE=${LOCAL_BASE:-localhost/agent-growth-base:bookworm}
PULL=${PULL:-0}
CA_BUNDLE=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
KEEP_ROOTFS=${KEEP_ROOTFS:-0}
DEBIAN_SUITE=bookworm

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Tools.

if [[ ${1:-} == --install-tools ]]; then
    log "installing podman, buildah, debootstrap and runc from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah debootstrap runc
elif [[ $# -gt 0 ]]; then
    die "unknown argument '$1'; the only option is --install-tools"
fi

if [[ -z ${BUILD_TOOL:-} ]]; then
    if command -v podman >/dev/null; then BUILD_TOOL=podman
    elif command -v buildah >/dev/null; then BUILD_TOOL=buildah
    else die "neither podman nor buildah is installed; rerun with --install-tools"
    fi
fi
command -v "$BUILD_TOOL" >/dev/null || die "BUILD_TOOL=$BUILD_TOOL is not installed"
command -v runc >/dev/null || die "runc is not installed; rerun with --install-tools"

# Global options shared by every call. vfs copies each layer in full (slow, disk-hungry) but
# needs no overlay mounts, which nested or unprivileged environments often refuse.
storage=(--storage-driver vfs)
case $BUILD_TOOL in
    podman)
        tool=(podman "${storage[@]}" --cgroup-manager cgroupfs --runtime runc)
        image_exists() { "${tool[@]}" image exists "$1"; }
        ;;
    buildah)
        tool=(buildah "${storage[@]}")
        image_exists() { "${tool[@]}" inspect --type image "$1" >/dev/null 2>&1; }
        export BUILDAH_RUNTIME=runc
        ;;
    *) die "BUILD_TOOL must be podman or buildah, not '$BUILD_TOOL'" ;;
esac
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-oci}

# ---------------------------------------------------------------------------------------------
# Base image: local, pulled, or built with debootstrap.

debian_mirror() {
    # The first Debian archive apt is configured with, in either sources format.
    local uri
    uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
    if [[ -z $uri ]]; then
        uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null \
            | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

build_debian_base() {
    command -v debootstrap >/dev/null || die "debootstrap is not installed; rerun with --install-tools"
    [[ $(id -u) == 0 ]] || die "debootstrap needs root to build the base image"

    local mirror=${DEBIAN_MIRROR:-$(debian_mirror)}
    local rootfs
    rootfs=$(mktemp -d "${TMPDIR:-/tmp}/agent-growth-rootfs.XXXXXX")
    # mktemp makes the folder 0700, and it becomes the image's "/": non-root users could then
    # reach nothing in the image.
    chmod 0755 "$rootfs"
    log "debootstrap $DEBIAN_SUITE from $mirror into $rootfs"

    # minbase: essential packages and apt only; python3-venv brings python3.11 and ensurepip.
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$DEBIAN_SUITE" "$rootfs" "$mirror"

    # Security and point-release updates, so the base is not frozen at the release's versions.
    local security=${mirror%/debian}/debian-security
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $DEBIAN_SUITE main
deb $mirror $DEBIAN_SUITE-updates main
deb $security $DEBIAN_SUITE-security main
EOF
    chroot "$rootfs" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive chroot "$rootfs" apt-get upgrade -y -qq
    chroot "$rootfs" apt-get clean

    # What a container never needs: package lists, docs, man pages, logs.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/var/log/*
    # The build machine's resolver and hosts do not belong in the image.
    : >"$rootfs/etc/resolv.conf"
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"

    log "importing the root filesystem as $LOCAL_BASE"
    tar --numeric-owner -C "$rootfs" -c . | "${tool[@]}" import \
        --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$LOCAL_BASE" >/dev/null

    if [[ $KEEP_ROOTFS == 1 ]]; then
        log "kept $rootfs"
    else
        rm -rf "$rootfs"
    fi
}

if image_exists "$BASE_IMAGE"; then
    base=$BASE_IMAGE
elif [[ $PULL == 1 ]] && "${tool[@]}" pull "$BASE_IMAGE" >/dev/null; then
    base=$BASE_IMAGE
elif image_exists "$LOCAL_BASE"; then
    log "$BASE_IMAGE is not available; using the local base $LOCAL_BASE"
    base=$LOCAL_BASE
else
    log "$BASE_IMAGE is not available; building $LOCAL_BASE with debootstrap"
    build_debian_base
    base=$LOCAL_BASE
fi

# ---------------------------------------------------------------------------------------------
# Project image.

build_args=(--network host --build-arg "BASE_IMAGE=$base" --tag "$IMAGE" --file Dockerfile)
if [[ -n $CA_BUNDLE && -r $CA_BUNDLE ]]; then
    # Mounted for the build steps only (pip in the build stage); not part of any layer.
    build_args+=(--volume "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
fi

log "building $IMAGE from base $base with $BUILD_TOOL"
cd "$repo_root"
case $BUILD_TOOL in
    podman) "${tool[@]}" build "${build_args[@]}" . ;;
    buildah) "${tool[@]}" bud "${build_args[@]}" . ;;
esac

# ---------------------------------------------------------------------------------------------
# Smoke test: the image starts as its non-root user and the console script answers.

log "running '$IMAGE --help'"
if [[ $BUILD_TOOL == podman ]]; then
    # Explicit, modest limits: podman's defaults for root (over a million open files and
    # processes) need CAP_SYS_RESOURCE, which sandboxed CI machines often lack, and runc then
    # refuses to start the container ("error setting rlimits").
    run=("${tool[@]}" run --rm --network none --ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
    "${run[@]}" "$IMAGE" --help
    "${run[@]}" --entrypoint id "$IMAGE"
else
    container=$("${tool[@]}" from "$IMAGE")
    trap '"${tool[@]}" rm "$container" >/dev/null' EXIT
    "${tool[@]}" run --network none "$container" -- agent-growth --help
    "${tool[@]}" run --network none "$container" -- id
fi
