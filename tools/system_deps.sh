#!/usr/bin/env bash
# System libraries the installed wheels link but pip cannot provide (called by `make setup`).
#
# open3d-cpu's Linux wheel (ICP and normals of the point-map metrics) links libusb-1.0.so.0, which
# a fresh Debian/Ubuntu machine lacks (package libusb-1.0-0). Present: nothing to do. Missing and
# running as root with apt-get: installed. Otherwise: stop with the one command to run.
# SYSTEM_DEPS=skip bypasses the check (open3d then fails to import: ICP and normal consistency
# are recorded as errors). The LDCONFIG / APT_GET / APT_CACHE / AS_UID variables exist for the
# tests (tests/test_setup.py), which run this script against fake commands.
set -euo pipefail

LIB=libusb-1.0.so.0
PKG=libusb-1.0-0
LDCONFIG=${LDCONFIG:-ldconfig}
APT_GET=${APT_GET:-apt-get}
APT_CACHE=${APT_CACHE:-apt-cache}
AS_UID=${AS_UID:-$(id -u)}

[[ ${SYSTEM_DEPS:-} == skip ]] && exit 0
[[ ${SYSTEM_DEPS_OS:-$(uname -s)} == Linux ]] || exit 0  # macOS/Windows wheels bundle it

have_lib() {
    # ldconfig's cache lists every library the dynamic loader finds (PATH may lack /sbin)
    local ldconfig
    ldconfig=$(command -v "$LDCONFIG" || command -v "/sbin/$LDCONFIG" || true)
    [[ -n $ldconfig ]] && "$ldconfig" -p 2>/dev/null | grep -q "$LIB"
}

have_lib && exit 0

if ! command -v "$APT_GET" >/dev/null; then
    echo "setup: open3d needs $LIB, which is missing. Install your distribution's libusb 1.0" >&2
    echo "       package (Fedora: dnf install libusb1; Arch: pacman -S libusb), then rerun." >&2
    exit 1
fi
if [[ $AS_UID != 0 ]]; then
    echo "setup: open3d needs $LIB (Debian package $PKG), which is missing. Run:" >&2
    echo "    sudo apt-get install -y $PKG" >&2
    echo "then rerun (or SYSTEM_DEPS=skip to go on without ICP and normal consistency)." >&2
    exit 1
fi
echo "setup: installing $PKG ($LIB, needed by open3d) with apt-get"
export DEBIAN_FRONTEND=noninteractive
if ! "$APT_CACHE" show "$PKG" >/dev/null 2>&1; then  # empty package lists (fresh container)
    "$APT_GET" update -qq
fi
"$APT_GET" install -y -qq --no-install-recommends "$PKG" >/dev/null
if ! have_lib; then
    echo "setup: apt-get installed $PKG but $LIB is still not found by ldconfig" >&2
    exit 1
fi
