#!/usr/bin/env bash
# Builds the Debian package of tocsin with cargo-deb, from the
# [package.metadata.deb] section of Cargo.toml, and prints the path of the
# .deb as the last line on stdout.
#
#   packaging/build-deb.sh                     release build, .deb in target/debian/
#   packaging/build-deb.sh --output DIR        .deb in DIR
#   packaging/build-deb.sh --binary FILE       package FILE as /usr/bin/tocsin instead
#                                              of building (what tests/packaging.rs does
#                                              with the test build; not for release)
#
# Installs cargo-deb with `cargo install cargo-deb --locked` when missing.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
output="$root/target/debian"
binary=""
while [ $# -gt 0 ]; do
    case "$1" in
        --output) output="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "build-deb.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb.sh: cargo-deb not found; installing it" >&2
    cargo install cargo-deb --locked >&2
fi

# Both paths as given, relative to where the script was called from.
mkdir -p "$output"
output="$(cd "$output" && pwd)"
if [ -n "$binary" ]; then
    [ -f "$binary" ] || { echo "build-deb.sh: no binary at $binary" >&2; exit 2; }
    binary="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")"
fi
cd "$root"
# cargo-deb prints the path of the package on stdout; its progress and
# warnings go to stderr.
if [ -n "$binary" ]; then
    # cargo-deb takes the binary from <target dir>/release/tocsin: stage the
    # given one in a private target directory, and skip the build.
    stage="$(mktemp -d)"
    trap 'rm -rf "$stage"' EXIT
    mkdir -p "$stage/release"
    cp "$binary" "$stage/release/tocsin"
    # Man pages and shell completions, generated from the CLI definition.
    "$root/packaging/gen-assets.sh" "$binary" >&2
    deb="$(CARGO_TARGET_DIR="$stage" cargo deb --no-build --strip --fast --locked --output "$output" | tail -n1)"
else
    cargo build --release --locked >&2
    "$root/packaging/gen-assets.sh" target/release/tocsin >&2
    deb="$(cargo deb --no-build --locked --output "$output" | tail -n1)"
fi
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
    echo "build-deb.sh: cargo deb did not report a .deb (got: '$deb')" >&2
    exit 1
fi
echo "$deb"
