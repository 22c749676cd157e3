#!/usr/bin/env bash
# Runs every test: engine/unit tests (pytest, real PostgreSQL), ansible-test
# integration targets (tests/integration/targets, each on a throwaway cluster),
# molecule scenarios on localhost, ansible-lint (production profile),
# ansible-test sanity.
# Usage: scripts/test.sh [pytest|integration|molecule|lint|sanity ...]   (default: all)
# Installs what it needs itself (see scripts/bootstrap.sh).
# The stage_* functions are called indirectly ("stage_$stage").
# shellcheck disable=SC2317
set -uo pipefail
# shellcheck source=scripts/bootstrap.sh
source "$(dirname "$0")/bootstrap.sh" dev || exit 1
set +e
cd "$DBDEVOPS_ROOT" || exit 1

OUT=$DBDEVOPS_ROOT/tests/output
mkdir -p "$OUT/junit"
rm -f "$OUT"/junit/*.xml
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(pytest integration molecule lint sanity)
declare -A result=()
failed=0

stage_pytest() {
  python -m pytest -p no:cacheprovider -q -ra tests/unit \
    --junitxml="$OUT/junit/pytest.xml"
}

stage_molecule() {
  local rc=0 scenario
  for scenario in molecule/*/molecule.yml; do
    scenario=$(basename "$(dirname "$scenario")")
    echo "--- molecule test -s $scenario"
    molecule test -s "$scenario" || { rc=1; echo "molecule scenario $scenario FAILED"; }
  done
  return "$rc"
}

stage_lint() {
  ansible-lint --profile production --offline
}

PYVER=$(python -c 'import sys;print("%d.%d" % sys.version_info[:2])')

# ansible-test wants the collection as a real copy under
# ansible_collections/<ns>/<name> (a git repository of its own), with the
# collections it uses beside it. Copies the checkout's files (tracked and
# untracked, not ignored) and community.postgresql into "$1"; prints the
# collection's folder.
copy_collection() {
  local work=$1 dest=$1/ansible_collections/dbdevops/postgresql
  mkdir -p "$dest" "$work/ansible_collections/community" || return 1
  git ls-files -z --cached --others --exclude-standard \
    | tar --null --ignore-failed-read -T - -cf - 2>/dev/null \
    | tar -xf - -C "$dest/" || return 1
  cp -a "$DBDEVOPS_COLLECTIONS/ansible_collections/community/postgresql" "$work/ansible_collections/community/" || return 1
  (cd "$dest" && git init -q && git add -A) || return 1
  echo "$dest"
}

# ansible-test --venv fetches its pip bootstrap from the internet: a local shim stands in for it.
offline_pip_shim() {
  local shim=$HOME/.ansible/test/cache/get_pip_24_2.py
  [ -f "$shim" ] && return 0
  mkdir -p "$(dirname "$shim")"
  cat > "$shim" <<'PY'
# Offline stand-in for get-pip.py used by ansible-test: ensurepip, then pip install.
import subprocess
import sys
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade', '--default-pip'])
subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args)
PY
}

stage_integration() {
  # Each target under tests/integration/targets starts its own throwaway cluster
  # (setup_postgresql_cluster) under $work/clusters and removes it in an
  # always: section; a cluster an interrupted run left there is stopped here.
  local work dest rc pidfile target
  # In a collection, "roles: [<target>]" finds the collection's own role of
  # that name first: a target named like a role would run the role instead.
  for target in tests/integration/targets/*/; do
    target=$(basename "$target")
    if [ -d "roles/$target" ]; then
      echo "integration target $target has the name of the role roles/$target: rename the target"
      return 1
    fi
  done
  work=$(mktemp -d)
  dest=$(copy_collection "$work") || { rm -rf "$work"; return 1; }
  chmod 0711 "$work"
  mkdir -m 0777 "$work/clusters"
  printf 'pg_it_tmp_root: %s\n' "$work/clusters" > "$dest/tests/integration/integration_config.yml"
  (cd "$dest" && ansible-test integration --local --python "$PYVER" --continue-on-error --color no 2>&1)
  rc=$?
  for pidfile in "$work"/clusters/*/data/postmaster.pid; do
    [ -f "$pidfile" ] || continue
    echo "integration: stopping the cluster left running in ${pidfile%/postmaster.pid}"
    kill -QUIT "$(head -n 1 "$pidfile")" 2>/dev/null
    rc=1
  done
  for f in "$dest"/tests/output/junit/*.xml; do
    [ -f "$f" ] && cp "$f" "$OUT/junit/integration-$(basename "$f")"
  done
  rm -rf "$work"
  return "$rc"
}

stage_sanity() {
  local work dest rc
  offline_pip_shim
  work=$(mktemp -d)
  dest=$(copy_collection "$work") || { rm -rf "$work"; return 1; }
  (cd "$dest" && ansible-test sanity --venv --python "$PYVER" --junit 2>&1)
  rc=$?
  cp "$dest"/tests/output/junit/*.xml "$OUT/junit/" 2>/dev/null
  rm -rf "$work"
  return "$rc"
}

for stage in "${stages[@]}"; do
  echo "=================== $stage"
  start=$SECONDS
  "stage_$stage"
  rc=$?
  result[$stage]="$([ $rc -eq 0 ] && echo PASS || echo FAIL) ($((SECONDS - start)) s)"
  [ $rc -eq 0 ] || failed=1
done

echo "=================== summary"
for stage in "${stages[@]}"; do printf '%-12s %s\n' "$stage" "${result[$stage]}"; done
if [[ " ${stages[*]} " == *" pytest "* ]]; then
  ran=$(python - "$OUT/junit/pytest.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(0); sys.exit()
suites = [root] if root.tag == 'testsuite' else root.findall('testsuite')
print(sum(int(s.get('tests', 0)) - int(s.get('skipped', 0)) for s in suites))
PY
)
  echo "pytest tests run (not skipped): $ran"
  [ "${ran:-0}" -gt 0 ] || { echo "no test ran: failing"; failed=1; }
fi
exit $failed
