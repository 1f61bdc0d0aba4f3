#!/usr/bin/env bash
# Deploy released bundles into canisters: the steps of .github/workflows/deploy.yml
# (tests/test_deploy.py runs this same script against hubsim + icsim).
#
#   scripts/deploy.sh RELEASE_DIR NETWORK RECIPE=CANISTER [RECIPE=CANISTER ...]
#
# RELEASE_DIR holds a release's assets: <recipe>.tar.gz and SHA256SUMS (gh release download).
# Every tarball is checked against SHA256SUMS, and with PREP_ATTEST_REPO=OWNER/REPO against its GitHub
# build-provenance attestation (gh attestation verify), before anything is unpacked. Each bundle then
# goes through `prep upload --bundle` (which verifies the bundle itself before sending a byte), and
# `prep verify --canister` proves the canister holds its bytes. The identity is PREP_PEM (a file path).
# A table of the results goes to $GITHUB_STEP_SUMMARY (or stdout). Exit 1 when any target failed;
# the other targets are still deployed.
set -euo pipefail

if [ $# -lt 3 ]; then
  echo "usage: $0 RELEASE_DIR NETWORK RECIPE=CANISTER [RECIPE=CANISTER ...]" >&2
  exit 2
fi
release="$(cd "$1" && pwd)"
network="$2"
shift 2
project="$(cd -P "$(dirname "$0")/.." && pwd)"
prep="$project/.venv/bin/prep"
[ -x "$prep" ] || prep="prep"
python="$project/.venv/bin/python"
[ -x "$python" ] || python="python3"
work="${PREP_DEPLOY_WORK:-$release/deploy}"

for target in "$@"; do
  case "$target" in
    ?*=?*) ;;
    *) echo "error: $target is not RECIPE=CANISTER" >&2; exit 2 ;;
  esac
done

echo "checking $release/SHA256SUMS"
(cd "$release" && sha256sum --strict --check SHA256SUMS)
if [ -n "${PREP_ATTEST_REPO:-}" ]; then
  for tarball in "$release"/*.tar.gz; do
    gh attestation verify "$tarball" --repo "$PREP_ATTEST_REPO"
  done
fi

rm -rf "$work/bundles" "$work/results"  # only what this script made there
mkdir -p "$work/bundles" "$work/results"
failed=0
for target in "$@"; do
  recipe="${target%%=*}"
  canister="${target#*=}"
  tarball="$release/$recipe.tar.gz"
  printf '%s\n' "$canister" > "$work/results/$recipe.canister"
  if ! grep -qE "^[0-9a-f]{64}  $recipe\.tar\.gz\$" "$release/SHA256SUMS"; then
    echo "error: $recipe.tar.gz is not listed in $release/SHA256SUMS" >&2
    echo "{\"event\": \"error\", \"message\": \"$recipe.tar.gz is not in the release\"}" \
      > "$work/results/$recipe.upload.jsonl"
    failed=1
    continue
  fi
  tar --extract --gzip --no-same-owner --no-same-permissions --file "$tarball" --directory "$work/bundles"
  echo "deploying $recipe to $canister on $network"
  if "$prep" upload --bundle "$work/bundles/$recipe" --network "$network" --canister "$canister" \
    --yes --json > "$work/results/$recipe.upload.jsonl"; then
    "$prep" verify "$work/bundles/$recipe" --network "$network" --canister "$canister" --json \
      > "$work/results/$recipe.verify.jsonl" || failed=1
  else
    failed=1
  fi
done

"$python" "$project/scripts/deploy_summary.py" "$work/results" >> "${GITHUB_STEP_SUMMARY:-/dev/stdout}"
exit "$failed"
