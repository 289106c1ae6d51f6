"""Accuracy rows of the benchmark: every method of the reference table, over seeds."""
import gc
import time
from typing import Dict, List, Optional

import numpy as np

import ptuning_tf  # noqa: F401  (legacy Keras before TensorFlow)
import tf_keras as keras
from ptuning_tf.data import few_shot, load_dataset
from ptuning_tf.templates import PET_PATTERN
from ptuning_tf.training import PromptClassifier, set_seed

# name -> (description, build options, training options); lr=None means the library default
METHODS = {
    'finetune': ('few-shot full fine-tune (MLM template)', dict(kind='bert', mode='finetune'), {}),
    'pet_zero_shot': ('PET zero-shot (很满意。 template)', dict(kind='bert', pattern=PET_PATTERN), None),
    'pet_few_shot': ('PET few-shot (same template, full fine-tune)',
                     dict(kind='bert', mode='finetune', pattern=PET_PATTERN), {}),
    'bert_ptuning': ('BERT + P-tuning (aux MLM loss)', dict(kind='bert'), {}),
    'bert_ptuning_no_aux': ('BERT + P-tuning, label word only', dict(kind='bert', aux_loss=False), {}),
    'bert_ptuning_wwm': ('BERT + P-tuning (aux loss, whole-word masking)',
                         dict(kind='bert', whole_word_mask=True), {}),
    'gpt_ptuning': ('GPT + P-tuning (full-sequence LM loss)', dict(kind='gpt'), {}),
    'gpt_ptuning_no_lm': ('GPT + P-tuning, label word only', dict(kind='gpt', aux_loss=False), {}),
    # beyond the reference: the paper's prompt encoder (P-tuning v1), folded when saved
    'bert_ptuning_mlp': ('BERT + P-tuning, MLP prompt encoder', dict(kind='bert', prompt_encoder='mlp'), {}),
    'bert_ptuning_lstm': ('BERT + P-tuning, BiLSTM+MLP prompt encoder (paper)',
                          dict(kind='bert', prompt_encoder='lstm'), {}),
}
# P-tuning v2: m prompt vectors at every layer. maxlen = m + 120 gives the text the same
# budget as the 8-token v1 template at maxlen 128 (clamped to the model's positions)
for _m in (8, 20, 64):
    for _head, _what in (('verbalizer', 'verbalizer 很/不'), ('linear', 'linear head on [CLS]')):
        METHODS['bert_ptuning_v2_%d%s' % (_m, '_linear' if _head == 'linear' else '')] = (
            'BERT + P-tuning v2, %d deep prompts, %s' % (_m, _what),
            dict(kind='bert', method='ptuning_v2', prompt_length=_m, head=_head, maxlen=_m + 120), {})
METHODS['gpt_ptuning_v2_20'] = ('GPT + P-tuning v2, 20 deep prompts, verbalizer (full-sequence LM loss)',
                                dict(kind='gpt', method='ptuning_v2', prompt_length=20, maxlen=140), {})
del _m, _head, _what


# Rows outside the published table (variants of ours) run on fewer seeds to fit the budget.
SECONDARY = {m for m in METHODS if m.startswith(('bert_ptuning_v2_8', 'bert_ptuning_v2_64'))
             or m in ('bert_ptuning_mlp', 'bert_ptuning_lstm')}

EVAL_LIMIT: Optional[int] = None  # --quick: score on the first N valid/test texts only
SELECT_LIMIT: Optional[int] = None  # per-epoch model selection on the first N valid texts


def load_splits(dataset: str) -> Dict[str, list]:
    splits = load_dataset(dataset)
    if EVAL_LIMIT:
        splits = dict(splits, valid=splits['valid'][:EVAL_LIMIT], test=splits['test'][:EVAL_LIMIT])
    return splits


def run_once(method: str, splits: Dict[str, list], labeled: list, seed: int, epochs: int,
             model_dirs: Dict[str, Optional[str]], lr: Optional[float] = None,
             steps_per_epoch: Optional[int] = None) -> Dict[str, float]:
    """One training run: best-valid epoch, then its test accuracy."""
    _, build, train = METHODS[method]
    keras.backend.clear_session()
    gc.collect()
    set_seed(seed)
    clf = PromptClassifier.build(model_dirs.get(build['kind']), **_fit_positions(build, model_dirs))
    t0 = time.time()
    if train is None:  # zero-shot: no labelled data at all
        valid = clf.evaluate(splits['valid'])
        epoch = 0
    else:
        # Scoring all 2,111 valid texts after every epoch would cost more than training
        # itself; the best epoch is chosen on a fixed subset, then scored on all of valid.
        select = splits['valid'][:SELECT_LIMIT] if SELECT_LIMIT else splits['valid']
        result = clf.fit(labeled, select, None, epochs=epochs, batch_size=32,
                         learning_rate=lr, seed=seed, steps_per_epoch=steps_per_epoch,
                         verbose=0, log=lambda m: None)
        epoch = result['epoch']
        valid = clf.evaluate(splits['valid']) if SELECT_LIMIT else result['valid_acc']
    return {'valid': valid, 'test': clf.evaluate(splits['test']), 'epoch': epoch,
            'seconds': time.time() - t0}


def _fit_positions(build: dict, model_dirs: Dict[str, Optional[str]]) -> dict:
    """`build` with its maxlen cut to the model's max_position_embeddings (tiny test models)."""
    if 'maxlen' not in build:
        return build
    from ptuning_tf.checkpoint import read_config
    from ptuning_tf.models import BackboneSpec
    spec = BackboneSpec.resolve(model_dirs.get(build['kind']), kind=build['kind'])
    positions = read_config(spec.config_path).get('max_position_embeddings', 512)
    return dict(build, maxlen=min(build['maxlen'], positions))


def summarize(method: str, model: str, dataset: str, frac: float, seeds: List, runs: List[dict],
              protocol: str) -> dict:
    valid = np.array([r['valid'] for r in runs])
    test = np.array([r['test'] for r in runs])
    return {'method': method, 'description': METHODS[method][0], 'model': model,
            'dataset': dataset, 'labeled_frac': frac, 'protocol': protocol, 'seeds': seeds,
            'valid_mean': float(valid.mean()), 'valid_std': float(valid.std()),
            'test_mean': float(test.mean()), 'test_std': float(test.std()),
            'runs': runs}


def run_row(method: str, dataset: str, frac: float, seeds: List[int], epochs: int,
            model_dirs: Dict[str, Optional[str]], model_name: str, lr: Optional[float] = None,
            first_fraction_row: bool = False, steps_per_epoch: Optional[int] = None,
            log=print) -> List[dict]:
    """Mean ± std over seeds (each seed draws its own labelled sample).

    With `first_fraction_row`, also the published protocol: the first `frac` of the file.
    """
    splits = load_splits(dataset)
    rows, runs = [], []
    if METHODS[method][2] is None:  # zero-shot sees no labels: every seed gives the same run
        seeds = seeds[:1]
    for seed in seeds:
        labeled = few_shot(splits['train'], frac, seed=seed)
        runs.append(run_once(method, splits, labeled, seed, epochs, model_dirs, lr, steps_per_epoch))
        log('%s %s frac=%g seed=%d: %s' % (method, dataset, frac, seed, runs[-1]))
    rows.append(summarize(method, model_name, dataset, frac, seeds, runs, 'random %g per seed' % frac))
    if first_fraction_row and METHODS[method][2] is not None and method not in SECONDARY:
        labeled = few_shot(splits['train'], frac, seed=None)
        first = [run_once(method, splits, labeled, s, epochs, model_dirs, lr, steps_per_epoch)
                 for s in seeds[:1]]
        log('%s %s first %g of file: %s' % (method, dataset, frac, first))
        rows.append(summarize(method, model_name, dataset, frac, seeds[:1], first,
                              'first %g of the file (published protocol)' % frac))
    return rows


def choose_lr(method: str, dataset: str, frac: float, candidates: List[float], epochs: int,
              model_dirs, steps_per_epoch=None, log=print) -> float:
    """The learning rate with the best valid accuracy on seed 0 (test is never looked at)."""
    splits = load_splits(dataset)
    labeled = few_shot(splits['train'], frac, seed=0)
    scores = {}
    for lr in candidates:
        scores[lr] = run_once(method, splits, labeled, 0, epochs, model_dirs, lr, steps_per_epoch)['valid']
        log('lr search %s lr=%g valid=%.4f' % (method, lr, scores[lr]))
    return max(scores, key=scores.get)
