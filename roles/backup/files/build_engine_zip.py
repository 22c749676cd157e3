"""Internal to the backup role: pack the collection's module_utils as one zip the host command imports.

    python build_engine_zip.py MODULE_UTILS_DIR EXCLUDE [EXCLUDE ...]

Runs on the controller (the role's "Build the backup engine archive" task).
Writes ``dbdevops_postgresql_engine.zip`` into a new temporary folder and prints
JSON: ``path`` (the zip), ``dir`` (the folder, for the role to remove),
``sha256`` and ``files`` (the shipped files, relative to module_utils).

The zip holds every ``.py`` file of MODULE_UTILS_DIR whose name matches no
EXCLUDE pattern (``_module.py``: it imports Ansible), under
``ansible_collections/dbdevops/postgresql/plugins/module_utils/`` with an entry
for every folder, so ``sys.path.insert(0, zip)`` imports the engine under its
collection name (zipimport; namespace packages included).

The bytes depend on the files' contents only (sorted entries, fixed time stamps
and modes, stored uncompressed: no zlib version in the output), so the same
engine gives the same zip on any controller and a second converge copies nothing.
"""

import fnmatch
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile

PREFIX = 'ansible_collections/dbdevops/postgresql/plugins/module_utils'
NAME = 'dbdevops_postgresql_engine.zip'
STAMP = (1980, 1, 1, 0, 0, 0)


def engine_files(src, excludes):
    found = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d != '__pycache__')
        for name in filenames:
            if name.endswith('.py') and not any(fnmatch.fnmatch(name, pattern) for pattern in excludes):
                found.append(os.path.relpath(os.path.join(dirpath, name), src).replace(os.sep, '/'))
    return sorted(found)


def _entry(name, mode):
    info = zipfile.ZipInfo(name, date_time=STAMP)
    info.create_system = 3  # Unix, so external_attr carries the mode
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_STORED
    return info


def build(src, excludes, path):
    files = engine_files(src, excludes)
    if not files:
        raise SystemExit('no engine files under %s' % src)
    folders = set()
    for rel in files:
        parts = (PREFIX + '/' + rel).split('/')[:-1]
        folders.update('/'.join(parts[:i]) + '/' for i in range(1, len(parts) + 1))
    with zipfile.ZipFile(path, 'w') as archive:
        for folder in sorted(folders):
            archive.writestr(_entry(folder, 0o40755), b'')
        for rel in files:
            with open(os.path.join(src, rel), 'rb') as handle:
                archive.writestr(_entry(PREFIX + '/' + rel, 0o100644), handle.read())
    with open(path, 'rb') as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    return files, digest


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__.split('\n\n')[1])
    src, excludes = argv[1], argv[2:]
    folder = tempfile.mkdtemp(prefix='dbdevops-engine-')
    path = os.path.join(folder, NAME)
    try:
        files, digest = build(src, excludes, path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    print(json.dumps(dict(path=path, dir=folder, sha256=digest, files=files)))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
