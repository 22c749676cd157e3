"""Throwaway "hosts" in network namespaces, each with its own sshd.

    python benchmarks/netns_hosts.py up 5      # prints the state directory
    python benchmarks/netns_hosts.py down      # removes everything, also after a killed "up"
    python benchmarks/netns_hosts.py check     # lists what is left (exit 1 if anything)

Host i (1..N) is the network namespace ``dbdv-h<i>`` with a veth to the bridge
``dbdvbr0`` (10.77.0.1/24 on the host side), address 10.77.0.(10+i)/24, its
loopback up, and an sshd started inside it (``ip netns exec dbdv-h<i>
/usr/sbin/sshd -f <config> -o PidFile=<pid file>``) that listens on that address
only and lets root in with a key generated into the state directory
(``/tmp/dbdv-bench-*``; no passwords).

The namespaces separate the network only: every host shares this machine's
file system, users and process table. So each host gets its own cluster name
(``bench<i>``), port (5500+i), backup configuration name (``bench<i>``), backup
folder, log file, engine folder and command (see ``host_vars``).

Everything is found again by its name or prefix, so ``down`` also cleans up
after an ``up`` that was killed half way, and running it twice is harmless.
Order: ``ssh -O exit`` on each control socket, each sshd stopped by its PID,
the clusters dropped (their postmasters live inside the namespaces), any other
process still inside a namespace (started through our sshd) stopped by PID,
then the veths, the bridge, the namespaces, the backup role's cron entries,
configurations and logrotate files (the role's ``tasks_from: remove.yml``,
run locally), the backup folders, logs and engines, and the state directory.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PREFIX = 'dbdv'
NS_PREFIX = 'dbdv-h'          # namespaces dbdv-h<i>
VETH_PREFIX = 'dbdvv'         # host side of the veth pairs: dbdvv<i>
BRIDGE = 'dbdvbr0'
SUBNET = '10.77.0'
BRIDGE_ADDR = SUBNET + '.1/24'
STATE_GLOB = '/tmp/dbdv-bench-*'
STATE_FILE = 'state.json'
PG_VERSION = '15'
CLUSTER_PREFIX = 'bench'      # clusters, backup config names: bench<i>
PORT_BASE = 5500
BACKUP_DEST_ROOT = '/var/backups/dbdv-bench'
BACKUP_LOG_ROOT = '/var/log/dbdv-bench'
ENGINE_ROOT = '/var/lib/dbdv-bench'   # each host's backup engine and command: engine<i>/
BACKUP_CONFIG_DIR = '/etc/dbdevops-backup'
SSHD = '/usr/sbin/sshd'
SSHD_PRIVSEP_DIR = '/run/sshd'
CRON_TAG_RE = re.compile(r'^#Ansible: dbdevops\.postgresql backup \((%s\d+)\)$' % CLUSTER_PREFIX)
NAME_RE = re.compile(r'^%s\d+$' % CLUSTER_PREFIX)


def log(msg):
    print('[netns_hosts] %s' % msg, file=sys.stderr, flush=True)


def run(argv, check=True, quiet=False, **kw):
    res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False, **kw)
    if check and res.returncode != 0:
        detail = (res.stderr or res.stdout).strip()
        raise RuntimeError('%s failed (rc %d): %s' % (' '.join(argv), res.returncode, detail))
    if not quiet and res.returncode != 0:
        log('(ignored) %s: rc %d %s' % (' '.join(argv), res.returncode, res.stderr.strip()))
    return res


# --- naming -----------------------------------------------------------------

def ns_name(i):
    return '%s%d' % (NS_PREFIX, i)


def host_addr(i):
    return '%s.%d' % (SUBNET, 10 + i)


def host_vars(i):
    """The per-host names that keep hosts apart on the shared file system."""
    name = '%s%d' % (CLUSTER_PREFIX, i)
    return {
        'server_cluster_name': name,
        'server_port': PORT_BASE + i,
        'backup_config_name': name,
        'backup_login_port': PORT_BASE + i,
        'backup_dest': '%s/%s' % (BACKUP_DEST_ROOT, name),
        'backup_log_file': '%s/%s.log' % (BACKUP_LOG_ROOT, name),
        # its own engine and command, as a real host has (not /usr/local, shared with
        # every other use of the collection on this machine)
        'backup_install_dir': '%s/engine%d' % (ENGINE_ROOT, i),
        'backup_command': '%s/engine%d/dbdevops-backup' % (ENGINE_ROOT, i),
    }


def control_path(state_dir, i):
    return os.path.join(state_dir, 'cp', 'h%d' % i)


def inventory(state, extra_host_vars=None):
    """An Ansible inventory (dict, YAML/JSON-ready) for the hosts of ``state``."""
    d = state['dir']
    hosts = {}
    for i in range(1, state['n'] + 1):
        hv = {
            'ansible_host': host_addr(i),
            'ansible_user': 'root',
            'ansible_ssh_private_key_file': os.path.join(d, 'id_ed25519'),
            'ansible_python_interpreter': '/usr/bin/python3',
            'ansible_ssh_args': '-o ControlMaster=auto -o ControlPersist=600s',
            'ansible_control_path': control_path(d, i),
            'ansible_ssh_common_args': '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null '
                                       '-o LogLevel=ERROR',
            # the default 10 s (connection and the su prompt of become) is too short for
            # 20 hosts on 2 loaded CPUs: one host of the first N=20 run was dropped as
            # "Timeout (12s) waiting for privilege escalation prompt"
            'ansible_timeout': 60,
        }
        hv.update(host_vars(i))
        if extra_host_vars:
            hv.update(extra_host_vars)
        hosts['h%d' % i] = hv
    return {'all': {'children': {'bench': {'hosts': hosts}}}}


# --- up -----------------------------------------------------------------------

SSHD_CONFIG = """\
# dbdv benchmark host {i} (namespace {ns}); started by benchmarks/netns_hosts.py
Port 22
ListenAddress {addr}
HostKey {dir}/ssh_host_ed25519_key
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 200
MaxSessions 100
UseDNS no
LogLevel ERROR
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def _save(state):
    path = os.path.join(state['dir'], STATE_FILE)
    with open(path + '.tmp', 'w') as f:
        json.dump(state, f, indent=1)
    os.replace(path + '.tmp', path)


def up(n):
    """Create n hosts; return the state dict (its 'dir' is the state directory)."""
    if not os.path.exists(SSHD):
        raise RuntimeError('%s missing: apt-get install -y openssh-server' % SSHD)
    if any(l for l in _list_namespaces()) or _link_exists(BRIDGE):
        raise RuntimeError('dbdv hosts already exist: run "netns_hosts.py down" first')
    d = tempfile.mkdtemp(prefix='dbdv-bench-', dir='/tmp')
    os.chmod(d, 0o700)
    state = {'dir': d, 'n': 0, 'created_privsep_dir': False, 'started': time.time()}
    _save(state)
    os.makedirs(os.path.join(d, 'cp'), mode=0o700)
    if not os.path.isdir(SSHD_PRIVSEP_DIR):
        os.makedirs(SSHD_PRIVSEP_DIR, mode=0o755)
        state['created_privsep_dir'] = True
        _save(state)
    run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'dbdv-bench', '-f', os.path.join(d, 'id_ed25519')])
    run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'dbdv-bench-host',
         '-f', os.path.join(d, 'ssh_host_ed25519_key')])
    shutil.copy(os.path.join(d, 'id_ed25519.pub'), os.path.join(d, 'authorized_keys'))

    run(['ip', 'link', 'add', BRIDGE, 'type', 'bridge'])
    run(['ip', 'addr', 'add', BRIDGE_ADDR, 'dev', BRIDGE])
    run(['ip', 'link', 'set', BRIDGE, 'up'])
    for i in range(1, n + 1):
        ns, veth = ns_name(i), '%s%d' % (VETH_PREFIX, i)
        state['n'] = i
        _save(state)
        run(['ip', 'netns', 'add', ns])
        run(['ip', 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
        run(['ip', 'link', 'set', veth, 'master', BRIDGE, 'up'])
        run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
        run(['ip', '-n', ns, 'addr', 'add', host_addr(i) + '/24', 'dev', 'eth0'])
        run(['ip', '-n', ns, 'link', 'set', 'eth0', 'up'])
        conf = os.path.join(d, 'sshd-h%d.conf' % i)
        with open(conf, 'w') as f:
            f.write(SSHD_CONFIG.format(i=i, ns=ns, addr=host_addr(i), dir=d))
        run(['ip', 'netns', 'exec', ns, SSHD, '-f', conf,
             '-o', 'PidFile=%s' % os.path.join(d, 'sshd-h%d.pid' % i),
             '-E', os.path.join(d, 'sshd-h%d.log' % i)])
    _wait_ssh(state)
    return state


def _ssh_base(state, i):
    d = state['dir']
    return ['ssh', '-i', os.path.join(d, 'id_ed25519'), '-o', 'BatchMode=yes',
            '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR',
            '-o', 'ConnectTimeout=3', 'root@' + host_addr(i)]


def _wait_ssh(state, timeout=30):
    deadline = time.monotonic() + timeout
    for i in range(1, state['n'] + 1):
        while True:
            res = run(_ssh_base(state, i) + ['true'], check=False, quiet=True)
            if res.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError('sshd of host %d does not answer: %s' % (i, res.stderr.strip()))
            time.sleep(0.2)


def load_state(d):
    try:
        with open(os.path.join(d, STATE_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {'dir': d, 'n': 0, 'created_privsep_dir': False}


# --- discovery (for down and check) -------------------------------------------

def _list_namespaces():
    res = run(['ip', 'netns', 'list'], check=False, quiet=True)
    return sorted({l.split()[0] for l in res.stdout.splitlines() if l.split() and l.split()[0].startswith(NS_PREFIX)})


def _list_links():
    res = run(['ip', '-o', 'link', 'show'], check=False, quiet=True)
    names = []
    for line in res.stdout.splitlines():
        m = re.match(r'^\d+:\s+([^:@]+)', line)
        if m and (m.group(1).startswith(VETH_PREFIX) or m.group(1) == BRIDGE):
            names.append(m.group(1))
    return names


def _link_exists(name):
    return run(['ip', 'link', 'show', name], check=False, quiet=True).returncode == 0


def _ns_pids(ns):
    res = run(['ip', 'netns', 'pids', ns], check=False, quiet=True)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read().replace(b'\0', b' ').decode(errors='replace').strip()
    except OSError:
        return ''


def _exe(pid):
    try:
        return os.readlink('/proc/%d/exe' % pid)
    except OSError:
        return ''


def _is_sshd(pid):
    return _exe(pid) == SSHD


def _our_sshd_pids():
    """sshd processes started with a config from a dbdv state directory (listeners
    and their session children, whose titles still name the config)."""
    pids = []
    for p in os.listdir('/proc'):
        if p.isdigit() and _is_sshd(int(p)) and '/tmp/dbdv-bench-' in _cmdline(int(p)):
            pids.append(int(p))
    return sorted(pids)


def _bench_clusters():
    res = run(['pg_lsclusters', '-h'], check=False, quiet=True)
    names = set()
    for line in res.stdout.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0] == PG_VERSION and NAME_RE.match(f[1]):
            names.add(f[1])
    for path in glob.glob('/etc/postgresql/%s/%s*' % (PG_VERSION, CLUSTER_PREFIX)):
        if NAME_RE.match(os.path.basename(path)):
            names.add(os.path.basename(path))
    for path in glob.glob('/var/lib/postgresql/%s/%s*' % (PG_VERSION, CLUSTER_PREFIX)):
        if NAME_RE.match(os.path.basename(path)):
            names.add(os.path.basename(path))
    return sorted(names, key=lambda s: int(s[len(CLUSTER_PREFIX):]))


def _crontab_names():
    res = run(['crontab', '-u', 'postgres', '-l'], check=False, quiet=True)
    return sorted({m.group(1) for m in (CRON_TAG_RE.match(l.strip()) for l in res.stdout.splitlines()) if m})


def _backup_names():
    names = set(_crontab_names())
    for path in glob.glob(os.path.join(BACKUP_CONFIG_DIR, CLUSTER_PREFIX + '*')):
        base = os.path.basename(path).rsplit('.', 1)[0]
        if NAME_RE.match(base):
            names.add(base)
    for path in glob.glob('/etc/logrotate.d/dbdevops-%s*' % CLUSTER_PREFIX):
        base = os.path.basename(path)[len('dbdevops-'):]
        if NAME_RE.match(base):
            names.add(base)
    return sorted(names, key=lambda s: int(s[len(CLUSTER_PREFIX):]))


# --- down ---------------------------------------------------------------------

def _stop_pid(pid, what, timeout=10):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # reap it if it is our child
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    log('%s %d ignored SIGTERM; SIGKILL' % (what, pid))
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def drop_clusters(names=None):
    """pg_dropcluster --stop each bench cluster and remove config leftovers."""
    names = _bench_clusters() if names is None else names
    for name in names:
        if os.path.exists('/etc/postgresql/%s/%s/postgresql.conf' % (PG_VERSION, name)):
            run(['pg_dropcluster', '--stop', PG_VERSION, name], check=False)
        for path in ('/etc/postgresql/%s/%s' % (PG_VERSION, name), '/var/lib/postgresql/%s/%s' % (PG_VERSION, name)):
            if NAME_RE.match(os.path.basename(path)) and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
    return names


REMOVE_PLAY = """\
- name: Remove the benchmark's backup schedules (the backup role's remove entry point)
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Remove one backup configuration
      ansible.builtin.include_role:
        name: dbdevops.postgresql.backup
        tasks_from: remove.yml
      vars:
        backup_config_name: "{{ item }}"
      loop: %s
"""


def _ansible_env():
    env = dict(os.environ)
    env.setdefault('ANSIBLE_CONFIG', os.path.join(ROOT, 'ansible.cfg'))
    venv_bin = os.path.join(ROOT, '.venv', 'bin')
    if os.path.isdir(venv_bin) and venv_bin not in env.get('PATH', '').split(':'):
        env['PATH'] = venv_bin + ':' + env.get('PATH', '')
    env.setdefault('ANSIBLE_COLLECTIONS_PATH', os.path.join(ROOT, '.venv', 'collections'))
    env['ANSIBLE_LOCALHOST_WARNING'] = 'false'
    env['ANSIBLE_INVENTORY_UNPARSED_WARNING'] = 'false'
    return env


def remove_backups(names=None):
    """Run the backup role's remove.yml locally for each bench config name, then
    delete the bench backup folders and logs (the role keeps backups on purpose)."""
    names = _backup_names() if names is None else names
    if names:
        with tempfile.TemporaryDirectory(prefix='dbdv-remove-') as tmp:
            play = os.path.join(tmp, 'remove.yml')
            with open(play, 'w') as f:
                f.write(REMOVE_PLAY % json.dumps(names))
            res = run(['ansible-playbook', '-i', 'localhost,', play], check=False, quiet=True, env=_ansible_env())
            if res.returncode != 0:
                log('backup remove play failed (rc %d):\n%s' % (res.returncode, res.stdout[-3000:]))
    for path in (BACKUP_DEST_ROOT, BACKUP_LOG_ROOT, ENGINE_ROOT):
        shutil.rmtree(path, ignore_errors=True)
    return names


def down():
    """Remove every dbdv host and what the benchmark left; idempotent."""
    state_dirs = sorted(glob.glob(STATE_GLOB))
    states = [load_state(d) for d in state_dirs]
    # 1. ssh -O exit on every control socket
    for st in states:
        for sock in sorted(glob.glob(os.path.join(st['dir'], 'cp', '*'))):
            m = re.match(r'^h(\d+)$', os.path.basename(sock))
            if m:
                run(['ssh', '-o', 'ControlPath=' + sock, '-O', 'exit', 'root@' + host_addr(int(m.group(1)))],
                    check=False, quiet=True)
    # 2. each sshd by its PID (pid files, and any sshd running a dbdv config)
    pids = set()
    for st in states:
        for pf in glob.glob(os.path.join(st['dir'], 'sshd-h*.pid')):
            try:
                with open(pf) as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                continue
            if _is_sshd(pid):
                pids.add(pid)
    pids.update(_our_sshd_pids())
    for pid in sorted(pids):
        _stop_pid(pid, 'sshd')
    # 3. clusters (their postmasters run inside the namespaces)
    dropped = drop_clusters()
    # 4. anything else still inside a namespace was started through our sshd
    namespaces = _list_namespaces()
    for ns in namespaces:
        for pid in _ns_pids(ns):
            log('stopping process %d left in %s: %s' % (pid, ns, _cmdline(pid)[:100]))
            _stop_pid(pid, 'process')
    # 5. veths, bridge, namespaces
    for link in _list_links():
        if link != BRIDGE:
            run(['ip', 'link', 'del', link], check=False, quiet=True)
    if _link_exists(BRIDGE):
        run(['ip', 'link', 'del', BRIDGE], check=False)
    for ns in namespaces:
        run(['ip', 'netns', 'del', ns], check=False)
    # 6. backup schedules, configurations, logrotate files, folders
    removed = remove_backups()
    # 7. state directories (and /run/sshd if we created it and no other sshd needs it)
    for st in states:
        if st.get('created_privsep_dir') and os.path.isdir(SSHD_PRIVSEP_DIR) \
                and not any(_is_sshd(int(p)) for p in os.listdir('/proc') if p.isdigit()):
            shutil.rmtree(SSHD_PRIVSEP_DIR, ignore_errors=True)
        shutil.rmtree(st['dir'], ignore_errors=True)
    log('down: %d state dir(s), %d sshd, %d cluster(s), %d namespace(s), %d backup config(s)'
        % (len(states), len(pids), len(dropped), len(namespaces), len(removed)))


def leftovers():
    """What of the benchmark is still on the machine: {check: [items]} (empty lists when clean)."""
    cron = run(['crontab', '-u', 'postgres', '-l'], check=False, quiet=True).stdout
    return {
        'netns dbdv-*': _list_namespaces(),
        'links dbdvbr0/dbdvv*': _list_links(),
        'sshd of ours': _our_sshd_pids(),
        'clusters 15/bench*': _bench_clusters(),
        'cron lines bench*': [l for l in cron.splitlines() if re.search(r'\(%s\d+\)|/%s\d+\.json' % (
            CLUSTER_PREFIX, CLUSTER_PREFIX), l)],
        'backup configs bench*': sorted(glob.glob(os.path.join(BACKUP_CONFIG_DIR, CLUSTER_PREFIX + '[0-9]*'))),
        'logrotate dbdevops-bench*': sorted(glob.glob('/etc/logrotate.d/dbdevops-%s[0-9]*' % CLUSTER_PREFIX)),
        'backup/log/engine folders': [p for p in (BACKUP_DEST_ROOT, BACKUP_LOG_ROOT, ENGINE_ROOT)
                                      if os.path.exists(p)],
        'state dirs /tmp/dbdv-bench-*': sorted(glob.glob(STATE_GLOB)),
    }


def print_leftovers(out=sys.stdout):
    left = leftovers()
    for what, items in left.items():
        print('  %-30s %s' % (what, 'none' if not items else 'LEFT: %s' % items), file=out)
    clean = not any(left.values())
    print('  => %s' % ('nothing left behind' if clean else 'SOMETHING WAS LEFT BEHIND'), file=out)
    return clean


def main(argv):
    if len(argv) >= 2 and argv[1] == 'up':
        n = int(argv[2]) if len(argv) > 2 else 1
        try:
            st = up(n)
        except BaseException:
            log('up failed; run "%s down" to clean up' % argv[0])
            raise
        print(st['dir'])
        return 0
    if len(argv) >= 2 and argv[1] == 'down':
        down()
        return 0 if print_leftovers() else 1
    if len(argv) >= 2 and argv[1] == 'check':
        return 0 if print_leftovers() else 1
    if len(argv) >= 2 and argv[1] == 'inventory':
        d = sorted(glob.glob(STATE_GLOB))[-1]
        print(json.dumps(inventory(load_state(d)), indent=1))
        return 0
    print(__doc__.split('\n\n', maxsplit=1)[0], file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv))
