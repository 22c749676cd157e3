# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: checks and normalises the ``server`` role's pg_hba entries.

The role's argument spec already restricts ``contype`` and ``method`` to
choices; what a spec cannot say (an address that must parse as an IP network,
a ``local`` entry that must not carry one, ...) is checked here, before the role
changes anything, so a typo fails the play naming the entry instead of leaving a
pg_hba.conf the server refuses to load.  Plain Python, no Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

CONTYPES = ('local', 'host', 'hostssl', 'hostnossl', 'hostgssenc', 'hostnogssenc')
# What PostgreSQL 15 accepts (and community.postgresql.postgresql_pg_hba writes).
METHODS = ('trust', 'reject', 'scram-sha-256', 'md5', 'password', 'gss', 'sspi',
           'ident', 'peer', 'ldap', 'radius', 'cert', 'pam')
ADDRESS_KEYWORDS = ('all', 'samehost', 'samenet')
DEFAULT_METHOD = 'scram-sha-256'

_HOSTNAME = re.compile(r'^\.?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$')
_IPV4ISH = re.compile(r'^[0-9.]+$')
_NAME_LIST_ITEM = re.compile(r'^(\+|@)?("[^"]+"|[^\s",]+)$')
_OPTION = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*=\S+$')


def describe_entry(index, entry):
    """'server_hba_entries[2] (host app app_rw 10.0.0.300/24 scram-sha-256)'."""
    if not isinstance(entry, dict):
        return 'server_hba_entries[%d] (%r)' % (index, entry)
    fields = [entry.get('contype'), entry.get('databases'), entry.get('users'),
              entry.get('address'), entry.get('netmask'), entry.get('method') or DEFAULT_METHOD,
              entry.get('options')]
    return 'server_hba_entries[%d] (%s)' % (index, ' '.join(str(f) for f in fields if f not in (None, '')))


def _address_problem(entry):
    contype = entry.get('contype')
    address = entry.get('address')
    netmask = entry.get('netmask')
    if contype == 'local':
        if address or netmask:
            return 'a "local" entry is for Unix-socket connections and takes no address or netmask; remove them'
        return None
    if not address:
        return ('a "%s" entry needs an address: an IP network such as 10.0.0.0/24, '
                'a host name, or one of %s' % (contype, ', '.join(ADDRESS_KEYWORDS)))
    address = str(address)
    if address in ADDRESS_KEYWORDS:
        if netmask:
            return 'address "%s" takes no netmask' % address
        return None
    if '/' in address:
        if netmask:
            return 'address "%s" already has a CIDR mask; remove netmask' % address
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            return ('address "%s" is not a valid IP network in CIDR notation '
                    '(for example 10.0.0.0/24 or fd00::/8)' % address)
        return None
    if ':' in address or _IPV4ISH.match(address):
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return 'address "%s" is not a valid IP address' % address
        if not netmask:
            return ('address "%s" is a bare IP address: write it as %s/%d or give a netmask'
                    % (address, address, ip.max_prefixlen))
        try:
            ipaddress.ip_network('%s/%s' % (address, netmask), strict=False)
        except ValueError:
            return 'netmask "%s" is not a valid netmask for address "%s"' % (netmask, address)
        return None
    if netmask:
        return 'a host name ("%s") takes no netmask' % address
    if not _HOSTNAME.match(address):
        return ('address "%s" is neither an IP network (10.0.0.0/24), a host name, '
                'nor one of %s' % (address, ', '.join(ADDRESS_KEYWORDS)))
    return None


def _name_list_problem(key, value):
    if value is None or str(value).strip() == '':
        return '%s must not be empty (use "all" to match everything)' % key
    for item in str(value).split(','):
        if not _NAME_LIST_ITEM.match(item.strip()):
            return ('%s "%s" is not a comma-separated list of names (quote names with '
                    'spaces: \'"my db"\')' % (key, value))
    return None


def entry_problems(index, entry):
    """All problems of one entry, each as a full sentence naming the entry."""
    where = describe_entry(index, entry)
    if not isinstance(entry, dict):
        return ['%s: an entry must be a mapping with contype, databases, users, address, method' % where]
    problems = []
    contype = entry.get('contype')
    if contype not in CONTYPES:
        problems.append('contype "%s" is not one of %s' % (contype, ', '.join(CONTYPES)))
    method = entry.get('method') or DEFAULT_METHOD
    if method not in METHODS:
        problems.append('method "%s" is not one of %s' % (method, ', '.join(METHODS)))
    if contype == 'local' and method == 'cert':
        problems.append('method "cert" needs an SSL connection and cannot be used with "local"')
    for key in ('databases', 'users'):
        problem = _name_list_problem(key, entry.get(key, 'all'))
        if problem:
            problems.append(problem)
    if contype in CONTYPES:
        problem = _address_problem(entry)
        if problem:
            problems.append(problem)
    options = entry.get('options')
    if options:
        for option in str(options).split():
            if not _OPTION.match(option):
                problems.append('option "%s" is not of the form name=value' % option)
    return ['%s: %s' % (where, p) for p in problems]


def hba_problems(entries):
    """Problems of every entry (empty list when all are fine)."""
    problems = []
    for index, entry in enumerate(entries or []):
        problems.extend(entry_problems(index, entry))
    return problems


def hba_rules(entries, header_lines=()):
    """Rules for community.postgresql.postgresql_pg_hba, in the given order.

    ``header_lines`` become full-line comments at the top of the file (the
    module keeps comment-only rules when ``overwrite`` rewrites the file).
    """
    rules = [{'comment': line} for line in header_lines]
    for entry in entries or []:
        rule = {
            'contype': entry['contype'],
            'databases': entry.get('databases') or 'all',
            'users': entry.get('users') or 'all',
            'method': entry.get('method') or DEFAULT_METHOD,
        }
        for key in ('address', 'netmask', 'options', 'comment'):
            if entry.get(key):
                rule[key] = str(entry[key])
        if entry['contype'] == 'local':
            # postgresql_pg_hba ignores the address of local rules; keep it out
            rule.pop('address', None)
        rules.append(rule)
    return rules
