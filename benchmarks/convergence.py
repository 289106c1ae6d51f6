"""Accuracy against training steps: where each method converges (the `convergence` section).

For BERT-style and GPT-style P-tuning, P-tuning v2 with a linear head and full
fine-tuning on the shipped models (bojone, first 1% of the file, seed 0): train for
`steps` steps, scoring all of valid and test every `every` steps. The PNG shows where
each method stops improving, which is what the converged protocol of the accuracy
sections (epochs of 300 steps, best epoch, patience 2, at most 10) is built to reach.
"""
import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import report
from accuracy import METHODS, load_splits

CURVE_METHODS = ('bert_ptuning', 'gpt_ptuning', 'bert_ptuning_v2_8_linear', 'finetune')


@dataclass(frozen=True)
class CurveJob:
    method: str
    steps: int
    every: int
    model_dirs: Tuple[Tuple[str, Optional[str]], ...]
    lr: Optional[float] = None
    eval_limit: Optional[int] = None


def curve_points(job: CurveJob) -> Dict:
    """[{step, valid_acc, test_acc}] from step 0 to `steps`: fit with epochs of `every` steps."""
    import ptuning_tf  # noqa: F401
    import tf_keras as keras
    from ptuning_tf import PromptClassifier, few_shot, set_seed
    from accuracy import fit_positions
    keras.backend.clear_session()
    splits = load_splits('bojone', job.eval_limit)
    labeled = few_shot(splits['train'], 0.01)
    set_seed(0)
    build = METHODS[job.method][1]
    dirs = dict(job.model_dirs)
    clf = PromptClassifier.build(dirs.get(build['kind']), **fit_positions(build, dirs))
    points = [{'step': 0, 'valid_acc': clf.evaluate(splits['valid']), 'test_acc': clf.evaluate(splits['test'])}]
    result = clf.fit(labeled, splits['valid'], splits['test'], epochs=job.steps // job.every,
                     steps_per_epoch=job.every, learning_rate=job.lr, seed=0, verbose=0, log=lambda m: None)
    points += [{'step': h['epoch'] * job.every, 'valid_acc': h['valid_acc'], 'test_acc': h['test_acc']}
               for h in result['history']]
    return {'points': points}


def run_convergence(pool, args, steps: int, every: int) -> None:
    """Run the curves `--methods` asks for (default: all four); each finished curve is kept in
    runs.jsonl and is its own row, so the section runs in parts and the PNG grows with them."""
    from run import _dirs_of, _identity, finetune_lr
    wanted = [m for m in CURVE_METHODS if not args.methods or m in args.methods.split(',')]
    eval_limit = args.eval_limit or (200 if args.quick else None)
    lr = None
    if 'finetune' in wanted:
        lr = finetune_lr(pool, args, dict(protocol=_protocol(args), model_dirs=_dirs_of('finetune', args.dirs),
                                          eval_limit=eval_limit))
    jobs = {m: CurveJob(m, steps, every, _dirs_of(m, args.dirs), lr if m == 'finetune' else None, eval_limit)
            for m in wanted}
    for job in jobs.values():
        pool.submit(job, curve_points)
    for method, job in jobs.items():  # each row written as soon as its curve is done
        row = dict(method=method, description=METHODS[method][0], dataset='bojone', labeled_frac=0.01,
                   protocol='first 0.01 of the file, seed 0', seeds=[0], model=_identity(method, args.identities),
                   steps=steps, every=every, lr=job.lr, **pool.submit(job, curve_points).result())
        report.add_rows('convergence', [row], notes=(
            'Each method trains %d steps from the same start (seed 0, the first 1%% of bojone\'s '
            'train file), all of valid (dashed) and test (solid) scored every %d steps; library '
            'default learning rates, fine-tune at the rate the reference table\'s search chose. '
            'The converged protocol of the tables stops a run 2 epochs (600 steps) after its best '
            'valid score.' % (steps, every)))
        report.add_rows('convergence', [], plot=_plot(args.identities))  # redrawn with the new curve


def _plot(identities) -> str:
    """The PNG of every recorded curve measured on the models in use now."""
    records = [r for r in report.load()['sections']['convergence']['records']
               if all(identities.get(k, {}).get('fingerprint') == v.get('fingerprint') for k, v in r['model'].items())]
    series = {}
    for r in records:
        for split in ('valid', 'test'):
            series['%s (%s)' % (r['method'], split)] = [(p['step'], 100 * p['%s_acc' % split], None)
                                                      for p in r['points']]
    return report.plot_lines(series, os.path.join(os.path.dirname(report.RESULTS), 'convergence.png'),
                             'training steps (batch 32)', 'accuracy (%), all of valid / test',
                             'bojone 1%, shipped mini models, seed 0')


def _protocol(args):
    from accuracy import QUICK, Protocol
    return QUICK if args.quick else Protocol(max_epochs=args.max_epochs, patience=args.patience or None,
                                             select_limit=args.select_limit or None)
