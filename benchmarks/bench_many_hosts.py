"""Wall time of one play (server role + backup role) against host count and forks.

    source scripts/bootstrap.sh dev
    python benchmarks/bench_many_hosts.py --hosts 1,5,20 --forks 5,20

For each host count N (benchmarks/netns_hosts.py: N network namespaces on one
bridge, each with its own sshd, reached over SSH with ControlMaster) and each
fork count F, the script

  1. makes every host fresh: drops the ``bench<i>`` clusters, runs the backup
     role's ``remove.yml`` for the ``bench<i>`` configurations, removes the backup
     folders, logs and per-host engines, and closes the SSH control masters, so
     the converge pays for the connections and ships the engine too;
  2. runs ``benchmarks/many_hosts_play.yml`` (converge) and times it;
  3. runs it again (rerun, warm control masters) and times it; ``changed`` of the
     rerun must be 0.

Packages are already installed (the machine is shared by all hosts), so the
converge is: facts, checks, which packages are missing, pg_createcluster,
settings, pg_hba, start, a database, the backup engine (one zip), command,
configuration, logrotate and a cron entry.

All hosts share this machine's CPUs (2 here): the numbers measure Ansible's
orchestration plus the real work of N clusters on one machine, not N machines.

The collection under test is this checkout as a user gets it: built with
``ansible-galaxy collection build`` and installed from that tarball into the
state folder, once at the start (later edits to the checkout do not leak into
the runs). With ``--baseline REV`` the collection at git revision REV is built
and installed the same way, and every (N, F) runs baseline then current, back
to back, so their ratio is measured under the same load.

Writes ``benchmarks/results/many_hosts.json`` (a table per run, the slowest
tasks of each run, the machine and its load) and each run's log under
``benchmarks/results/many_hosts_logs/``; prints a Markdown table on stdout and,
after tearing everything down, the "nothing left behind" check.
"""

import argparse
import datetime
import io
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import netns_hosts  # noqa: E402

ROOT = netns_hosts.ROOT
PLAY = os.path.join(HERE, 'many_hosts_play.yml')
RESULTS = os.path.join(HERE, 'results')
LOGS = os.path.join(RESULTS, 'many_hosts_logs')

RECAP_RE = re.compile(r'^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)'
                      r'\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)')

# A small stdout-neutral callback: wall time of each task (linear strategy: from
# its start to the next task's start), written as JSON where DBDV_TIMING_FILE says.
TIMING_CALLBACK = '''
import json, os, time
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'dbdv_timing'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._tasks = []
        self._cur = None

    def _close(self):
        if self._cur is not None:
            self._cur['seconds'] = round(time.monotonic() - self._cur.pop('_t0'), 3)
            self._tasks.append(self._cur)
            self._cur = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close()
        self._cur = {'task': task.get_name(), '_t0': time.monotonic()}

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_playbook_on_stats(self, stats):
        self._close()
        with open(os.environ['DBDV_TIMING_FILE'], 'w') as f:
            json.dump(self._tasks, f)
'''


def log(msg):
    print('[bench] %s' % msg, file=sys.stderr, flush=True)


def loadavg():
    with open('/proc/loadavg') as f:
        return [float(x) for x in f.read().split()[:3]]


def ansible_version():
    res = subprocess.run(['ansible-playbook', '--version'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True, check=False, env=netns_hosts._ansible_env())
    return res.stdout.splitlines()[0] if res.stdout else 'unknown'


def apt_lists_age():
    """Seconds since the apt lists were refreshed, as the apt module computes it."""
    for path in ('/var/lib/apt/periodic/update-success-stamp', '/var/lib/apt/lists'):
        if os.path.exists(path):
            return time.time() - os.stat(path).st_mtime
    return float('inf')


def write_inventory(state, path):
    # JSON is YAML: the yaml inventory plugin reads it
    with open(path, 'w') as f:
        json.dump(netns_hosts.inventory(state), f, indent=1)


def install_collection(source_dir, target, label):
    """ansible-galaxy collection build of source_dir, installed (no deps) under target;
    returns target, an ANSIBLE_COLLECTIONS_PATH entry."""
    env = netns_hosts._ansible_env()
    # the build reads each file twice (manifest, then tarball): build from a copy, so an
    # edit in the checkout meanwhile cannot fail the install's checksum check
    skip = shutil.ignore_patterns('.git', '.venv', '.cache', '.ci', 'output', 'results', '__pycache__', '*.tar.gz')
    for attempt in range(1, 4):
        with tempfile.TemporaryDirectory(prefix='dbdv-build-') as out:
            try:
                copy = os.path.join(out, 'src')
                shutil.copytree(source_dir, copy, ignore=skip, symlinks=True)
                netns_hosts.run(['ansible-galaxy', 'collection', 'build', '--output-path', out, copy],
                                env=env, quiet=True)
                tarballs = [os.path.join(out, f) for f in os.listdir(out) if f.endswith('.tar.gz')]
                netns_hosts.run(['ansible-galaxy', 'collection', 'install', '--no-deps', '--force', '-p', target]
                                + tarballs, env=env, quiet=True)
                break
            except (RuntimeError, OSError, shutil.Error) as e:
                # a file edited or removed while it was copied
                if attempt == 3:
                    raise
                log('collection %s: build %d failed, again: %s' % (label, attempt, str(e)[-200:]))
                shutil.rmtree(target, ignore_errors=True)
    log('collection %s: built and installed under %s' % (label, target))
    return target


def install_baseline(rev, target):
    """The collection at git revision rev (git archive), built and installed like the current one."""
    with tempfile.TemporaryDirectory(prefix='dbdv-baseline-') as src:
        archive = subprocess.run(['git', '-C', ROOT, 'archive', '--format=tar', rev], stdout=subprocess.PIPE,
                                 check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(src)
        return install_collection(src, target, 'baseline %s' % rev)


def close_masters(state):
    for i in range(1, state['n'] + 1):
        sock = netns_hosts.control_path(state['dir'], i)
        if os.path.exists(sock):
            netns_hosts.run(['ssh', '-o', 'ControlPath=' + sock, '-O', 'exit', 'root@' + netns_hosts.host_addr(i)],
                            check=False, quiet=True)


def fresh(state):
    """Every host as before its first converge: no cluster, no backup schedule."""
    n = state['n']
    names = ['%s%d' % (netns_hosts.CLUSTER_PREFIX, i) for i in range(1, n + 1)]
    netns_hosts.drop_clusters([c for c in netns_hosts._bench_clusters() if c in names])
    netns_hosts.remove_backups(names)
    close_masters(state)


def run_play(state, inv, forks, label, timeout, collections=None):
    env = netns_hosts._ansible_env()
    if collections:
        # the collection under test first; community.postgresql from the checkout's venv
        env['ANSIBLE_COLLECTIONS_PATH'] = collections + ':' + os.path.join(ROOT, '.venv', 'collections')
    cb_dir = os.path.join(state['dir'], 'callbacks')
    os.makedirs(cb_dir, exist_ok=True)
    with open(os.path.join(cb_dir, 'dbdv_timing.py'), 'w') as f:
        f.write(TIMING_CALLBACK)
    timing_file = os.path.join(state['dir'], 'timing-%s.json' % label)
    env.update({
        'ANSIBLE_CALLBACK_PLUGINS': cb_dir,
        'ANSIBLE_CALLBACKS_ENABLED': 'dbdv_timing',
        'DBDV_TIMING_FILE': timing_file,
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_DEPRECATION_WARNINGS': 'false',
    })
    argv = ['ansible-playbook', '-i', inv, PLAY, '--forks', str(forks)]
    load = loadavg()
    t0 = time.monotonic()
    try:
        res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                             timeout=timeout, cwd=ROOT, check=False)
        out, rc = res.stdout, res.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b'').decode(errors='replace') if isinstance(e.stdout, bytes) else (e.stdout or '')
        rc = 'timeout'
    seconds = time.monotonic() - t0
    os.makedirs(LOGS, exist_ok=True)
    with open(os.path.join(LOGS, '%s.log' % label), 'w') as f:
        f.write(out)
    recap = {}
    for line in out.splitlines():
        m = RECAP_RE.match(line.strip())
        if m:
            recap[m.group(1)] = [int(x) for x in m.groups()[1:]]
    errors = [l.strip()[:400] for l in out.splitlines() if l.startswith(('fatal:', 'failed:')) or 'FAILED!' in l][:5]
    tasks = []
    try:
        with open(timing_file) as f:
            tasks = json.load(f)
    except (OSError, ValueError):
        pass
    return {
        'seconds': round(seconds, 1),
        'rc': rc,
        'load_before': load,
        'hosts_in_recap': len(recap),
        'ok': sum(v[0] for v in recap.values()),
        'changed': sum(v[1] for v in recap.values()),
        'unreachable': sum(v[2] for v in recap.values()),
        'failed': sum(v[3] for v in recap.values()),
        'changed_hosts': sorted(h for h, v in recap.items() if v[1]),
        'errors': errors,
        'tasks': len(tasks),
        'slowest_tasks': sorted(tasks, key=lambda t: -t['seconds'])[:8],
        'task_seconds_total': round(sum(t['seconds'] for t in tasks), 1),
    }


def table(rows):
    lines = ['| collection | hosts | forks | converge s | s/host | rerun s | changed on rerun | failed '
             '| load (1 min) before |',
             '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for r in rows:
        c, rr = r['converge'], r['rerun']
        lines.append('| %s | %d | %d | %.1f | %.1f | %s | %s | %d | %.2f |' % (
            r.get('collection', 'current'), r['hosts'], r['forks'], c['seconds'], c['seconds'] / r['hosts'],
            '%.1f' % rr['seconds'] if rr else '-', rr['changed'] if rr else '-',
            c['failed'] + c['unreachable'] + ((rr['failed'] + rr['unreachable']) if rr else 0),
            c['load_before'][0]))
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    ap.add_argument('--hosts', default='1,5,20', help='host counts, comma-separated (default 1,5,20)')
    ap.add_argument('--forks', default='5,20', help='fork counts, comma-separated (default 5,20)')
    ap.add_argument('--timeout', type=int, default=1200, help='seconds per ansible-playbook run (default 1200)')
    ap.add_argument('--no-rerun', action='store_true', help='skip the idempotence rerun')
    ap.add_argument('--no-apt-update', action='store_true',
                    help='do not refresh the apt lists on this machine before the runs (see APT below)')
    ap.add_argument('--baseline', metavar='REV',
                    help='also run the collection at git revision REV, before the current one at each (N, F)')
    ap.add_argument('--output', default=os.path.join(RESULTS, 'many_hosts.json'))
    args = ap.parse_args()
    host_counts = [int(x) for x in args.hosts.split(',') if x]
    fork_counts = [int(x) for x in args.forks.split(',') if x]
    os.makedirs(RESULTS, exist_ok=True)
    # SIGTERM (and SIGINT, ignored in a background job otherwise) tear down like Ctrl-C
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.default_int_handler)

    if any(netns_hosts.leftovers().values()):
        log('leftovers of an earlier run found: tearing them down first')
        netns_hosts.down()

    # APT: the server role's package task sets cache_valid_time: 3600, which makes the
    # apt module refresh the lists whenever they are older than an hour, even when
    # every package is installed. The namespace hosts have no route to a mirror, so
    # with lists older than an hour every host fails after ~70 s of retries. Fresh
    # lists (refreshed here, on the machine itself) keep the role from trying.
    age = apt_lists_age()
    if age > 3600 - 1800:
        if args.no_apt_update:
            log('apt lists are %.0f min old: the server role will try to refresh them from the '
                'namespace hosts (no network) once they pass 60 min' % (age / 60))
        else:
            log('apt lists are %.0f min old: apt-get update on this machine first' % (age / 60))
            subprocess.run(['apt-get', 'update', '-qq'], check=True)
            # apt-get update leaves the lists folder's mtime alone when no list changed, and
            # there is no update-success-stamp here: mark the (now current) lists as fresh
            os.utime('/var/lib/apt/lists')

    meta = {
        'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
        'machine': '%s, %s, %d CPUs, %d MB RAM' % (
            platform.node(), platform.platform(), os.cpu_count(),
            os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**20),
        'ansible': ansible_version(),
        'load_at_start': loadavg(),
        'apt_lists_age_min_at_start': round(apt_lists_age() / 60, 1),
        'play': os.path.relpath(PLAY, ROOT),
        'method': 'fresh build before each converge (bench clusters dropped, backup remove.yml, '
                  'backup folders, logs and per-host engines removed, SSH control masters closed); '
                  'rerun right after with warm control masters; collections built and installed from '
                  'tarballs into a scratch folder',
        'baseline': args.baseline,
        'current_git_head': subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'],
                                           stdout=subprocess.PIPE, text=True, check=False).stdout.strip(),
    }
    scratch = tempfile.mkdtemp(prefix='dbdv-collections-')
    versions = []
    try:
        if args.baseline:
            versions.append(('baseline ' + args.baseline,
                             install_baseline(args.baseline, os.path.join(scratch, 'baseline'))))
        versions.append(('current', install_collection(ROOT, os.path.join(scratch, 'current'),
                                                       'current (this checkout)')))
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    rows = []
    t_all = time.monotonic()
    try:
        for n in host_counts:
            t0 = time.monotonic()
            state = netns_hosts.up(n)
            up_s = time.monotonic() - t0
            log('%d host(s) up in %.1f s (%s)' % (n, up_s, state['dir']))
            inv = os.path.join(state['dir'], 'inventory.yml')
            write_inventory(state, inv)
            for forks in fork_counts:
                for version, collections in versions:
                    fresh(state)
                    label = 'n%d-f%d%s' % (n, forks, '-baseline' if version != 'current' else '')
                    log('%s: converge ...' % label)
                    conv = run_play(state, inv, forks, label + '-converge', args.timeout, collections)
                    log('%s: converge %.1f s rc %s changed %d failed %d unreachable %d'
                        % (label, conv['seconds'], conv['rc'], conv['changed'], conv['failed'], conv['unreachable']))
                    for e in conv['errors']:
                        log('  ' + e)
                    rerun = None
                    if not args.no_rerun and conv['rc'] != 'timeout':
                        rerun = run_play(state, inv, forks, label + '-rerun', args.timeout, collections)
                        log('%s: rerun %.1f s rc %s changed %d %s' % (label, rerun['seconds'], rerun['rc'],
                                                                      rerun['changed'], rerun['changed_hosts']))
                        for e in rerun['errors']:
                            log('  ' + e)
                    rows.append({'collection': version, 'hosts': n, 'forks': forks, 'setup_seconds': round(up_s, 1),
                                 'converge': conv, 'rerun': rerun})
                    with open(args.output, 'w') as f:
                        json.dump({'meta': meta, 'runs': rows}, f, indent=1)
            t0 = time.monotonic()
            netns_hosts.down()
            log('%d host(s) down in %.1f s' % (n, time.monotonic() - t0))
    except KeyboardInterrupt:
        # SIGTERM / Ctrl-C: keep what was measured, tear down, report as usual
        meta['interrupted'] = 'stopped after %d run(s)' % len(rows)
        log('interrupted: tearing down')
    finally:
        netns_hosts.down()
        shutil.rmtree(scratch, ignore_errors=True)
    meta['total_seconds'] = round(time.monotonic() - t_all, 1)
    meta['load_at_end'] = loadavg()
    print('\nmany hosts: %s, %s, load at start %s, at end %s\n' % (
        meta['date'], meta['machine'], meta['load_at_start'], meta['load_at_end']))
    print(table(rows))
    print('\nnothing-left-behind check after down:')
    clean = netns_hosts.print_leftovers()
    meta['left_behind'] = {k: v for k, v in netns_hosts.leftovers().items() if v}
    with open(args.output, 'w') as f:
        json.dump({'meta': meta, 'runs': rows, 'table_markdown': table(rows)}, f, indent=1)
    print('\nwrote %s' % os.path.relpath(args.output, ROOT))
    ok = clean and all(r['converge']['rc'] == 0 and (args.no_rerun or (r['rerun'] and r['rerun']['changed'] == 0))
                       for r in rows)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
