# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Point-in-time recovery over pgBackRest: WAL archiving, physical backups, restores to a time.

``options`` declares every module's options; ``tool`` runs ``pgbackrest`` as the
data directory's owner (``--config`` and ``--stanza`` on every call, JSON output
parsed, errors as sentences); ``info`` reads backups, the WAL archive, the
recoverable window and ``pg_stat_archiver``; ``backup`` takes a backup after
proving archiving works; ``restore`` restores to a time, LSN, restore point or
the latest WAL into a new data directory (or in place, with rollback);
``restore_point`` creates and records named restore points.  No Ansible imports.
"""
