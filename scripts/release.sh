#!/usr/bin/env bash
# Release bundles of every recipe, locked and verified, packed reproducibly: the release step of
# .github/workflows/release.yml (tests/test_release.py runs this same script against hubsim).
#
#   scripts/release.sh [DIST]        DIST defaults to dist; recipes come from $PREP_RECIPES or ./recipes
#
# Writes DIST/<recipe>/ (artifacts, SHA256SUMS, manifest.json), DIST/<recipe>.tar.gz and DIST/SHA256SUMS.
set -euo pipefail

dist="${1:-dist}"
recipes="${PREP_RECIPES:-recipes}"
project="$(cd -P "$(dirname "$0")/.." && pwd)"
prep="$project/.venv/bin/prep"
[ -x "$prep" ] || prep="prep"

shopt -s nullglob
tomls=("$recipes"/*.toml)
if [ ${#tomls[@]} -eq 0 ]; then
  echo "error: no recipes in $recipes" >&2
  exit 1
fi

mkdir -p "$dist"
for recipe in "${tomls[@]}"; do
  name="$(basename "$recipe" .toml)"
  "$prep" release "$recipe" --locked --dist "$dist"
  "$prep" verify "$dist/$name"
  # Same bytes on every run: sorted names, no owners, no times, gzip without a timestamp.
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$dist" -cf - "$name" \
    | gzip -n -9 > "$dist/$name.tar.gz"
done
(cd "$dist" && sha256sum -- *.tar.gz > SHA256SUMS)
echo "release bundles in $dist:"
cat "$dist/SHA256SUMS"
