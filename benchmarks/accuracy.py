"""Accuracy rows of the benchmark: every method of the reference table, over seeds, converged.

A row's method is a name below with the library's own options (the registries of
ptuning_tf: template kind, method, method options), so the benchmark builds exactly
what a user's `PromptClassifier.build(**options)` builds.

The protocol is bojone's (his bert.py / gpt.py): epochs of `len(train_generator) * 50`
steps (300 at 1% of his data), valid accuracy after each epoch, the best epoch kept;
here also an early stop after `patience` epochs without a better valid score and at
most `max_epochs`. The same rule for every method, so each is compared converged.
"""
import functools
import gc
import json
import math
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

import ptuning_tf  # noqa: F401  (legacy Keras before TensorFlow)
import tf_keras as keras
from ptuning_tf import PromptClassifier, few_shot, label_words_of, load_dataset, set_seed
from ptuning_tf.templates import GPT_PATTERN, PET_PATTERN
import report

# a ready dataset's own manual template for the PET rows (PET_PATTERN is sentiment's)
PET_PATTERNS = {'categories': '这是{mask}的评价。{text}'}

# name -> (description, build options, training options or None for zero-shot)
METHODS = {
    'finetune': ('few-shot full fine-tune (MLM template)', dict(kind='mlm', method='finetune'), {}),
    'pet_zero_shot': ('PET zero-shot (很满意。 template)', dict(kind='mlm', pattern=PET_PATTERN), None),
    'pet_few_shot': ('PET few-shot (same template, full fine-tune)',
                     dict(kind='mlm', method='finetune', pattern=PET_PATTERN), {}),
    'bert_ptuning': ('MLM template + P-tuning (aux MLM loss)', dict(kind='mlm'), {}),
    'bert_ptuning_no_aux': ('MLM template + P-tuning, label word only', dict(kind='mlm', aux_loss=False), {}),
    'bert_ptuning_wwm': ('MLM template + P-tuning (aux loss, whole-word masking)',
                         dict(kind='mlm', whole_word_mask=True), {}),
    # prompts started from words instead of the small model's untrained [unused] rows:
    # '这个还是{很/不}满意的。' reads as a sentence around the slot (sentiment data only;
    # characters the tests' tiny vocabulary has too, so the quick benchmark runs it)
    'bert_ptuning_init': ('MLM template + P-tuning, prompts started from 这个还是…满意的。',
                          dict(kind='mlm', prompt_init='这个还是满意的。'), {}),
    # the same at a higher rate: the small model's prompts move further from their start
    # than a large model's (seed 0 on the 60.4M-token model: valid 79.96% at 2e-3, 77.40%
    # at the library default 6e-4)
    'bert_ptuning_init_lr2e-3': ('MLM template + P-tuning, prompts started from 这个还是…满意的。, lr 2e-3',
                                 dict(kind='mlm', prompt_init='这个还是满意的。'), {'learning_rate': 2e-3}),
    # the causal template's layout on a masked LM: is the slot's place, not the model kind,
    # what separates the two templates on a small model?
    'bert_ptuning_mask_last': ('MLM template, [MASK] after the text + P-tuning (aux MLM loss)',
                               dict(kind='mlm', pattern=GPT_PATTERN), {}),
    'gpt_ptuning': ('LM template + P-tuning (full-sequence LM loss)', dict(kind='lm'), {}),
    'gpt_ptuning_no_lm': ('LM template + P-tuning, label word only', dict(kind='lm', aux_loss=False), {}),
    # beyond the reference: the paper's prompt encoder (P-tuning v1), folded when saved
    'bert_ptuning_mlp': ('MLM template + P-tuning, MLP prompt encoder',
                         dict(kind='mlm', prompt_encoder='mlp'), {}),
    'bert_ptuning_lstm': ('MLM template + P-tuning, BiLSTM+MLP prompt encoder (paper)',
                          dict(kind='mlm', prompt_encoder='lstm'), {}),
}
# P-tuning v2: m prompt vectors at every layer; maxlen = m + 120 gives the text the
# budget of the 8-token v1 template at maxlen 128
for _m in (8, 20, 64):
    for _head, _what in (('verbalizer', 'verbalizer 很/不'), ('linear', 'linear head on [CLS]')):
        METHODS['bert_ptuning_v2_%d%s' % (_m, '_linear' if _head == 'linear' else '')] = (
            'MLM template + P-tuning v2, %d deep prompts, %s' % (_m, _what),
            dict(kind='mlm', method='ptuning_v2', prompt_length=_m, head=_head, maxlen=_m + 120), {})
METHODS['gpt_ptuning_v2_20'] = ('LM template + P-tuning v2, 20 deep prompts, verbalizer',
                                dict(kind='lm', method='ptuning_v2', prompt_length=20, maxlen=140), {})
del _m, _head, _what

# the published table's rows are the `reference` section; these are the `extra` one
EXTRA = {m for m in METHODS if 'v2' in m or m in ('bert_ptuning_mlp', 'bert_ptuning_lstm',
                                                     'bert_ptuning_mask_last', 'bert_ptuning_init',
                                                     'bert_ptuning_init_lr2e-3')}


@dataclass(frozen=True)
class Protocol:
    """How long a run trains and how its epoch is chosen (the same for every method)."""
    max_epochs: int = 10
    patience: Optional[int] = 2  # epochs without a better selection score before stopping
    passes_per_epoch: int = 50  # bojone: steps_per_epoch = len(train_generator) * 50
    select_limit: Optional[int] = 300  # the best epoch is chosen on the first N valid texts
    batch_size: int = 32
    steps_per_epoch: Optional[int] = None  # fixed steps instead (smoke runs)

    def steps_for(self, labeled: int) -> int:
        return self.steps_per_epoch or math.ceil(labeled / self.batch_size) * self.passes_per_epoch

    def name(self) -> str:
        steps = ('%d steps' % self.steps_per_epoch if self.steps_per_epoch
                 else '%d passes' % self.passes_per_epoch)
        return 'up to %d epochs of %s, patience %s, best on %s valid' % (
            self.max_epochs, steps, self.patience or '-', self.select_limit or 'all')


CONVERGED = Protocol()
QUICK = Protocol(max_epochs=1, patience=None, steps_per_epoch=2, select_limit=None)


@functools.lru_cache(maxsize=8)
def load_splits(dataset: str, eval_limit: Optional[int] = None) -> Dict[str, list]:
    splits = load_dataset(dataset)
    if eval_limit:
        splits = dict(splits, valid=splits['valid'][:eval_limit], test=splits['test'][:eval_limit])
    return splits


@dataclass(frozen=True)
class Job:
    """One training run, complete enough to be sent to a worker process."""
    method: str
    dataset: str
    frac: float
    seed: int
    first_of_file: bool  # the published protocol: the first `frac` of the file, not a sample
    protocol: Protocol
    model_dirs: Tuple[Tuple[str, Optional[str]], ...]
    lr: Optional[float] = None
    eval_limit: Optional[int] = None
    k: Optional[int] = None  # k labelled texts a class instead of the fraction


def execute(job: Job) -> Dict[str, float]:
    splits = load_splits(job.dataset, job.eval_limit)
    seed = None if job.first_of_file else job.seed
    labeled = (few_shot(splits['train'], k=job.k, seed=job.seed) if job.k
               else few_shot(splits['train'], job.frac, seed=seed))
    return run_once(job.method, splits, labeled, job.seed, job.protocol, dict(job.model_dirs), job.lr,
                    job.dataset)


def task_build(build: dict, dataset: str) -> dict:
    """A row's build options on `dataset`: its label words, its manual PET template."""
    words = label_words_of(dataset)
    if words != label_words_of(None):
        build = dict(build, label_words=words)
        if build.get('pattern') == PET_PATTERN:
            build['pattern'] = PET_PATTERNS[dataset]
    return build


def run_once(method: str, splits: Dict[str, list], labeled: list, seed: int, protocol: Protocol,
             model_dirs: Dict[str, Optional[str]], lr: Optional[float] = None,
             dataset: str = 'bojone') -> Dict[str, float]:
    """One run: the best-valid epoch under `protocol`, then its valid and test accuracy."""
    _, build, train = METHODS[method]
    build = task_build(build, dataset)
    keras.backend.clear_session()
    gc.collect()
    set_seed(seed)
    clf = PromptClassifier.build(model_dirs.get(build['kind']), **fit_positions(build, model_dirs))
    t0 = time.time()
    steps = protocol.steps_for(len(labeled))
    if train is None:  # zero-shot: no labelled data at all
        valid, epoch = clf.evaluate(splits['valid']), 0
    else:
        # Scoring all 2,111 valid texts after every epoch would cost more than training
        # itself; the best epoch is chosen on a fixed subset, then scored on all of valid.
        select = splits['valid'][:protocol.select_limit] if protocol.select_limit else splits['valid']
        result = clf.fit(labeled, select, None, epochs=protocol.max_epochs,
                         batch_size=protocol.batch_size, patience=protocol.patience,
                         learning_rate=lr or train.get('learning_rate'), seed=seed, steps_per_epoch=steps, verbose=0,
                         log=lambda m: print('[%s %s seed %d] %s' % (method, dataset, seed, m), flush=True))
        epoch = result['epoch']
        valid = whole_valid_accuracy(clf, splits['valid'], len(select), result['valid_acc'])
    return {'valid': valid, 'test': clf.evaluate(splits['test']), 'epoch': epoch,
            'steps_to_best': epoch * steps, 'seconds': time.time() - t0}


def whole_valid_accuracy(clf: PromptClassifier, valid: list, scored: int, scored_acc: float) -> float:
    """Accuracy on all of `valid` when its first `scored` texts were already scored
    (`scored_acc`) with the same weights: only the rest is predicted again."""
    rest = valid[scored:]
    if not rest:
        return scored_acc
    return (scored_acc * scored + clf.evaluate(rest) * len(rest)) / len(valid)


def fit_positions(build: dict, model_dirs: Dict[str, Optional[str]]) -> dict:
    """`build` with its maxlen cut to the model's max_position_embeddings (tiny test models)."""
    if 'maxlen' not in build:
        return build
    from ptuning_tf.models import BackboneSpec
    spec = BackboneSpec.resolve(model_dirs.get(build['kind']), kind=build['kind'])
    if not spec.family.absolute_positions:  # rotary positions: any length
        return build
    positions = spec.config.get('max_position_embeddings', 512)
    return dict(build, maxlen=min(build['maxlen'], positions))


def describe(method: str, dataset: str) -> str:
    """A row's description, naming the manual template a dataset's PET rows really use."""
    text, build, _ = METHODS[method]
    if 'pattern' in build and dataset in PET_PATTERNS:
        return text.replace('很满意。', PET_PATTERNS[dataset].replace('{text}', ''))
    return text


def summarize(method: str, dataset: str, frac: float, seeds: List, runs: List[dict], protocol: str,
              job_protocol: Protocol) -> dict:
    valid = np.array([r['valid'] for r in runs])
    test = np.array([r['test'] for r in runs])
    return {'method': method, 'description': describe(method, dataset), 'dataset': dataset,
            'labeled_frac': frac, 'protocol': protocol, 'training': asdict(job_protocol),
            'seeds': seeds, 'valid_mean': float(valid.mean()), 'valid_std': float(valid.std()),
            'test_mean': float(test.mean()), 'test_std': float(test.std()),
            'steps_to_best_mean': float(np.mean([r.get('steps_to_best', 0) for r in runs])),
            'seconds_mean': float(np.mean([r['seconds'] for r in runs])), 'runs': runs}


def row_jobs(method: str, dataset: str, frac: float, seeds: List[int], first_fraction_row: bool,
             **job_options) -> List[Tuple[str, List[int], List[Job]]]:
    """(protocol, seeds, jobs) of a table row: one run per seed, each seed drawing its own
    labelled sample; with `first_fraction_row`, also the published protocol's row (the
    first `frac` of the file, seed 0 only). `k` in the options: k texts a class instead."""
    if METHODS[method][2] is None:  # zero-shot sees no labels: every seed gives the same run
        seeds = seeds[:1]
    job = lambda seed, first: Job(method, dataset, frac, seed, first, **job_options)  # noqa: E731
    sample = '%d a class' % job_options['k'] if job_options.get('k') else '%g' % frac
    rows = [('random %s per seed' % sample, seeds, [job(s, False) for s in seeds])]
    if first_fraction_row and METHODS[method][2] is not None and method not in EXTRA:
        rows.append(('first %g of the file (published protocol)' % frac, seeds[:1],
                     [job(seeds[0], True)]))
    return rows


def worker_processes(workers: int):
    """An executor of `workers` fresh single-thread TensorFlow processes.

    Small models use two cores poorly from one process: two one-thread workers finish
    more training steps per second than one process (speed section of BENCHMARKS.md).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    return ProcessPoolExecutor(workers, multiprocessing.get_context('spawn'), initializer=_one_thread,
                               initargs=(os.getpid(),))


def _one_thread(parent: Optional[int] = None) -> None:
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    if parent:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int, every: float = 2.0) -> None:
    """A worker outlives a killed benchmark until its run ends (up to an hour of a core
    spent on a result nobody collects); when the parent goes, the worker goes too."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


class RunCache:
    """Finished runs, one JSON line each (`runs.jsonl` beside results.json), so that a
    benchmark cut off in the middle of a row resumes run by run. A run is reused only for
    the same job, the same model weights and the same code (report.code_version, the rule
    rows follow). The file is committed, so a part cut off by the end of a session resumes
    in the next one."""

    def __init__(self, path: str):
        self.path, self.lock, self.runs = path, threading.Lock(), {}
        if os.path.exists(path):
            with open(path, encoding='utf-8') as f:
                for line in f:
                    record = json.loads(line)
                    self.runs[record['key']] = record['result']

    @staticmethod
    def key(job: Job) -> str:
        weights = {kind: report.model_identity(d, kind)['fingerprint'] for kind, d in job.model_dirs}
        return json.dumps(dict(asdict(job), model_dirs=None, weights=weights,
                               code=report.code_version()),
                          sort_keys=True)

    def get(self, job: Job) -> Optional[dict]:
        return self.runs.get(self.key(job))

    def put(self, job: Job, result: dict) -> None:
        key = self.key(job)
        with self.lock:  # worker futures finish on the executor's thread
            self.runs[key] = result
            with open(self.path, 'a', encoding='utf-8') as f:
                f.write(json.dumps({'key': key, 'result': result}) + '\n')


class Pool:
    """Runs jobs in `workers` single-thread processes, or in this process (`in_process`,
    the default for one worker: quick runs and tests skip a process start); with a
    `cache`, finished runs are kept and not run again."""

    def __init__(self, workers: int = 1, in_process: Optional[bool] = None, cache: Optional[RunCache] = None):
        in_process = workers == 1 if in_process is None else in_process
        self.executor = None if in_process else worker_processes(workers)
        self.futures, self.cache = {}, cache

    def submit(self, job, function=execute) -> Future:
        if job in self.futures:  # rows that share runs (the 1% fraction) run them once
            return self.futures[job]
        cached = self.cache.get(job) if self.cache else None
        if cached is not None:
            self.futures[job] = Future()
            self.futures[job].set_result(cached)
        elif self.executor:
            self.futures[job] = self.executor.submit(function, job)
        else:
            self.futures[job] = Future()
            self.futures[job].set_result(function(job))
        if self.cache and cached is None:
            self.futures[job].add_done_callback(
                lambda done: done.exception() is None and self.cache.put(job, done.result()))
        return self.futures[job]

    def result(self, job, log=print) -> Dict[str, float]:
        out = self.submit(job).result()
        log('%s: %s' % (job, {k: v for k, v in out.items() if not isinstance(v, list)}))
        return out

    def close(self) -> None:
        if self.executor:
            self.executor.shutdown()


def lr_jobs(candidates: List[float], **job_options) -> Dict[float, Job]:
    """The runs that choose the fine-tune learning rate: seed 0 of bojone 1%, one per rate."""
    return {lr: Job('finetune', 'bojone', 0.01, 0, False, lr=lr, **job_options) for lr in candidates}


def collect(pool: Pool, method: str, dataset: str, frac: float,
            planned: List[Tuple[str, List[int], List[Job]]], log=print) -> List[dict]:
    """The summarized rows of `row_jobs` output, waiting for their runs."""
    return [summarize(method, dataset, frac, seeds, [pool.result(job, log) for job in jobs],
                      protocol, jobs[0].protocol)
            for protocol, seeds, jobs in planned]


def run_row(pool: Pool, method: str, dataset: str, frac: float, seeds: List[int],
            first_fraction_row: bool = False, log=print, **job_options) -> List[dict]:
    """Plan, run and summarize one row (and its published-protocol row)."""
    planned = row_jobs(method, dataset, frac, seeds, first_fraction_row, **job_options)
    return collect(pool, method, dataset, frac, planned, log)
