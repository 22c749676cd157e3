"""Playbooks run the way AWX runs them: through ansible-runner, from an inventory.

    done = run_playbook('backup.yml', hostvars=dict(dbdevops_login_port=5433, ...), tmp=tmp_path)
    assert done.status == 'successful' and done.stats['dbdevops_backup']['localhost']['failed'] is False

The inventory has one host, ``localhost`` (local connection, /usr/bin/python3
as on a managed host), carrying ``hostvars``: the connection and job settings
live in the inventory, as in a real job template; ``extravars`` are the job's
own parameters (survey answers).  ``stats`` is what the playbook published
with set_stats (AWX's artifacts).
"""

import os

import ansible_runner

from tests.harness import REPO_ROOT

PLAYBOOKS = os.path.join(REPO_ROOT, 'playbooks')


class PlaybookRun(object):
    def __init__(self, runner):
        self.status = runner.status
        self.rc = runner.rc
        self.events = list(runner.events)
        self.stats = {}
        for event in self.events:
            if event.get('event') == 'playbook_on_stats':
                self.stats = event.get('event_data', {}).get('artifact_data') or {}
        self.recap = runner.stats or {}

    def failures(self):
        """The messages of the failed tasks (for assertion messages)."""
        return [e['event_data'].get('res', {}).get('msg') for e in self.events
                if e.get('event') == 'runner_on_failed' and not e['event_data'].get('ignore_errors')]

    def changed(self, host='localhost'):
        return (self.recap.get('changed') or {}).get(host, 0)

    def __repr__(self):
        return 'PlaybookRun(status=%r, rc=%r, failures=%r, stats=%r)' % (
            self.status, self.rc, self.failures(), self.stats)


def localhost_inventory(hostvars, groups=None):
    """``localhost`` in group postgresql; ``groups`` adds {group: {host: vars}}, each host a local connection
    too (this machine under another name, as the lab's standby is)."""
    local = dict(ansible_connection='local', ansible_python_interpreter='/usr/bin/python3')
    children = {'postgresql': {'hosts': {'localhost': dict(local, **hostvars)}}}
    for group, hosts in (groups or {}).items():
        children[group] = {'hosts': dict((name, dict(local, **host_vars)) for name, host_vars in hosts.items())}
    return {'all': {'children': children}}


def run_playbook(name, hostvars, tmp, extravars=None, check=False, diff=False, groups=None):
    """Run playbooks/<name> through ansible-runner; returns a PlaybookRun."""
    private = os.path.join(str(tmp), 'runner-%s-%d' % (name.replace('.yml', ''), len(os.listdir(str(tmp)))))
    os.makedirs(private)
    cmdline = ' '.join(flag for flag, on in (('--check', check), ('--diff', diff)) if on)
    envvars = dict((k, os.environ[k]) for k in ('ANSIBLE_CONFIG', 'ANSIBLE_COLLECTIONS_PATH', 'PATH')
                   if k in os.environ)
    envvars['ANSIBLE_NOCOLOR'] = '1'
    runner = ansible_runner.run(private_data_dir=private, playbook=os.path.join(PLAYBOOKS, name),
                                inventory=localhost_inventory(hostvars, groups), extravars=extravars or {},
                                envvars=envvars, cmdline=cmdline or None, quiet=True)
    return PlaybookRun(runner)
