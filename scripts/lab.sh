#!/usr/bin/env bash
# The main job: builds the PostgreSQL lab on this host (localhost).
# Extra arguments go to ansible-playbook (for example -e server_port=5440).
set -euo pipefail
# shellcheck source=scripts/bootstrap.sh
source "$(dirname "$0")/bootstrap.sh" lab
cd "$DBDEVOPS_ROOT"
exec ansible-playbook -i inventories/lab/hosts.yml playbooks/lab.yml "$@"
