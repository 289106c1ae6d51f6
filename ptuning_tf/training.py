"""The `model.fit` machinery: seeded batches that redraw their masking, and the evaluator.

Both are Keras objects (a `Sequence`, a `Callback`) that work on any classifier: the
batches come from the classifier's head, the kept state from its method.
"""
import logging
import random
from typing import Dict, Optional, Sequence

import numpy as np
import tf_keras as keras

from .data import Example

logger = logging.getLogger('ptuning_tf')


def set_seed(seed: int) -> None:
    """Seed python, numpy and TensorFlow (initialisers, dropout, shuffling)."""
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)


class PromptBatches(keras.utils.Sequence):
    """Training batches for `model.fit`; the random masking is redrawn every epoch.

    With `steps` set, an epoch is that many batches and the data is cycled through as
    often as needed, reshuffled on every pass (as bojone's `forfit()` does), so a
    `steps_per_epoch` longer than one pass never runs out of data.
    """
    GROUP_WINDOW = 4  # batches sorted together by length (group_by_length)

    def __init__(self, classifier, examples: Sequence[Example],
                 batch_size: int = 32, shuffle: bool = True, seed: int = 0,
                 steps: Optional[int] = None, group_by_length: bool = True):
        super().__init__()
        if not examples:
            raise ValueError('no training examples')
        if steps is not None and steps < 1:
            raise ValueError('steps per epoch must be >= 1, got %r' % steps)
        self.classifier, self.batch_size, self.shuffle, self.seed = classifier, batch_size, shuffle, seed
        self.examples, self.steps, self.epoch = list(examples), steps, 0
        self.group_by_length = group_by_length

    @property
    def batches_per_pass(self) -> int:
        return (len(self.examples) + self.batch_size - 1) // self.batch_size

    def __len__(self):
        return self.steps or self.batches_per_pass

    def on_epoch_end(self):
        self.epoch += 1

    def order(self, data_pass: int) -> np.ndarray:
        """A fresh permutation per pass; batches are then cut from it in order.

        Every window of GROUP_WINDOW batches is sorted by text length and its batches
        are shuffled, so a batch pads to texts of similar length while its members
        still change every pass.
        """
        if not self.shuffle:
            return np.arange(len(self.examples))
        rng = np.random.RandomState([self.seed, self.epoch, data_pass])
        order = rng.permutation(len(self.examples))
        if not self.group_by_length:
            return order
        # a pass that fits one window would be cut into the same batches every time
        per_window = self.GROUP_WINDOW if self.batches_per_pass > self.GROUP_WINDOW else \
            max(1, self.batches_per_pass // 2)
        window, size = per_window * self.batch_size, self.batch_size
        groups = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start:start + window], key=lambda i: len(self.examples[i][0]))
            groups += [chunk[b:b + size] for b in range(0, len(chunk), size)]
        full = [g for g in groups if len(g) == size]  # a short last batch stays last
        return np.concatenate([full[g] for g in rng.permutation(len(full))] + groups[len(full):])

    def __getitem__(self, index):
        data_pass, batch = divmod(index, self.batches_per_pass)
        picked = self.order(data_pass)[batch * self.batch_size:(batch + 1) * self.batch_size]
        rng = np.random.RandomState([self.seed, self.epoch, index])
        return self.make_batch([self.examples[i] for i in picked], rng)

    def make_batch(self, examples: Sequence[Example], rng: np.random.RandomState):
        return self.classifier.head.batch(self.classifier, examples, rng)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `fit`: the best-valid state so far is back in the model, `best` says which.

    `best` is the best epoch's record ({} when no epoch was evaluated yet); a caller that
    saves it can say so in `saved`.
    """

    def __init__(self, best: Dict):
        super().__init__('training interrupted')
        self.best, self.saved = best, None


class Evaluator(keras.callbacks.Callback):
    """Valid/test accuracy after each epoch; keeps the best-valid weights, stops early."""

    def __init__(self, classifier, valid: Sequence[Example],
                 test: Optional[Sequence[Example]] = None, patience: Optional[int] = None,
                 log=logger.info):
        super().__init__()
        self.classifier, self.valid, self.test = classifier, valid, test
        self.patience, self.log = patience, log
        self.best_valid, self.best_epoch, self.best_state, self.history = -1.0, -1, None, []

    def on_epoch_end(self, epoch, logs=None):
        valid_acc = self.classifier.evaluate(self.valid)
        test_acc = self.classifier.evaluate(self.test) if self.test else None
        record = {'epoch': epoch + 1, 'loss': (logs or {}).get('loss'), 'valid_acc': valid_acc,
                  'test_acc': test_acc}
        self.history.append(record)
        if logs is not None:
            logs['valid_acc'] = valid_acc
            if test_acc is not None:
                logs['test_acc'] = test_acc
        if valid_acc > self.best_valid:
            self.best_valid, self.best_epoch = valid_acc, epoch + 1
            self.best_state = self.classifier.snapshot()
        self.log('epoch %d: valid_acc=%.4f%s (best %.4f at epoch %d)' % (
            epoch + 1, valid_acc, '' if test_acc is None else ' test_acc=%.4f' % test_acc,
            self.best_valid, self.best_epoch))
        if self.patience is not None and epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_state is not None:
            self.classifier.restore(self.best_state)

    @property
    def best(self) -> Dict[str, Optional[float]]:
        if self.best_epoch < 0:
            return {}
        return dict(self.history[self.best_epoch - 1])
