#!/usr/bin/env bash
# Installs what the lab (profile "lab") or the test suite (profile "dev") needs
# on Debian 12 as root: apt packages, a virtualenv with pinned Python packages,
# community.postgresql (Galaxy first, else from the `ansible` wheel on PyPI),
# and this collection linked into the collections path.
# Meant to be sourced: it exports PATH, ANSIBLE_CONFIG and ANSIBLE_COLLECTIONS_PATH
# and returns non-zero when something could not be installed. The installation
# runs in a child bash ("bootstrap.sh --install <profile>", with set -euo
# pipefail), so the caller's shell options are left as they were: an interactive
# shell that sources this does not start exiting on the next failing command.

DBDEVOPS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DBDEVOPS_VENV=${DBDEVOPS_VENV:-$DBDEVOPS_ROOT/.venv}
DBDEVOPS_COLLECTIONS=$DBDEVOPS_VENV/collections
DBDEVOPS_ANSIBLE_WHEEL_VERSION=12.3.0
export DBDEVOPS_ROOT DBDEVOPS_VENV DBDEVOPS_COLLECTIONS DBDEVOPS_ANSIBLE_WHEEL_VERSION

if [ "${1:-}" = --install ]; then
set -euo pipefail
__profile=${2:-lab}

__log() { printf '==> %s\n' "$*" >&2; }

__apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing Debian packages ${missing[*]}; run as root or install them first" >&2
    return 1
  fi
  __log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

__lab_pkgs=(python3 python3-venv python3-pip python3-psycopg2 openssl ca-certificates locales)
__dev_pkgs=(postgresql postgresql-contrib postgresql-client cron logrotate python3-pglast iproute2 procps shellcheck e2fsprogs util-linux git pgbackrest openssh-server openssh-client)
if [ "$__profile" = dev ]; then
  __apt_install "${__lab_pkgs[@]}" "${__dev_pkgs[@]}"
else
  __apt_install "${__lab_pkgs[@]}"
fi

# The virtualenv, rebuilt only when the pinned requirements change.
__reqs=$DBDEVOPS_ROOT/requirements.txt
[ "$__profile" = dev ] && __reqs=$DBDEVOPS_ROOT/requirements-dev.txt
__stamp=$DBDEVOPS_VENV/.requirements-$(cat "$DBDEVOPS_ROOT/requirements.txt" "$__reqs" | sha256sum | cut -c1-16)
if [ ! -x "$DBDEVOPS_VENV/bin/python" ]; then
  __log "creating virtualenv $DBDEVOPS_VENV"
  "${DBDEVOPS_PYTHON:-python3}" -m venv "$DBDEVOPS_VENV"
fi
if [ ! -f "$__stamp" ]; then
  __log "installing Python requirements from ${__reqs#"$DBDEVOPS_ROOT"/}"
  "$DBDEVOPS_VENV/bin/python" -m pip install -q --upgrade pip
  "$DBDEVOPS_VENV/bin/python" -m pip install -q -r "$__reqs"
  touch "$__stamp"
fi
export PATH=$DBDEVOPS_VENV/bin:$PATH

# community.postgresql: Galaxy first; Galaxy unreachable -> the ansible wheel.
__cp=$DBDEVOPS_COLLECTIONS/ansible_collections/community/postgresql
if [ ! -f "$__cp/MANIFEST.json" ]; then
  mkdir -p "$DBDEVOPS_COLLECTIONS"
  __log "installing community.postgresql from Galaxy"
  if ! timeout 90 ansible-galaxy collection install -r "$DBDEVOPS_ROOT/requirements.yml" \
        -p "$DBDEVOPS_COLLECTIONS" >/dev/null 2>&1; then
    __log "Galaxy unreachable: extracting community.postgresql from ansible==$DBDEVOPS_ANSIBLE_WHEEL_VERSION (PyPI)"
    __tmp=$(mktemp -d)
    "$DBDEVOPS_VENV/bin/python" -m pip download -q --no-deps -d "$__tmp" "ansible==$DBDEVOPS_ANSIBLE_WHEEL_VERSION"
    "$DBDEVOPS_VENV/bin/python" - "$__tmp"/ansible-*.whl "$DBDEVOPS_COLLECTIONS" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
prefix = "ansible_collections/community/postgresql/"
with zipfile.ZipFile(wheel) as zf:
    members = [m for m in zf.namelist() if m.startswith(prefix)]
    if not members:
        sys.exit("community.postgresql not found in %s" % wheel)
    zf.extractall(dest, members)
PY
    rm -rf "$__tmp"
  fi
fi
if [ ! -f "$__cp/MANIFEST.json" ]; then
  echo "bootstrap: community.postgresql is not installed" >&2
  exit 1
fi

# This checkout, seen by Ansible as dbdevops.postgresql.
mkdir -p "$DBDEVOPS_COLLECTIONS/ansible_collections/dbdevops"
ln -sfn "$DBDEVOPS_ROOT" "$DBDEVOPS_COLLECTIONS/ansible_collections/dbdevops/postgresql"
exit 0
fi

if bash "${BASH_SOURCE[0]}" --install "${1:-lab}"; then
  export PATH=$DBDEVOPS_VENV/bin:$PATH
  export ANSIBLE_CONFIG=$DBDEVOPS_ROOT/ansible.cfg
  export ANSIBLE_COLLECTIONS_PATH=$DBDEVOPS_COLLECTIONS
else
  echo "bootstrap: installation failed (see the messages above)" >&2
  # sourced: return to the caller; run directly: exit
  # shellcheck disable=SC2317
  return 1 2>/dev/null || exit 1
fi
