# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: a failover drill result as one self-contained HTML page.

No external scripts, styles or fonts: inline CSS and an inline SVG timeline
of the drill's events (fault, last acknowledged write, promotion, first write
on the new primary, rejoin), the RTO/RPO figures, the steps and the
pre-checks.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import html
import os
import tempfile

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em;color:#222;max-width:70em}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
.verdict{display:inline-block;padding:.2em .7em;border-radius:.3em;color:#fff;font-weight:bold}
.passed{background:#2a7d2e}.failed,.interrupted{background:#b3261e}.planned,.not-run{background:#666}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;
font-size:.9em;vertical-align:top}th{background:#f3f3f3}.figures td:first-child{font-weight:bold}
.bad{color:#b3261e;font-weight:bold}code{font-size:.9em}
"""

COLORS = {'fault': '#b3261e', 'last': '#e08a00', 'promotion': '#1f5fbf', 'first': '#2a7d2e', 'rejoin': '#7a3fa0'}


def _e(value):
    return html.escape('' if value is None else str(value), quote=True)


def _color(event):
    name = event.lower()
    for key, word in (('fault', 'fault'), ('last', 'last acknowledged'), ('promotion', 'promotion'),
                      ('first', 'first acknowledged'), ('rejoin', 'rejoined')):
        if word in name:
            return COLORS[key]
    return '#555'


def timeline_svg(events, width=900):
    """An SVG timeline: one marker and label per event, placed by its offset in seconds."""
    if not events:
        return '<p>No events were recorded.</p>'
    offsets = [e['offset_seconds'] or 0.0 for e in events]
    low, high = min(offsets), max(offsets)
    span = (high - low) or 1.0
    left, right = 20, width - 20
    rows = len(events)
    height = 40 + rows * 22
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" '
             'aria-label="drill timeline">' % (width, height),
             '<line x1="%d" y1="20" x2="%d" y2="20" stroke="#999" stroke-width="2"/>' % (left, right)]
    for index, (event, offset) in enumerate(sorted(zip(events, offsets), key=lambda p: p[1])):
        x = left + (right - left) * (offset - low) / span
        y = 40 + index * 22
        color = _color(event['event'])
        anchor = 'end' if x > width * 0.6 else 'start'
        dx = -6 if anchor == 'end' else 6
        parts.append('<line x1="%.1f" y1="14" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="3,2"/>'
                     % (x, x, y - 4, color))
        parts.append('<circle cx="%.1f" cy="20" r="5" fill="%s"/>' % (x, color))
        parts.append('<text x="%.1f" y="%d" font-size="12" fill="%s" text-anchor="%s">%s (t+%.3f s)</text>'
                     % (x + dx, y, color, anchor, _e(event['event']), offset))
    parts.append('</svg>')
    return ''.join(parts)


def _figures(result):
    rows = [('Verdict', result.get('verdict')), ('Mode', result.get('mode')), ('Fault', result.get('fault')),
            ('RTO (last write on the old primary to first write on the new)', _secs(result.get('rto_seconds'))),
            ('Fault to promotion', _secs(result.get('promotion_seconds'))),
            ('RPO: acknowledged writes lost', result.get('rpo_writes_lost')),
            ('Lost ids', ', '.join(map(str, (result.get('lost_ids') or [])[:50])) or 'none'),
            ('RPO: WAL gap at promotion', '%s bytes' % result['rpo_lsn_bytes']
             if result.get('rpo_lsn_bytes') is not None else None),
            ('Timeline before / after', '%s / %s' % (result.get('timeline_before'), result.get('timeline_after'))),
            ('Primary before / after', '%s / %s' % (result.get('primary_before'), result.get('primary_after'))),
            ('Writes acknowledged / failed',
             '%s / %s' % (result.get('writes_acknowledged'), result.get('writes_failed'))),
            ('Rejoined', result.get('rejoined')), ('Two primaries', result.get('two_primaries'))]
    failback = result.get('failback')
    if failback:
        rows.append(('Failback RTO / writes lost', '%s / %s' % (_secs(failback.get('rto_seconds')),
                                                                failback.get('writes_lost'))))
    check = result.get('data_check')
    if check:
        rows.append(('Data check', 'equal' if check.get('equal') else 'DIFFERENT: %s' % check.get('differences')))
    return ''.join('<tr><td>%s</td><td%s>%s</td></tr>' % (
        _e(k), ' class="bad"' if (k == 'Two primaries' and v) else '', _e('-' if v is None else v)) for k, v in rows)


def _secs(value):
    return None if value is None else '%.3f s' % value


def render(result):
    """The HTML page of a drill result (a dict as the engine returns it)."""
    verdict = result.get('verdict') or 'not run'
    steps = ''.join('<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>' % (
        _e(s.get('offset_seconds')), _e(s.get('step')), _e(s.get('duration_seconds')),
        _e({True: 'ok', False: 'FAILED', None: ''}.get(s.get('ok'), s.get('ok'))), _e(s.get('detail')))
        for s in result.get('steps') or [])
    checks = ''.join('<tr><td>%s</td><td>%s</td><td>%s</td></tr>' % (
        _e(c['check']), 'ok' if c['ok'] else '<span class="bad">failed</span>', _e(c['detail']))
        for c in result.get('pre_checks') or [])
    reasons = ''.join('<li>%s</li>' % _e(r) for r in result.get('verdict_reasons') or [])
    recovery = ''.join('<li>%s</li>' % _e(r) for r in result.get('recovery') or [])
    return ''.join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<title>Failover drill: %s</title><style>%s</style></head><body>' % (_e(verdict), STYLE),
        '<h1>PostgreSQL %s drill <span class="verdict %s">%s</span></h1>' % (
            _e(result.get('mode')), _e(verdict.replace(' ', '-')), _e(verdict)),
        '<ul>%s</ul>' % reasons if reasons else '',
        '<h2>Figures</h2><table class="figures">%s</table>' % _figures(result),
        '<h2>Timeline</h2>', timeline_svg(result.get('events') or []),
        '<h2>Recovery</h2><ul>%s</ul>' % recovery if recovery else '',
        '<h2>Steps</h2><table><tr><th>t (s)</th><th>step</th><th>duration (s)</th><th></th><th>detail</th></tr>'
        '%s</table>' % steps,
        '<h2>Pre-checks</h2><table><tr><th>check</th><th></th><th>detail</th></tr>%s</table>' % checks,
        '</body></html>\n'])


def write_report(path, result):
    """Write the page atomically (a temporary file in the same folder, then rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        os.makedirs(folder)
    fd, tmp = tempfile.mkstemp(prefix='.drill-report-', dir=folder)
    with os.fdopen(fd, 'w') as handle:
        handle.write(render(result))
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)
    return path
