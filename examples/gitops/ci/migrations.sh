#!/usr/bin/env bash
# The pipeline's steps for a repository of migrations, runnable anywhere:
#   ci/migrations.sh plan    pull request: check mode with lint and a verified rollback on a
#                            scratch database; nothing in the database changes
#   ci/migrations.sh apply   merge: a backup first (migrate_backup_dest in the inventory),
#                            then the migrations, rolled back to the starting version on failure
# INVENTORY (default inventories/production/hosts.yml) holds the connection and
# migrate_path / migrate_db / migrate_backup_dest; the password comes from the
# CI secret store as DBDEVOPS_LOGIN_PASSWORD and never reaches a command line.
# Needs ansible-core and the dbdevops.postgresql collection (ansible-galaxy collection
# install dbdevops.postgresql); the playbook is run by its collection name.
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:?usage: ci/migrations.sh plan|apply}
inventory=${INVENTORY:-inventories/production/hosts.yml}
playbook=${MIGRATE_PLAYBOOK:-dbdevops.postgresql.migrate}
extra=()
if [ -n "${DBDEVOPS_LOGIN_PASSWORD:-}" ]; then
  # a vars file readable only by this job, removed on exit: the password stays off argv
  secrets=$(mktemp)
  trap 'rm -f "$secrets"' EXIT
  chmod 600 "$secrets"
  python3 -c 'import json, os, sys; json.dump({"dbdevops_login_password": os.environ["DBDEVOPS_LOGIN_PASSWORD"]}, sys.stdout)' > "$secrets"
  extra+=(-e "@$secrets")
fi
case $step in
  plan)
    exec ansible-playbook -i "$inventory" "$playbook" --check --diff \
      -e migrate_verify_rollback=true -e migrate_fail_on_lint="${FAIL_ON_LINT:-false}" "${extra[@]}" ;;
  apply)
    exec ansible-playbook -i "$inventory" "$playbook" \
      -e migrate_rollback_on_failure=true "${extra[@]}" ;;
  *)
    echo "usage: ci/migrations.sh plan|apply" >&2
    exit 2 ;;
esac
