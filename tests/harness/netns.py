"""Two throwaway "hosts" in network namespaces, each with its own sshd and its own PostgreSQL cluster.

    hosts = TwoHosts().up()            # removes leftovers of a killed run first
    try:
        hosts.create_primary_cluster('a', password)   # 15/dbdt_a on 10.78.0.11:5601, inside namespace dbdt-a
        run_playbook_over_ssh('replica.yml', hosts.inventory(...), tmp)
    finally:
        hosts.down()
    assert not any(leftovers().values())

Host ``a`` is the namespace ``dbdt-a`` (address 10.78.0.11/24 on its ``eth0``), host ``b`` is ``dbdt-b``
(10.78.0.12); the host sides of their veth pairs, ``dbdtva`` and ``dbdtvb``, are ports of the bridge
``dbdtbr0`` (10.78.0.1/24 here, in the root namespace, where the tests and the Ansible controller run).
``ip link set dbdtva down`` cuts host a off the network: nothing reaches it over TCP any more, while
its processes keep running.  Each namespace runs an sshd listening on its address only (root, a key
generated into the state directory ``/tmp/dbdt-test-*``, no passwords, its PidFile there; keys of other users
from their own ``~/.ssh/authorized_keys``; PAM on, because without it sshd refuses key logins to accounts whose
password is locked with ``!``, as Debian's ``postgres`` is);
Ansible connects through it with a ControlMaster socket in the state directory.

The namespaces separate the network only: both hosts share this machine's file system, users and
process table, so each host has its own Debian cluster (``15/dbdt_a`` port 5601, ``15/dbdt_b`` port
5602).  A cluster started through a host's sshd (or ``ip netns exec``) runs inside that namespace.
Unix sockets are files, so ``/var/run/postgresql/.s.PGSQL.5601`` still reaches host a's cluster from
anywhere: that is how a test looks at a host that is cut off.

Everything is found again by name (namespaces ``dbdt-*``, links ``dbdt*``, clusters ``15/dbdt_*``,
sshd processes whose command line names a ``/tmp/dbdt-test-`` config), so ``cleanup()`` also removes
what a killed run left.  The names and the 10.78.0.0/24 subnet are this harness's own
(``benchmarks/netns_hosts.py`` uses ``dbdv*`` and 10.77.0.0/24).
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import ansible_runner

from tests.harness.runner import PLAYBOOKS, PlaybookRun

BRIDGE = 'dbdtbr0'
SUBNET = '10.78.0'
BRIDGE_ADDR = SUBNET + '.1/24'
NS_PREFIX = 'dbdt-'
LINK_PREFIX = 'dbdt'
STATE_PREFIX = '/tmp/dbdt-test-'
PG_VERSION = '15'
SSHD = '/usr/sbin/sshd'
SSHD_PRIVSEP_DIR = '/run/sshd'
CLUSTER_RE = re.compile(r'^dbdt_[a-z]$')
HOSTS = {
    'a': dict(ns='dbdt-a', veth='dbdtva', addr=SUBNET + '.11', cluster='dbdt_a', port=5601),
    'b': dict(ns='dbdt-b', veth='dbdtvb', addr=SUBNET + '.12', cluster='dbdt_b', port=5602),
}

SSHD_CONFIG = """\
# dbdt test host {name} (namespace {ns}); started by tests/harness/netns.py
Port 22
ListenAddress {addr}
HostKey {dir}/ssh_host_ed25519_key
AuthorizedKeysFile {dir}/authorized_keys .ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
StrictModes no
MaxStartups 50
UseDNS no
LogLevel ERROR
Subsystem sftp /usr/lib/openssh/sftp-server
"""

# pg_hba lines of both clusters: the controller (10.78.0.1) and the other host, with passwords
HBA_LINES = ('host all postgres %s.0/24 scram-sha-256\n' % SUBNET,
             'host replication replicator %s.0/24 scram-sha-256\n' % SUBNET)


def run(argv, check=True, **kwargs):
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=False, **kwargs)
    if check and done.returncode != 0:
        raise RuntimeError('%s failed (%d): %s' % (' '.join(argv), done.returncode,
                                                   (done.stderr or done.stdout).strip()))
    return done


# --- what exists, found by name -------------------------------------------------------------------

def namespaces():
    out = run(['ip', 'netns', 'list'], check=False).stdout
    return sorted({line.split()[0] for line in out.splitlines() if line.split() and
                   line.split()[0].startswith(NS_PREFIX)})


def links():
    names = []
    for line in run(['ip', '-o', 'link', 'show'], check=False).stdout.splitlines():
        match = re.match(r'^\d+:\s+([^:@]+)', line)
        if match and match.group(1).startswith(LINK_PREFIX):
            names.append(match.group(1))
    return sorted(names)


def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return handle.read().replace(b'\0', b' ').decode(errors='replace').strip()
    except OSError:
        return ''


def _is_sshd(pid):
    try:
        return os.readlink('/proc/%d/exe' % pid) == SSHD
    except OSError:
        return False


def our_sshd_pids():
    return sorted(int(p) for p in os.listdir('/proc') if p.isdigit() and _is_sshd(int(p))
                  and STATE_PREFIX in _cmdline(int(p)))


def clusters():
    names = set()
    for line in run(['pg_lsclusters', '-h'], check=False).stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == PG_VERSION and CLUSTER_RE.match(fields[1]):
            names.add(fields[1])
    for root in ('/etc/postgresql/%s/' % PG_VERSION, '/var/lib/postgresql/%s/' % PG_VERSION):
        names.update(os.path.basename(p) for p in glob.glob(root + 'dbdt_*') if CLUSTER_RE.match(os.path.basename(p)))
    return sorted(names)


def leftovers():
    """{what: [items]}: empty lists when nothing of this harness is on the machine."""
    return {'netns dbdt-*': namespaces(), 'links dbdt*': links(), 'sshd of ours': our_sshd_pids(),
            'clusters 15/dbdt_*': clusters(), 'state dirs': sorted(glob.glob(STATE_PREFIX + '*'))}


def _stop_pid(pid, timeout=10):
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
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def cleanup():
    """Remove everything of this harness, in order; safe to run any time, twice, or after a killed run."""
    states = sorted(glob.glob(STATE_PREFIX + '*'))
    for state in states:                                   # 1. the SSH control masters
        for sock in glob.glob(os.path.join(state, 'cp', '*')):
            name = os.path.basename(sock)
            if name in HOSTS:
                run(['ssh', '-o', 'ControlPath=' + sock, '-O', 'exit', 'root@' + HOSTS[name]['addr']], check=False)
    pids = set(our_sshd_pids())                            # 2. sshd, by PID
    for state in states:
        for pidfile in glob.glob(os.path.join(state, 'sshd-*.pid')):
            try:
                with open(pidfile) as handle:
                    pid = int(handle.read().strip())
            except (OSError, ValueError):
                continue
            if _is_sshd(pid):
                pids.add(pid)
    for pid in sorted(pids):
        _stop_pid(pid)
    for name in clusters():                                # 3. the clusters (running inside the namespaces)
        if os.path.exists('/etc/postgresql/%s/%s/postgresql.conf' % (PG_VERSION, name)):
            run(['pg_dropcluster', '--stop', PG_VERSION, name], check=False)
        for path in ('/etc/postgresql/%s/%s' % (PG_VERSION, name), '/var/lib/postgresql/%s/%s' % (PG_VERSION, name)):
            shutil.rmtree(path, ignore_errors=True)
        for path in glob.glob('/var/log/postgresql/postgresql-%s-%s.log*' % (PG_VERSION, name)):
            os.unlink(path)
    for ns in namespaces():                                # 4. anything else left inside our namespaces
        for pid in run(['ip', 'netns', 'pids', ns], check=False).stdout.split():
            if pid.isdigit():
                _stop_pid(int(pid))
    for link in links():                                   # 5. veths, then the bridge, then the namespaces
        if link != BRIDGE:
            run(['ip', 'link', 'del', link], check=False)
    if BRIDGE in links():
        run(['ip', 'link', 'del', BRIDGE], check=False)
    for ns in namespaces():
        run(['ip', 'netns', 'del', ns], check=False)
    for state in states:                                   # 6. state directories (and /run/sshd if ours)
        created = os.path.exists(os.path.join(state, 'created-privsep-dir'))
        if created and os.path.isdir(SSHD_PRIVSEP_DIR) and not any(
                _is_sshd(int(p)) for p in os.listdir('/proc') if p.isdigit()):
            shutil.rmtree(SSHD_PRIVSEP_DIR, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)


class TwoHosts(object):
    """Hosts ``a`` and ``b`` (see the module header)."""

    def __init__(self):
        self.dir = None

    def up(self):
        if not os.path.exists(SSHD):
            raise RuntimeError('%s missing: apt-get install -y openssh-server' % SSHD)
        cleanup()
        self.dir = tempfile.mkdtemp(prefix=os.path.basename(STATE_PREFIX), dir=os.path.dirname(STATE_PREFIX))
        os.chmod(self.dir, 0o700)
        os.makedirs(os.path.join(self.dir, 'cp'), mode=0o700)
        if not os.path.isdir(SSHD_PRIVSEP_DIR):
            os.makedirs(SSHD_PRIVSEP_DIR, mode=0o755)
            open(os.path.join(self.dir, 'created-privsep-dir'), 'w').close()
        run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'dbdt-test', '-f', self.key])
        run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'dbdt-test-host',
             '-f', os.path.join(self.dir, 'ssh_host_ed25519_key')])
        shutil.copy(self.key + '.pub', os.path.join(self.dir, 'authorized_keys'))
        run(['ip', 'link', 'add', BRIDGE, 'type', 'bridge'])
        run(['ip', 'addr', 'add', BRIDGE_ADDR, 'dev', BRIDGE])
        run(['ip', 'link', 'set', BRIDGE, 'up'])
        for name, host in sorted(HOSTS.items()):
            ns = host['ns']
            run(['ip', 'netns', 'add', ns])
            run(['ip', 'link', 'add', host['veth'], 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
            run(['ip', 'link', 'set', host['veth'], 'master', BRIDGE, 'up'])
            run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
            run(['ip', '-n', ns, 'addr', 'add', host['addr'] + '/24', 'dev', 'eth0'])
            run(['ip', '-n', ns, 'link', 'set', 'eth0', 'up'])
            conf = os.path.join(self.dir, 'sshd-%s.conf' % name)
            with open(conf, 'w') as handle:
                handle.write(SSHD_CONFIG.format(name=name, ns=ns, addr=host['addr'], dir=self.dir))
            run(['ip', 'netns', 'exec', ns, SSHD, '-f', conf, '-o', 'PidFile=%s' % self.pidfile(name),
                 '-E', os.path.join(self.dir, 'sshd-%s.log' % name)])
        for name in sorted(HOSTS):
            self._wait_ssh(name)
        return self

    def down(self):
        cleanup()

    # -- names
    @property
    def key(self):
        return os.path.join(self.dir, 'id_ed25519')

    @property
    def host_key_pub(self):
        """The public host key both sshd answer with (what a known_hosts line of either host holds)."""
        return os.path.join(self.dir, 'ssh_host_ed25519_key.pub')

    def pidfile(self, name):
        return os.path.join(self.dir, 'sshd-%s.pid' % name)

    def control_path(self, name):
        return os.path.join(self.dir, 'cp', name)

    def ssh_argv(self, name):
        return ['ssh', '-i', self.key, '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no',
                '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'ConnectTimeout=3',
                'root@' + HOSTS[name]['addr']]

    def _wait_ssh(self, name, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            done = run(self.ssh_argv(name) + ['true'], check=False)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError('the sshd of host %s does not answer: %s' % (name, done.stderr.strip()))
            time.sleep(0.2)

    def host_vars(self, name):
        """Connection host vars of host ``name`` for an inventory."""
        return dict(ansible_host=HOSTS[name]['addr'], ansible_user='root', ansible_ssh_private_key_file=self.key,
                    ansible_python_interpreter='/usr/bin/python3',
                    ansible_ssh_args='-o ControlMaster=auto -o ControlPersist=300s',
                    ansible_control_path=self.control_path(name),
                    ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null '
                                            '-o LogLevel=ERROR -o ServerAliveInterval=5',
                    ansible_timeout=60)

    # -- the clusters
    def in_ns(self, name, argv, check=True):
        return run(['ip', 'netns', 'exec', HOSTS[name]['ns']] + list(argv), check=check)

    def create_primary_cluster(self, name, password, replicator_password):
        """pg_createcluster 15/dbdt_<name>, listening on every address of its namespace, started there, with
        the postgres password, pg_hba lines for the subnet and the settings pg_rewind needs."""
        host = HOSTS[name]
        run(['pg_createcluster', PG_VERSION, host['cluster'], '--port', str(host['port']), '--start-conf', 'auto',
             '--', '--auth-local', 'peer', '--auth-host', 'scram-sha-256'])
        self.add_hba(name)
        self.in_ns(name, ['pg_ctlcluster', PG_VERSION, host['cluster'], 'start'])
        # ALTER SYSTEM lands in postgresql.auto.conf, which pg_basebackup copies: the standby listens too
        for statement in ("ALTER SYSTEM SET listen_addresses = '*'", 'ALTER SYSTEM SET fsync = off',
                          "ALTER SYSTEM SET wal_receiver_status_interval = '1s'",
                          "ALTER SYSTEM SET wal_retrieve_retry_interval = '500ms'"):
            self.psql(name, statement)
        self.psql(name, "ALTER USER postgres PASSWORD '%s'" % password)
        self.in_ns(name, ['pg_ctlcluster', PG_VERSION, host['cluster'], 'restart'])

    def add_hba(self, name):
        path = '/etc/postgresql/%s/%s/pg_hba.conf' % (PG_VERSION, HOSTS[name]['cluster'])
        with open(path) as handle:
            text = handle.read()
        with open(path, 'a') as handle:
            handle.write(''.join(line for line in HBA_LINES if line not in text))

    def reload(self, name):
        run(['pg_ctlcluster', PG_VERSION, HOSTS[name]['cluster'], 'reload'])

    def psql(self, name, statement, db='postgres'):
        """One statement over the Unix socket (reaches the cluster even when its host is cut off)."""
        done = run(['runuser', '-u', 'postgres', '--', 'psql', '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
                    '-p', str(HOSTS[name]['port']), '-d', db, '-c', statement])
        return done.stdout.strip()

    def link(self, name, state):
        run(['ip', 'link', 'set', HOSTS[name]['veth'], state])


def run_playbook_over_ssh(name, inventory, tmp, extravars=None, tags=None, cmdline=None):
    """playbooks/<name> through ansible-runner with ``inventory`` (a dict), optionally only ``tags`` (as an AWX
    job's tags) and more ``cmdline`` options (e.g. '--check --diff'); returns a PlaybookRun."""
    private = os.path.join(str(tmp), 'runner-%s-%d' % (name.replace('.yml', ''), len(os.listdir(str(tmp)))))
    os.makedirs(private)
    envvars = dict((k, os.environ[k]) for k in ('ANSIBLE_CONFIG', 'ANSIBLE_COLLECTIONS_PATH', 'PATH')
                   if k in os.environ)
    # one SSH round trip per task (the module on stdin) instead of four: a loaded machine feels each one
    envvars.update(ANSIBLE_NOCOLOR='1', ANSIBLE_SSH_RETRIES='2', ANSIBLE_PIPELINING='1')
    runner = ansible_runner.run(private_data_dir=private, playbook=os.path.join(PLAYBOOKS, name),
                                inventory=json.loads(json.dumps(inventory)), extravars=extravars or {},
                                envvars=envvars, quiet=True, tags=tags, cmdline=cmdline)
    return PlaybookRun(runner)
