"""P-tuning accuracy against pretraining tokens, on the snapshots a pretraining run exported.

    python benchmarks/learning_curve.py --kind mlm --run-dir RUN/mlm/work --snapshots RUN/mlm/snap \
        --steps 1000,2500,5000

`ptuning-tf pretrain --snapshots` exports one model per evaluation (`step_N/`) and logs
held-out MLM accuracy or LM perplexity (`WORK_DIR/log.jsonl`). For each chosen snapshot
this P-tunes on bojone's data (1% labels, one random sample per seed) under the
converged protocol of the benchmark (accuracy.CONVERGED) and, for a masked LM, scores
PET zero-shot, so the point where more pretraining stops paying is visible. Writes the
`pretraining_curve` section of benchmarks/results.json, BENCHMARKS.md and
benchmarks/pretraining_curve.png; points of other runs and steps are kept.
"""
import argparse
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ptuning_tf  # noqa: E402,F401
from accuracy import CONVERGED, Pool, Protocol, RunCache, run_row  # noqa: E402
import report  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--kind', choices=['mlm', 'lm'], default='mlm')
    p.add_argument('--run-name', help='name of this pretraining run in the table and plot '
                                      '(default: the kind); points of other runs are kept')
    p.add_argument('--run-dir', required=True, help='pretraining work dir (holds log.jsonl)')
    p.add_argument('--snapshots', required=True, help='directory of step_N/ exported models')
    p.add_argument('--steps', help='comma-separated snapshot steps to use (default: all)')
    p.add_argument('--seeds', default='0,1')
    p.add_argument('--max-epochs', type=int, default=CONVERGED.max_epochs)
    p.add_argument('--steps-per-epoch', type=int, default=None,
                   help='fixed steps per epoch instead of the protocol\'s 50 passes (smoke runs)')
    p.add_argument('--eval-limit', type=int, default=None,
                   help='score on the first N valid/test texts only (default: all)')
    p.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument('--methods', help='comma-separated benchmark methods (default: bert_ptuning,'
                                     'pet_zero_shot for BERT; gpt_ptuning for GPT)')
    p.add_argument('--dataset', default='bojone')
    return p.parse_args(argv)


def snapshot_steps(snapshots: str):
    found = [int(m.group(1)) for name in os.listdir(snapshots)
             for m in [re.fullmatch(r'step_(\d+)', name)] if m]
    return sorted(found)


def heldout_metrics(run_dir: str):
    """step -> the evaluation record logged at that step (last one wins after a resume)."""
    out = {}
    with open(os.path.join(run_dir, 'log.jsonl'), encoding='utf-8') as f:
        for line in f:
            record = json.loads(line)
            if 'event' not in record:  # a resume line shares its step with the export's evaluation
                out[record['step']] = record
    return out


def plot_curve(records, path: str) -> str:
    """Two panels over pretraining tokens: test accuracy, one line a method (its points from
    every run of the same kind joined, so a method reads as one curve); under it the held-out
    pretraining accuracy of the snapshots that were measured."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax, low) = plt.subplots(2, 1, figsize=(7, 7.5), sharex=True, height_ratios=(3, 1.3))
    for method in sorted({r['method'] for r in records}):
        rows = sorted((r for r in records if r['method'] == method), key=lambda r: r['tokens_seen'])
        ax.errorbar([r['tokens_seen'] / 1e6 for r in rows], [100 * r['test_mean'] for r in rows],
                    yerr=[100 * r['test_std'] for r in rows], marker='o', capsize=3,
                    label='%s (%s)' % (method, '/'.join(sorted({run_of_kind(r) for r in rows}))))
    ax.set_ylabel('test accuracy (%), bojone 1% labels')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc='lower right')  # method keys: the plot font has no CJK
    for kind, key, style in (('mlm', 'heldout_mlm_acc', 'o--'), ('lm', 'heldout_lm_acc', 's:')):
        rows = sorted({r['tokens_seen']: r for r in records if run_of_kind(r) == kind}.values(),
                      key=lambda r: r['tokens_seen'])
        if rows:
            low.plot([r['tokens_seen'] / 1e6 for r in rows], [100 * r.get(key, 0) for r in rows],
                     style, color='0.35', label='held-out %s accuracy' % kind.upper())
    low.set_xlabel('pretraining tokens (millions)')
    low.set_ylabel('held-out acc (%)')
    low.grid(alpha=0.3)
    low.legend(fontsize=7, loc='lower right')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return os.path.relpath(path, os.path.dirname(report.MARKDOWN))


def run_of_kind(record: dict) -> str:
    """'mlm' or 'lm': which of the two shipped models a learning-curve point belongs to."""
    return 'mlm' if record['kind'] in ('mlm', 'bert') else 'lm'


def main(argv=None):
    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(',')]
    steps = [int(s) for s in args.steps.split(',')] if args.steps else snapshot_steps(args.snapshots)
    logged = heldout_metrics(args.run_dir)
    protocol = Protocol(max_epochs=args.max_epochs, steps_per_epoch=args.steps_per_epoch)
    methods = (args.methods.split(',') if args.methods else
               ['bert_ptuning', 'pet_zero_shot'] if args.kind == 'mlm' else ['gpt_ptuning'])
    run = args.run_name or args.kind
    t0 = time.time()
    # single-thread processes (see run.py); finished runs kept if the curve is cut off
    pool = Pool(args.workers, in_process=False,
                cache=RunCache(os.path.join(os.path.dirname(report.RESULTS), 'runs.jsonl')))
    try:
        planned = {(step, method): None for step in steps for method in methods}
        for step, method in planned:  # every run queued first, so both workers stay busy
            for job in run_jobs(args, step, method, seeds, protocol):
                pool.submit(job)
        for step, method in planned:
            model_dir = os.path.join(args.snapshots, 'step_%d' % step)
            pretrain = {k: v for k, v in logged.get(step, {}).items()
                        if k.startswith('heldout_') or k in ('tokens_seen', 'tokens_per_second')}
            row = run_row(pool, method, args.dataset, 0.01, seeds, protocol=protocol,
                          model_dirs=((args.kind, model_dir),), eval_limit=args.eval_limit)[0]
            row.update(kind=args.kind, run=run, step=step, **pretrain)
            row.setdefault('tokens_seen', 0)
            # read the file now, not at the start: another curve may have written meanwhile;
            # a point is replaced only by the same run, step and method
            previous = report.load()['sections'].get('pretraining_curve', {}).get('records', [])
            records = [r for r in previous
                       if (report.run_of(r), r['step'], r['method']) != (run, step, method)] + [row]
            report.update('pretraining_curve', records, time.time() - t0, _extra(records, protocol, args))
    finally:
        pool.close()


def run_jobs(args, step, method, seeds, protocol):
    from accuracy import row_jobs
    model_dir = os.path.join(args.snapshots, 'step_%d' % step)
    return [j for _, _, jobs in row_jobs(method, args.dataset, 0.01, seeds, False, protocol=protocol,
                                         model_dirs=((args.kind, model_dir),), eval_limit=args.eval_limit)
            for j in jobs]


def _extra(records, protocol, args) -> dict:
    plot = plot_curve(records, os.path.join(os.path.dirname(report.RESULTS), 'pretraining_curve.png'))
    notes = ('P-tuning under the benchmark protocol (%s), batch 32, library default learning rate; '
             'each seed draws its own 1%% sample (seeds column; PET zero-shot is deterministic, one '
             'seed). Held-out metrics come from the pretraining log at the same step.' % protocol.name())
    return {'plot': plot, 'notes': notes}


if __name__ == '__main__':
    main()
