"""The issues' targets, computed from the recorded rows: which are met, by how much not.

A target counts the rows measured on the models shipped now; one that only rows on an
older snapshot measure is still shown, and says so. Where several settings of one method
were measured (MLM-template P-tuning's prompt start, rate, prompt encoder and [MASK]
position), the one with the best mean valid accuracy counts, as a hyper-parameter is chosen:
never the best test score.
"""
from typing import Dict, List, Optional


def older_than_shipped(kind: str, ident: dict, shipped: Dict[str, dict]) -> bool:
    now = shipped.get(kind)
    return bool(now and now.get('dir') == ident.get('dir') and now.get('fingerprint') != ident.get('fingerprint'))


def _on_older_model(record: dict, shipped: Dict[str, dict]) -> bool:
    ids = record.get('model')
    return isinstance(ids, dict) and any(older_than_shipped(k, v, shipped) for k, v in ids.items())


def _record(data: dict, section: str, shipped: Optional[Dict[str, dict]] = None, **match):
    """The matching row, measured on the shipped model if there is one (the newest row else)."""
    found = [r for r in data['sections'].get(section, {}).get('records', [])
             if all(r.get(k) == v for k, v in match.items()) and 'first' not in r.get('protocol', '')]
    current = [r for r in found if not _on_older_model(r, shipped or {})]
    return (current or found or [None])[-1]


# Every option of the P-tuning method with the MLM template. The prompt encoders count (the
# P-tuning paper's own prompts go through an LSTM + MLP; the library offers the encoder as
# an option of the one method), decided on 2026-12-07 before the LSTM encoder's second
# seed was run. P-tuning v2 (prompts in every layer) is another method and has its own row.
BERT_PTUNING_SETTINGS = ('bert_ptuning', 'bert_ptuning_init', 'bert_ptuning_init_lr2e-3',
                         'bert_ptuning_mlp', 'bert_ptuning_lstm', 'bert_ptuning_mask_last')


def targets(data: dict, shipped: Optional[Dict[str, dict]] = None) -> List[str]:
    """The targets table of BENCHMARKS.md (markdown lines; none if nothing is measured)."""
    ref = lambda m: (_record(data, 'reference', shipped, method=m)  # noqa: E731
                     or _record(data, 'extra', shipped, method=m))
    speed = lambda m: _record(data, 'speed', shipped, metric=m)  # noqa: E731
    rows = []

    def check(what, measured, ok, gap, *records):
        if any(_on_older_model(r, shipped or {}) for r in records):
            measured += ' (older model)'
        rows.append('| %s | %s | %s |' % (what, measured, 'met' if ok else 'missed by %s' % gap))
    ft, pet, gpt = ref('finetune'), ref('pet_zero_shot'), ref('gpt_ptuning')
    # the MLM-template P-tuning settings compete as hyper-parameters do: the one with the
    # best mean valid accuracy counts; its seed count is shown, as the settings differ in it
    settings = [r for r in map(ref, BERT_PTUNING_SETTINGS) if r]
    settings = [r for r in settings if not _on_older_model(r, shipped or {})] or settings
    bert = max(settings, key=lambda r: r['valid_mean'], default=None)
    if bert:
        t = 100 * bert['test_mean']
        seeds = ', %d seeds' % len(bert['seeds']) if bert.get('seeds') else ''
        check('MLM-template P-tuning >= 80%% test (issue 13; `%s`%s, best valid of the measured settings)'
              % (bert['method'], seeds), '%.2f%%' % t, t >= 80, '%.2f points' % (80 - t), bert)
    if bert and pet:
        d = 100 * (bert['test_mean'] - pet['test_mean'])
        check('MLM-template P-tuning >= PET zero-shot + 5 points', '%+.2f points' % d, d >= 5,
              '%.2f points' % (5 - d), bert, pet)
    if bert and gpt:
        d = 100 * (gpt['test_mean'] - bert['test_mean'])
        check('LM-template P-tuning within 3 points of MLM-template P-tuning', 'LM %+.2f points' % d,
              abs(d) <= 3, '%.2f points (LM %s)' % (abs(d) - 3, 'higher' if d > 0 else 'lower'), bert, gpt)
    if bert and ft:
        d = 100 * (bert['test_mean'] - ft['test_mean'])
        check('MLM-template P-tuning >= few-shot fine-tune', '%+.2f points' % d, d >= 0, '%.2f points' % -d, bert, ft)
    v2 = [ref(m) for m in sorted({r['method'] for r in data['sections'].get('extra', {}).get('records', [])
                                  if r['method'].startswith('bert_ptuning_v2')})]
    v2 = [r for r in v2 if r]
    if v2 and ft:
        best = max(v2, key=lambda r: r['valid_mean'])
        d = 100 * (best['test_mean'] - ft['test_mean'])
        check('P-tuning v2 (best valid: %s) >= few-shot fine-tune' % best['method'], '%+.2f points' % d,
              d >= 0, '%.2f points' % -d, best, ft)
    d = _record(data, 'demo', shipped, method='demo')  # the README's command, not its --kind lm line
    if d:
        ok = d['test_acc'] >= 0.8 and d['seconds'] < 300
        check('README demo >= 80% test and under 5 min (issue 13)',
              '%.2f%%, %.1f min' % (100 * d['test_acc'], d['seconds'] / 60), ok,
              ', '.join(x for x in ('%.2f points' % (80 - 100 * d['test_acc']) if d['test_acc'] < 0.8 else '',
                                    '%.1f min' % (d['seconds'] / 60 - 5) if d['seconds'] >= 300 else '') if x), d)
    for metric, limit, what in (('train_step_ratio_ptuning_vs_finetune', 0.75, 'P-tuning step <= 0.75 x fine-tune step'),
                                ('train_step_ratio_ptuning_v2_20_verbalizer_vs_finetune', 1.0,
                                 'P-tuning v2 (20, verbalizer) step no slower than fine-tune'),
                                ('train_step_ratio_ptuning_v2_20_linear_vs_finetune', 1.0,
                                 'P-tuning v2 (20, linear) step no slower than fine-tune')):
        r = speed(metric)
        if r:  # met only when the whole interquartile range is below the limit
            high = r['iqr'][1] if r.get('iqr') else r['value']
            check(what, '%.3f (IQR %s)' % (r['value'], '%.3f–%.3f' % tuple(r['iqr']) if r.get('iqr') else '-'),
                  high <= limit, '%.3f (upper quartile)' % (high - limit), r)
    if not rows:
        return []
    return ['## Targets', '', 'Computed from the rows below (mean test accuracy over the random-sample '
            'seeds; step-time ratios: median and interquartile range over alternating rounds).', '',
            '| target | measured | status |', '|---|---|---|'] + rows + ['']
