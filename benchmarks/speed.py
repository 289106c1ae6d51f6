"""Speed and size rows: training step time (median and spread), predict throughput, sizes."""
import os
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np

import ptuning_tf  # noqa: F401
import tf_keras as keras
from ptuning_tf.data import load_dataset
from ptuning_tf.saving import STATE_FILE, save
from ptuning_tf import PromptClassifier, set_seed
from accuracy import METHODS, fit_positions, worker_processes  # noqa: E402

STEPS_PER_ROUND = 2


def _warmed_batch(clf: PromptClassifier, examples, jit: bool = False) -> tuple:
    """Compile `clf`, trace and warm up on the first batch of `examples`; return that batch."""
    clf.compile(6e-4, jit_compile=jit)
    batch = clf.batches(examples, 32, shuffle=False)[0]
    for _ in range(3):
        clf.training_model.train_on_batch(*batch)
    return batch


def _step_seconds(clf: PromptClassifier, examples, steps: int, start_at: float) -> float:
    """Seconds per training step, timed from `start_at` (parallel workers time the same
    stretch of wall clock)."""
    batch = _warmed_batch(clf, examples)
    time.sleep(max(0.0, start_at - time.time()))
    t0 = time.perf_counter()
    for _ in range(steps):
        clf.training_model.train_on_batch(*batch)
    return (time.perf_counter() - t0) / steps


def _interleaved_step_seconds(models: Dict[str, tuple], examples, rounds: int) -> Dict[str, dict]:
    """Per model in `models` ({name: (classifier, jit)}): the wall and CPU seconds per training
    step of each of `rounds` alternating rounds.

    Step times on this shared VM drift by tens of percent within minutes: timing the
    models one after the other gave a P-tuning/fine-tune ratio of 0.75, 1.31 and 0.92 in
    three runs of the same code. Alternating rounds expose every model to the same drift,
    and a ratio is taken within each round pair, so its spread can be reported.
    """
    batches = {name: _warmed_batch(clf, examples, jit) for name, (clf, jit) in models.items()}
    times = {name: {'wall': [], 'cpu': []} for name in models}
    order = list(models)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(STEPS_PER_ROUND):
                models[name][0].training_model.train_on_batch(*batches[name])
            times[name]['wall'].append((time.perf_counter() - t0) / STEPS_PER_ROUND)
            times[name]['cpu'].append((time.process_time() - c0) / STEPS_PER_ROUND)
    return times


def _quartiles(values) -> tuple:
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return float(q2), [float(q1), float(q3)]


def _worker_step_seconds(model_dir: Optional[str], steps: int, start_at: float) -> float:
    set_seed(0)
    clf = PromptClassifier.build(model_dir, kind='mlm')
    return _step_seconds(clf, load_dataset('bojone')['train'][:32], steps, start_at)


def _two_worker_step_seconds(model_dir: Optional[str], steps: int, delay: float) -> float:
    """Seconds per P-tuning step in each of two single-thread processes running together."""
    with worker_processes(2) as pool:
        start_at = time.time() + delay  # after both have started, built and warmed up
        times = list(pool.map(_worker_step_seconds, [model_dir] * 2, [steps] * 2, [start_at] * 2))
    return float(np.mean(times))


def _throughput(clf: PromptClassifier, texts: List[str], batch_size: int, jit: bool = False) -> tuple:
    """(sentences/s of a first pass over `texts`, of a second pass): with XLA the first
    pass compiles each length bucket; without, it only traces once or twice."""
    seconds = []
    for _ in range(2):
        t0 = time.perf_counter()
        clf.predict_proba(texts, batch_size, jit_compile=jit)
        seconds.append(time.perf_counter() - t0)
    return tuple(len(texts) / s for s in seconds)


def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
               if f.startswith('bert_model.ckpt'))


def speed_rows(model_dir: Optional[str], identity: dict, rounds: int = 30,
               n_predict: int = 512, parallel_delay: float = 40, log=print) -> List[dict]:
    """Rows with metric/value/unit (and for step times, the interquartile range over rounds)."""
    texts = [t for t, _ in load_dataset('bojone')['test']][:n_predict]
    train = load_dataset('bojone')['train'][:32]
    rows = []

    def add(metric, value, unit, **extra):
        rows.append(dict(method='speed', metric=metric, value=float(value), unit=unit,
                         model={'mlm': identity}, **extra))
        log('%s: %.4g %s' % (metric, value, unit))

    keras.backend.clear_session()
    set_seed(0)
    v2 = {head: fit_positions(METHODS['bert_ptuning_v2_20' + ('_linear' if head == 'linear' else '')][1],
                              {'mlm': model_dir}) for head in ('verbalizer', 'linear')}  # the rows' settings
    models = {'ptuning': PromptClassifier.build(model_dir, kind='mlm'),
              'finetune': PromptClassifier.build(model_dir, kind='mlm', method='finetune'),
              'ptuning_v2_20_verbalizer': PromptClassifier.build(model_dir, **v2['verbalizer']),
              'ptuning_v2_20_linear': PromptClassifier.build(model_dir, **v2['linear'])}
    times = _interleaved_step_seconds({name: (clf, False) for name, clf in models.items()}, train, rounds)
    note = 'median of %d alternating rounds of %d steps, after 3 warm-up steps' % (rounds, STEPS_PER_ROUND)
    for name, t in times.items():
        wall, wall_iqr = _quartiles(t['wall'])
        cpu, cpu_iqr = _quartiles(t['cpu'])
        add('train_step_seconds_%s' % name, wall, 's/step', iqr=wall_iqr, batch_size=32, note=note)
        add('train_step_cpu_seconds_%s' % name, cpu, 'CPU s/step', iqr=cpu_iqr, batch_size=32,
            note='process time (all threads) per step, same rounds')
    for name, limit in (('ptuning', 0.75), ('ptuning_v2_20_verbalizer', 1.0), ('ptuning_v2_20_linear', 1.0)):
        ratios = np.array(times[name]['wall']) / np.array(times['finetune']['wall'])  # per round
        value, iqr = _quartiles(ratios)
        add('train_step_ratio_%s_vs_finetune' % name, value, 'ratio', iqr=iqr,
            target='<= %g (met only if the whole IQR is)' % limit, note=note)
    add('train_steps_per_second_ptuning_one_process', 1 / _quartiles(times['ptuning']['wall'])[0], 'steps/s',
        note='one process, TensorFlow default threads')
    two = _two_worker_step_seconds(model_dir, 10, parallel_delay)
    add('train_steps_per_second_ptuning_two_workers', 2 / two, 'steps/s',
        note='two single-thread processes at once, summed')

    keras.backend.clear_session()
    clf = PromptClassifier.build(model_dir, kind='mlm')
    for bs in (1, 64):
        for jit in (False, True):
            first, warm = _throughput(clf, texts[:128] if bs == 1 else texts, bs, jit)
            name = 'predict_throughput_batch%d%s' % (bs, '_xla' if jit else '')
            add(name, warm, 'sentences/s', note='second pass over the same texts')
            add(name + '_first_pass', first, 'sentences/s', note='includes %s' % (
                'XLA compiling each length bucket' if jit else 'tracing'))
    hidden = clf.embedding.embeddings.shape[1]
    add('trainable_parameters_ptuning', len(clf.template.prompt_ids) * hidden, 'parameters',
        note='prompt rows that change; the masked variable is the whole embedding')
    add('model_parameters', clf.model.count_params(), 'parameters')
    clf.compile(6e-4)
    clf.training_model.train_on_batch(*clf.batches(train, 32, shuffle=False)[0])
    state = sum(int(np.prod(v.shape)) for v in clf.training_model.optimizer.variables() if len(v.shape) > 0)
    add('optimizer_state_ptuning', state * 4 / 1e6, 'MB', note='Adam moments of the masked embedding variable')
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(save(clf, os.path.join(tmp, 'p')), STATE_FILE)
        add('prompt_artifact_size', os.path.getsize(path) / 1024, 'KB')
    for head in ('verbalizer', 'linear'):  # P-tuning v2 saves L x m x H floats (+ the head)
        name, deep = 'ptuning_v2_20_%s' % head, models['ptuning_v2_20_%s' % head]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(save(deep, os.path.join(tmp, 'p')), STATE_FILE)
            add('prompt_artifact_size_%s' % name, os.path.getsize(path) / 1024, 'KB')
        add('trainable_parameters_%s' % name,
            sum(int(np.prod(w.shape)) for w in deep.model.trainable_weights), 'parameters')
    if clf.spec and clf.spec.checkpoint_path:
        add('model_checkpoint_size', _dir_bytes(os.path.dirname(clf.spec.checkpoint_path)) / 1024 / 1024, 'MB')
    return rows
