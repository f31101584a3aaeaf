#!/bin/sh
# Build the stand-in Dart toolchain image (tag dartcloud/dart-standin:test)
# from local files only: a static busybox and the `dart` script beside this file.
set -eu

tag="${STANDIN_TAG:-dartcloud/dart-standin:test}"
here=$(cd "$(dirname "$0")" && pwd)
busybox="${BUSYBOX:-/bin/busybox}"

is_static() {
    [ -x "$1" ] && ! ldd "$1" >/dev/null 2>&1
}

if ! is_static "$busybox"; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "standin: no static busybox at $busybox; installing Debian's busybox-static" >&2
        apt-get install -y -qq busybox-static >/dev/null || {
            apt-get update -qq && apt-get install -y -qq busybox-static >/dev/null
        }
    fi
fi
if ! is_static "$busybox"; then
    echo "standin: $busybox is missing or not statically linked." >&2
    echo "standin: install a static busybox (Debian and Ubuntu: apt-get install busybox-static) or set BUSYBOX=/path/to/it." >&2
    exit 1
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT

# One busybox serves the toolchain stage (/bin) and, under /runtime/, the final
# FROM scratch stage of every function image, which copies /runtime/ to /.
for root in "$context/rootfs" "$context/rootfs/runtime"; do
    mkdir -p "$root/bin" "$root/tmp"
    cp "$busybox" "$root/bin/busybox"
    for applet in $("$busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
done
chmod 1777 "$context/rootfs/tmp" "$context/rootfs/runtime/tmp"
mkdir -p "$context/rootfs/usr/lib/dart/bin" "$context/rootfs/root"
cp "$here/dart" "$context/rootfs/usr/lib/dart/bin/dart"
chmod 755 "$context/rootfs/usr/lib/dart/bin/dart"
cp "$here/Dockerfile" "$context/Dockerfile"

docker build --quiet --tag "$tag" "$context"
echo "standin: built $tag"
