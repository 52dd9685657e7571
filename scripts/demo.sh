#!/usr/bin/env bash
# The main job on the embedded default: installs the build dependencies, builds vmove, and
# evacuates a built-in simulated cluster in real time (~30 s). Extra arguments go to `vmove demo`.
source "$(dirname "$0")/common.sh"
need_cargo
install_build_deps
cd "$ROOT"
say "building vmove (release)"
cargo build --release --locked -p vmove
exec "$ROOT/target/release/vmove" demo "$@"
