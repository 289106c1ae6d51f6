"""The pretraining learning rate: warm-up, then a linear decay or warm-up/stable/decay."""
from typing import Optional

import tensorflow as tf
import tf_keras as keras


class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, then linear decay to 10% of it at `total` steps.

    With `decay_steps`, the rate stays at `peak` until `total - decay_steps` and only
    then decays. With `restart`, the run resumed from exported weights at that step with
    a fresh optimizer: the optimizer counts its iterations from 0 again, so the schedule
    reads `restart + iterations` as the run's step and warms up again over `rewarm`.
    """

    def __init__(self, peak: float, warmup: int, total: int, decay_steps: Optional[int] = None,
                 restart: int = 0, rewarm: int = 0):
        self.peak, self.warmup, self.total = peak, warmup, total
        self.decay_steps, self.restart, self.rewarm = decay_steps, restart, rewarm

    def __call__(self, step):
        since_restart = tf.cast(step, tf.float32)
        step = since_restart + self.restart
        warm = step / max(1, self.warmup)
        start = self.warmup if self.decay_steps is None else self.total - self.decay_steps
        decay = tf.maximum(0.1, 1.0 - 0.9 * (step - start) / max(1, self.total - start))
        factor = tf.minimum(1.0, tf.where(step < self.warmup, warm, decay))
        if self.restart and self.rewarm:
            factor *= tf.clip_by_value((since_restart + 1) / self.rewarm, 0.0, 1.0)
        return self.peak * factor

    def get_config(self):
        return {'peak': self.peak, 'warmup': self.warmup, 'total': self.total,
                'decay_steps': self.decay_steps, 'restart': self.restart, 'rewarm': self.rewarm}
