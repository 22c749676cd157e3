#!/usr/bin/env bash
# Runs every test: engine/unit tests (pytest, real PostgreSQL), molecule
# scenarios on localhost, ansible-lint (production profile), ansible-test sanity.
# Usage: scripts/test.sh [pytest|molecule|lint|sanity ...]   (default: all)
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
[ ${#stages[@]} -eq 0 ] && stages=(pytest molecule lint sanity)
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

stage_sanity() {
  # ansible-test wants a real copy under ansible_collections/<ns>/<name>, and
  # fetches its pip bootstrap from the internet: a local shim stands in for it.
  local shim=$HOME/.ansible/test/cache/get_pip_24_2.py
  if [ ! -f "$shim" ]; then
    mkdir -p "$(dirname "$shim")"
    cat > "$shim" <<'PY'
# Offline stand-in for get-pip.py used by ansible-test: ensurepip, then pip install.
import subprocess
import sys
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade', '--default-pip'])
subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args)
PY
  fi
  local work
  work=$(mktemp -d)
  mkdir -p "$work/ansible_collections/dbdevops/postgresql"
  git ls-files -z --cached --others --exclude-standard \
    | tar --null --ignore-failed-read -T - -cf - 2>/dev/null \
    | tar -xf - -C "$work/ansible_collections/dbdevops/postgresql/"
  mkdir -p "$work/ansible_collections/community"
  cp -a "$DBDEVOPS_COLLECTIONS/ansible_collections/community/postgresql" "$work/ansible_collections/community/"
  (cd "$work/ansible_collections/dbdevops/postgresql" && git init -q && git add -A &&
     ansible-test sanity --venv --python "$(python -c 'import sys;print("%d.%d" % sys.version_info[:2])')" \
       --junit 2>&1)
  local rc=$?
  cp "$work"/ansible_collections/dbdevops/postgresql/tests/output/junit/*.xml "$OUT/junit/" 2>/dev/null
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
for stage in "${stages[@]}"; do printf '%-10s %s\n' "$stage" "${result[$stage]}"; done
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
