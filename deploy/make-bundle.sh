#!/usr/bin/env bash
# Build an offline installation bundle, on a machine with internet access.
#
#   deploy/make-bundle.sh [--python "3.10 3.11 3.12"] [--arch x86_64|aarch64] [--out DIR]
#
# Writes DIR/vcf-credential-portal-VERSION.tar.gz (DIR defaults to dist/): the code and a
# wheels/ directory with every requirement and pip, for the given Python versions. The
# defaults cover Ubuntu 22.04 (3.10), Debian 12 (3.11) and Ubuntu 24.04 (3.12) on x86_64.
# On the target machine:
#
#   tar xzf vcf-credential-portal-VERSION.tar.gz
#   sudo vcf-credential-portal-VERSION/deploy/install.sh     (or update.sh)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=install.sh
. "$(dirname "${BASH_SOURCE[0]}")/install.sh"

usage_bundle() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

main_bundle() {
  local versions="3.10 3.11 3.12" arch=x86_64 out=$SOURCE_DIR/dist version name v
  while [ $# -gt 0 ]; do
    case "$1" in
      --python) versions=${2:?--python needs versions}; shift 2 ;;
      --arch) arch=${2:?--arch needs x86_64 or aarch64}; shift 2 ;;
      --out) out=${2:?--out needs a directory}; shift 2 ;;
      -h | --help) usage_bundle; return 0 ;;
      *) die "unknown argument: $1 (see --help)" ;;
    esac
  done
  case "$arch" in x86_64 | aarch64) ;; *) die "--arch: x86_64 or aarch64, not $arch" ;; esac
  "$PYTHON" -m pip --version >/dev/null 2>&1 ||
    die "pip is needed to download the wheels: apt-get install python3-pip"
  version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$SOURCE_DIR/portal/version.py")
  [ -n "$version" ] || die "no __version__ in portal/version.py"
  name=$APP-$version
  BUNDLE_WORK=$(mktemp -d)
  trap 'rm -rf "$BUNDLE_WORK"' EXIT
  local work=$BUNDLE_WORK

  copy_code "$SOURCE_DIR" "$work/$name"
  for v in $versions; do
    say "Downloading wheels for Python $v on $arch"
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --dest "$work/$name/wheels" \
      --only-binary=:all: --implementation cp --python-version "$v" \
      --abi "cp${v/./}" --abi abi3 --abi none \
      --platform "manylinux_2_28_$arch" --platform "manylinux2014_$arch" \
      -r "$SOURCE_DIR/requirements.txt" pip
  done
  mkdir -p "$out"
  tar -C "$work" --owner=0 --group=0 -czf "$out/$name.tar.gz" "$name"
  echo "Bundle: $out/$name.tar.gz"
  (cd "$out" && sha256sum "$name.tar.gz")
}

main_bundle "$@"
