#!/usr/bin/env bash
# Builds @otpd/medusa, packs it as npm would publish it, and unpacks the
# package into fixture/node_modules/@otpd/medusa: the fixture then loads
# exactly what a shop would install, resolving @medusajs/* from its own
# node_modules (a symlink would load a second copy of Medusa from ../).
# Needs `npm ci` done here and in fixture/.
set -euo pipefail
cd "$(dirname "$0")"
export MEDUSA_DISABLE_TELEMETRY=true
rm -f otpd-medusa-*.tgz
tgz=$(npm pack --silent 2>/dev/null | tail -n1)
[ -f "$tgz" ] || { echo "npm pack made no tarball" >&2; exit 1; }
dest=fixture/node_modules/@otpd/medusa
rm -rf "$dest"
mkdir -p "$dest"
tar xzf "$tgz" -C "$dest" --strip-components=1
rm -f "$tgz"
echo "installed $(node -p "require('./$dest/package.json').version") into $dest"
