#!/usr/bin/env bash
# Lays real HST ACS/HRC images of the globular cluster NGC 104 from Debian's
# python-drizzle-testdata package into a folder:
#   j8bt06nyq_flt.fits  an ACS/HRC calibrated exposure (SCI/ERR/DQ, one 1024x1024 chip, 0.0265"/pix)
#   input1.fits input3.fits  drizzle's small real test inputs
# Usage: scripts/fetch-real-data.sh [DEST]   (default: data/real, relative to the repository)
#
# The package is fetched with the ordinary apt client: `apt-get download` then `dpkg -x` into a
# temporary folder, so no root is needed and nothing is installed. When the package is already
# installed its files are copied from /usr instead. Idempotent: files that are already in DEST
# and are FITS are kept; the download happens only when one is missing.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$repo/data/real}
files=(j8bt06nyq_flt.fits input1.fits input3.fits)
pkg=python-drizzle-testdata

# A FITS file starts with the 80-byte card "SIMPLE  =                    T".
is_fits() {
  [ -s "$1" ] && [ "$(head -c 30 "$1")" = "SIMPLE  =                    T" ]
}

mkdir -p "$dest"
missing=()
for f in "${files[@]}"; do is_fits "$dest/$f" || missing+=("$f"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "fetch-real-data: ${files[*]} already in $dest"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/af-realdata.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt-get download drops privileges to _apt, which must reach the folder
if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
  root=/
else
  echo "fetch-real-data: downloading $pkg (about 38 MB) with apt-get download" >&2
  if ! (cd "$work" && apt-get download -q "$pkg" >/dev/null); then
    echo "fetch-real-data: 'apt-get download $pkg' failed; run 'apt-get update' (as root) first" >&2
    exit 1
  fi
  dpkg -x "$work"/${pkg}_*.deb "$work/root"
  root=$work/root
fi

for f in "${missing[@]}"; do
  src=$(find "$root/usr" -name "$f" -type f 2>/dev/null | head -n 1 || true)
  if [ -z "$src" ]; then
    echo "fetch-real-data: $f is not in $pkg" >&2
    exit 1
  fi
  # Copy under a temporary name and rename, so DEST never holds a half-written file.
  cp "$src" "$dest/.$f.tmp.$$"
  if ! is_fits "$dest/.$f.tmp.$$"; then
    rm -f "$dest/.$f.tmp.$$"
    echo "fetch-real-data: $src is not a FITS file" >&2
    exit 1
  fi
  mv "$dest/.$f.tmp.$$" "$dest/$f"
done
for f in "${files[@]}"; do
  printf 'fetch-real-data: %-20s %10d bytes\n' "$dest/$f" "$(stat -c %s "$dest/$f")"
done
