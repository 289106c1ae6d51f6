"""The paper's prompt encoder for P-tuning v1: a training-time reparameterisation.

"GPT Understands, Too" does not learn the prompt embeddings h_1..h_n directly: it
learns free inputs e_1..e_n and computes h = MLP(BiLSTM(e)), so that the prompt
tokens depend on each other and training avoids the poor local minima that
independent rows fall into. Options:

- `none`: today's row mask (`PtuningEmbedding`): the rows themselves learn.
- `mlp`:  h_i = W2 relu(W1 e_i + b1) + b2, row by row (P-tuning v2's reparameterisation).
- `lstm`: h = MLP(BiLSTM(e)), the MLP two-layer with ReLU, as in the paper.

The encoder only exists during training. The embedding matrix E itself is frozen;
in the forward pass its prompt rows are *replaced* by the encoder's output, both in
the input embedding and in the tied MLM/LM output projection. So the computed rows
are exactly what the model uses, and a saved prompt stores them: reloaded into a
plain `PtuningEmbedding` (no encoder) the model computes the same function.
"""
import functools
from typing import List, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tf_keras.utils import register_keras_serializable

from .layers import PtuningEmbedding, row_sparse_projection

ENCODERS = ('mlp', 'lstm')
READS_THE_SEQUENCE = ('lstm',)  # a BiLSTM over the prompt tokens before the MLP


@register_keras_serializable(package='ptuning_tf')
class PromptEncoderEmbedding(PtuningEmbedding):
    """A token embedding whose prompt rows are the output of a small trainable encoder.

    Trainable: the encoder inputs e [n, D] (N(0,1), like the paper's embedding) and
    the encoder weights. E gets an all-zero gradient rather than none: Adam then
    leaves it bit-for-bit unchanged, and Keras does not warn about missing gradients.
    The last Dense starts small (stddev 0.02, BERT's initializer range) so the first
    prompt rows have the scale of token embeddings, not of LSTM activations.
    """

    def __init__(self, *args, prompt_encoder: str = 'lstm', encoder_hidden: Optional[int] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if prompt_encoder not in ENCODERS:
            raise ValueError('prompt_encoder must be one of %s, got %r' % (ENCODERS, prompt_encoder))
        if self.trainable_ids is None:
            raise ValueError('a prompt encoder needs the prompt ids (trainable_ids)')
        if len(set(self.trainable_ids)) != len(self.trainable_ids):
            # each encoder output replaces one row; a repeated id would be two rows at once
            raise ValueError('prompt ids must be distinct with a prompt encoder: %s'
                             % list(self.trainable_ids))
        self.prompt_encoder = prompt_encoder
        self.encoder_hidden = encoder_hidden or self.output_dim
        self._row_ids = tf.constant([[i] for i in self.trainable_ids], tf.int32)

    def build(self, input_shape):
        super().build(input_shape)  # E first: the checkpoint loader maps weights by order
        n, dim, hidden = len(self.trainable_ids), self.output_dim, self.encoder_hidden
        self.encoder_inputs = self.add_weight(
            name='encoder_inputs', shape=(n, dim),
            initializer=keras.initializers.RandomNormal(stddev=1.0))
        self.lstm, mlp_in = None, dim
        if self.prompt_encoder in READS_THE_SEQUENCE:
            self.lstm = keras.layers.Bidirectional(
                keras.layers.LSTM(max(1, hidden // 2), return_sequences=True), name='encoder_lstm')
            self.lstm.build((1, n, dim))
            mlp_in = 2 * max(1, hidden // 2)
        self.mlp_hidden = keras.layers.Dense(hidden, activation='relu', name='encoder_mlp_1')
        self.mlp_out = keras.layers.Dense(
            dim, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name='encoder_mlp_2')
        self.mlp_hidden.build((None, mlp_in))
        self.mlp_out.build((None, hidden))

    def encoded_rows(self) -> tf.Tensor:
        """The prompt rows [n, D] the model uses: the encoder applied to its inputs."""
        x = self.encoder_inputs
        if self.lstm is not None:
            x = self.lstm(x[None])[0]  # the sequence of prompt tokens, read both ways
        return self.mlp_out(self.mlp_hidden(x))

    def encoder_weights(self) -> List[tf.Variable]:
        """What training changes (everything trainable in this layer except E)."""
        return [w for w in self.trainable_weights if w is not self.embeddings]

    def call(self, inputs, mode='embedding'):
        # the matrix is not swapped on the attribute (as PtuningEmbedding does): Keras
        # would re-append E behind the encoder weights, and the checkpoint loader maps
        # weights by position
        matrix = self.embeddings
        rows = tf.cast(self.encoded_rows(), matrix.dtype)
        frozen = tf.stop_gradient(matrix) + 0.0 * matrix  # same value, zero gradient
        effective = tf.tensor_scatter_nd_update(frozen, self._row_ids, rows)
        if mode == 'embedding':
            return tf.nn.embedding_lookup(effective, tf.cast(inputs, tf.int32))
        return row_sparse_projection(inputs, effective, self.trainable_ids)  # the tied head

    def get_config(self):
        config = super().get_config()
        config.update(prompt_encoder=self.prompt_encoder, encoder_hidden=self.encoder_hidden)
        return config


def encoder_embedding_class(prompt_encoder: str):
    """The embedding constructor `build_transformer` uses for this encoder."""
    if prompt_encoder not in ENCODERS:
        raise ValueError('prompt_encoder must be one of %s, got %r' % (ENCODERS, prompt_encoder))
    return functools.partial(PromptEncoderEmbedding, prompt_encoder=prompt_encoder)
