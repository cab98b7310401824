#!/usr/bin/env bash
# Generates the Debian package's shell completions and man pages from the
# built binary's own command-line definition (clap_complete, clap_mangen),
# so they always match the commands and options of that binary.
#
#   packaging/gen-assets.sh [BINARY] [OUT_DIR]
#
# BINARY defaults to target/release/tocsin and OUT_DIR to target/assets.
# Run it after `cargo build --release` and before `cargo deb --no-build`.
# Writes:
#   OUT_DIR/completions/tocsin.bash   -> /usr/share/bash-completion/completions/tocsin
#   OUT_DIR/completions/_tocsin       -> /usr/share/zsh/vendor-completions/_tocsin
#   OUT_DIR/completions/tocsin.fish   -> /usr/share/fish/vendor_completions.d/tocsin.fish
#   OUT_DIR/man/tocsin.1, OUT_DIR/man/tocsin-COMMAND.1 -> /usr/share/man/man1/
set -euo pipefail

# Paths as given, relative to where the script was called from.
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(abs "${1:-$root/target/release/tocsin}")"
out="$(abs "${2:-$root/target/assets}")"

if [[ ! -x $bin ]]; then
    echo "gen-assets: $bin is not built (cargo build --release)" >&2
    exit 1
fi

rm -rf "$out/completions" "$out/man"
mkdir -p "$out/completions" "$out/man"

"$bin" completions bash >"$out/completions/tocsin.bash"
"$bin" completions zsh >"$out/completions/_tocsin"
"$bin" completions fish >"$out/completions/tocsin.fish"
"$bin" manpage --dir "$out/man"

for f in "$out"/completions/* "$out"/man/*.1; do
    if [[ ! -s $f ]]; then
        echo "gen-assets: $f is empty" >&2
        exit 1
    fi
done
echo "gen-assets: $(ls "$out/completions" | wc -l) completion scripts, $(ls "$out/man" | wc -l) man pages in $out" >&2
