"""P-tuning v2: m trainable prompt vectors at every transformer layer, backbone frozen.

Formulation: the template puts m placeholder tokens right after [CLS]. Before
transformer block i, a `DeepPrompt` layer with its own weight P_i [m, H] overwrites
the hidden states at those m positions; whatever block i-1 computed there is
discarded. So the keys and values every block sees at the prompt positions come
from that layer's own parameters, which is P-tuning v2's per-layer prefix (restricted
to the image of the frozen K/V projections). Positions never move and the prompts
are a prefix of the text, so the GPT's causal mask is untouched: a prompt depends on
nothing but its weights, and no token sees a later one.

`reparameterize=True` adds P-tuning v2's training-time MLP ("prefix projection"):
all P_i are computed as base + MLP(e) by one `DeepPromptEncoder`; saving folds it
into plain arrays [L, m, H]. The prompts start at the hidden states the frozen model
computes at the placeholder positions (`initialize_prompts`): before training the
model is exactly the backbone reading placeholder tokens, not random noise.

Heads: the MLM/LM verbalizer (like v1, same losses) or `head='linear'`, a Dense on
the final hidden state of [CLS] (BERT) or of the last token (GPT: under the causal
mask [CLS] sees nothing, the last token sees everything) with plain cross-entropy.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras
from bert4keras.models import BERT
from tf_keras.utils import register_keras_serializable

from .families import CausalBERT, get_family
from .models import PtuningConfig, build_transformer
from .templates import Encoded, Template, TemplateError, pad
from .training import PromptBatches, PromptClassifier

PROMPT_START = 1  # right after [CLS]
PLACEHOLDER_ID = 1  # [unused1]: any non-zero id (0 is padding); its embedding is overwritten
DEFAULT_LEARNING_RATE = 5e-3  # P-tuning v2 trains prompts with 5e-3..1e-2


@register_keras_serializable(package='ptuning_tf')
class DeepPrompt(keras.layers.Layer):
    """Writes one layer's m prompt vectors into positions start..start+m-1.

    Own weight `prompt` [m, H], or (`external=True`) row `layer_index` of the prompts
    a `DeepPromptEncoder` computes, passed as a second input.
    """

    def __init__(self, length: int, start: int = PROMPT_START, layer_index: int = 0,
                 external: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.length, self.start, self.layer_index, self.external = length, start, layer_index, external

    def build(self, input_shape):
        if not self.external:
            self.prompt = self.add_weight(name='prompt', shape=(self.length, int(input_shape[-1])),
                                          initializer=keras.initializers.RandomNormal(stddev=1.0))
        super().build(input_shape)

    def call(self, inputs):
        if self.external:
            hidden, prompts = inputs
            prompt = prompts[0, self.layer_index]
        else:
            hidden, prompt = inputs, self.prompt
        shape = tf.shape(hidden)
        prompt = tf.broadcast_to(tf.cast(prompt, hidden.dtype)[None], [shape[0], self.length, shape[2]])
        end = self.start + self.length
        return tf.concat([hidden[:, :self.start], prompt, hidden[:, end:]], axis=1)

    def compute_mask(self, inputs, mask=None):
        return mask[0] if isinstance(mask, (list, tuple)) else mask

    def compute_output_shape(self, input_shape):
        return input_shape[0] if self.external else input_shape

    def get_config(self):
        config = super().get_config()
        config.update(length=self.length, start=self.start, layer_index=self.layer_index,
                      external=self.external)
        return config


@register_keras_serializable(package='ptuning_tf')
class DeepPromptEncoder(keras.layers.Layer):
    """All layers' prompts as base + MLP(e): P-tuning v2's reparameterisation.

    e [m, H] ~ N(0, 1); MLP: Dense(hidden, tanh) -> Dense(L*H), the last one small so
    training starts near `base`, a non-trainable [L, m, H] set by `initialize_prompts`.
    The output [1, L, m, H] does not depend on the input, which only places the layer
    in the functional graph.
    """

    def __init__(self, num_layers: int, length: int, hidden_size: int,
                 encoder_hidden: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.num_layers, self.length, self.hidden_size = num_layers, length, hidden_size
        self.encoder_hidden = encoder_hidden or hidden_size

    def build(self, input_shape):
        self.encoder_inputs = self.add_weight(
            name='encoder_inputs', shape=(self.length, self.hidden_size),
            initializer=keras.initializers.RandomNormal(stddev=1.0))
        self.base = self.add_weight(name='base', shape=(self.num_layers, self.length, self.hidden_size),
                                    initializer='zeros', trainable=False)
        self.dense_hidden = keras.layers.Dense(self.encoder_hidden, activation='tanh', name='mlp_1')
        self.dense_out = keras.layers.Dense(
            self.num_layers * self.hidden_size, name='mlp_2',
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        self.dense_hidden.build((None, self.hidden_size))
        self.dense_out.build((None, self.encoder_hidden))
        super().build(input_shape)

    def prompts(self) -> tf.Tensor:
        """[L, m, H]: what the layers use, and what a saved prompt stores."""
        y = self.dense_out(self.dense_hidden(self.encoder_inputs))  # [m, L*H]
        y = tf.transpose(tf.reshape(y, [self.length, self.num_layers, self.hidden_size]), [1, 0, 2])
        return self.base + y

    def call(self, inputs):
        return self.prompts()[None]

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        config = super().get_config()
        config.update(num_layers=self.num_layers, length=self.length, hidden_size=self.hidden_size,
                      encoder_hidden=self.encoder_hidden)
        return config


class DeepPromptMixin:
    """Puts a `DeepPrompt` before every block of a bert4keras BERT-style model."""

    def __init__(self, *args, deep_prompt_length: int = 20, deep_reparameterize: bool = False,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.deep_prompt_length, self.deep_reparameterize = deep_prompt_length, deep_reparameterize
        self.deep_prompts = None

    def apply_embeddings(self, inputs):
        x = super().apply_embeddings(inputs)
        if self.deep_reparameterize:
            self.deep_prompts = self.apply(
                inputs=x, layer=DeepPromptEncoder, num_layers=self.num_hidden_layers,
                length=self.deep_prompt_length, hidden_size=self.hidden_size,
                name='Deep-Prompt-Encoder')
        return x

    def apply_main_layers(self, inputs, index):
        x = self.apply(
            inputs=[inputs, self.deep_prompts] if self.deep_reparameterize else inputs,
            layer=DeepPrompt, length=self.deep_prompt_length, layer_index=index,
            external=self.deep_reparameterize, name='Deep-Prompt-%d' % index)
        return super().apply_main_layers(x, index)


_DEEP: Dict[type, type] = {}


def deep_variant(cls: type) -> type:
    """`cls` (any family's bert4keras class, causal or not) with deep prompts."""
    if cls not in _DEEP:
        _DEEP[cls] = type('Deep' + cls.__name__, (DeepPromptMixin, cls), {})
    return _DEEP[cls]


DeepBERT = deep_variant(BERT)  # BERT (MLM) with deep prompts
DeepCausalBERT = deep_variant(CausalBERT)  # the GPT: prompts are a prefix, the mask unchanged


def build_deep_transformer(model_config: dict, checkpoint_path: Optional[str], config: PtuningConfig,
                           family='bert'):
    """The backbone with deep prompts, every backbone layer frozen."""
    base = get_family(family).model_class(causal=config.kind == 'gpt')
    transformer = build_transformer(
        model_config, checkpoint_path, config.kind, trainable_ids=None, dropout=config.dropout,
        model_class=deep_variant(base), family=family,
        deep_prompt_length=config.prompt_length, deep_reparameterize=config.reparameterize)
    for layer in transformer.model.layers:
        layer.trainable = isinstance(layer, (DeepPrompt, DeepPromptEncoder))
    return transformer


def deep_template_args(kind: str, pattern: Optional[str], prompt_ids: Optional[Sequence[int]],
                       prompt_length: Optional[int]) -> Tuple[str, List[int], int]:
    """(pattern, placeholder ids, m) of a deep-prompt template.

    Default: `{p}*m{mask}{text}` (BERT) or `{p}*m{text}{mask}` (GPT). A custom pattern
    must start with its m `{p}` (the layers write at fixed positions 1..m) and
    have no other; m is counted from it when `prompt_length` is not given.
    """
    if pattern is None:
        m = 20 if prompt_length is None else int(prompt_length)
        if m < 1:
            raise ValueError('prompt_length must be >= 1, got %r' % prompt_length)
        pattern = '{p}' * m + ('{mask}{text}' if kind == 'bert' else '{text}{mask}')
    else:
        m = 0
        while pattern.startswith('{p}' * (m + 1)):
            m += 1
        if m == 0 or '{p}' in pattern[3 * m:]:
            raise TemplateError('a deep-prompt pattern must start with its {p} tokens and have no '
                                'others (the prompts sit at positions 1..m): %r' % pattern)
        if prompt_length is not None and int(prompt_length) != m:
            raise TemplateError('pattern has %d {p} but prompt_length=%s' % (m, prompt_length))
    ids = list(prompt_ids) if prompt_ids is not None else [PLACEHOLDER_ID] * m
    return pattern, ids, m


class ReadPosition(keras.layers.Layer):
    """hidden[b, positions[b]]: the one position the linear head reads."""

    def call(self, inputs):
        hidden, positions = inputs
        return tf.gather(hidden, tf.cast(positions, tf.int32), batch_dims=1)

    def compute_mask(self, inputs, mask=None):
        return None


class HeadBatches(PromptBatches):
    """Batches for the linear head: ((inputs..., read positions), labels)."""

    def make_batch(self, chosen, rng):
        clf = self.classifier
        for _, label in chosen:
            if not 0 <= label < clf.template.num_labels:
                raise ValueError('label %r outside 0..%d' % (label, clf.template.num_labels - 1))
        encoded = [clf.template.encode(text) for text, _ in chosen]
        inputs = clf.model_inputs(pad([e.token_ids for e in encoded]))
        inputs = (inputs,) if clf.config.kind == 'gpt' else tuple(inputs)
        positions = np.array([clf.read_position(e) for e in encoded], 'int32')
        return inputs + (positions,), np.array([label for _, label in chosen], 'int32')


class DeepPromptClassifier(PromptClassifier):
    """A `PromptClassifier` on a deep-prompt backbone (build it with method='ptuning_v2').

    `.model` is what trains: the transformer (verbalizer) or transformer + Dense head
    (linear). Its trainable weights are the per-layer prompts (or their encoder) and
    the head; `prompt_arrays()` gives the folded, saveable form.
    """

    def __init__(self, transformer, template: Template, config: PtuningConfig, *args, **kwargs):
        super().__init__(transformer, template, config, *args, **kwargs)
        m = config.prompt_length
        positions = template.encode('').prompt_positions
        if positions != list(range(PROMPT_START, PROMPT_START + m)):
            raise TemplateError('deep prompts need the %d {p} at positions %d..%d, template %r '
                                'puts them at %s' % (m, PROMPT_START, m, template.pattern, positions))
        self.deep_layers = [transformer.layers['Deep-Prompt-%d' % i]
                            for i in range(transformer.num_hidden_layers)]
        self.prompt_encoder = transformer.layers.get('Deep-Prompt-Encoder')
        self.head = None
        if config.head == 'linear':
            self.head = keras.layers.Dense(
                template.num_labels, name='Deep-Head',
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))
            read = keras.Input(shape=(), dtype='int32', name='Input-Read-Position')
            picked = ReadPosition(name='Deep-Head-Read')([self._encoder.outputs[0], read])
            self.model = keras.Model(list(self._encoder.inputs) + [read], self.head(picked))
        self.initialize_prompts()

    # ---- prompts ----------------------------------------------------------------------
    def initialize_prompts(self) -> None:
        """Set each layer's prompt to the hidden states the model computes there.

        Layer by layer, so layer i sees layers < i already initialised; the result is
        exactly the frozen backbone reading `[CLS] placeholders [MASK] [SEP]` (BERT)
        or `[CLS] placeholders` (GPT): a start that is the pretrained model itself.
        """
        probe = keras.Model(self.transformer.model.inputs,
                            [layer.input[0] if self.prompt_encoder else layer.input
                             for layer in self.deep_layers])
        inputs = self.model_inputs(np.array([self.template.encode('').token_ids], 'int32'))
        span = slice(PROMPT_START, PROMPT_START + self.config.prompt_length)
        for i, layer in enumerate(self.deep_layers):
            hidden = probe(inputs, training=False)[i].numpy()[0, span]
            if self.prompt_encoder is None:
                layer.prompt.assign(hidden)
            else:
                current = self.prompt_encoder.prompts().numpy()[i]
                base = self.prompt_encoder.base.numpy()
                base[i] += hidden - current
                self.prompt_encoder.base.assign(base)

    def layer_prompts(self) -> np.ndarray:
        """[L, m, H], the encoder (if any) folded in."""
        if self.prompt_encoder is not None:
            return self.prompt_encoder.prompts().numpy()
        return np.stack([layer.prompt.numpy() for layer in self.deep_layers])

    def set_layer_prompts(self, prompts: np.ndarray) -> None:
        expected = (len(self.deep_layers), self.config.prompt_length, self.transformer.hidden_size)
        if tuple(prompts.shape) != expected:
            raise ValueError('deep prompts have shape %s, this model needs %s'
                             % (tuple(prompts.shape), expected))
        if self.prompt_encoder is not None:  # keep the encoder, move its base (exact up to rounding)
            encoder = self.prompt_encoder
            encoder.base.assign(encoder.base.numpy() + prompts - encoder.prompts().numpy())
            return
        for layer, value in zip(self.deep_layers, prompts):
            layer.prompt.assign(value)

    def prompt_rows(self) -> np.ndarray:
        """The deep prompts [L, m, H] (there are no learned embedding rows in v2)."""
        return self.layer_prompts()

    def set_prompt_rows(self, rows: np.ndarray) -> None:
        self.set_layer_prompts(rows)

    def prompt_arrays(self) -> Dict[str, np.ndarray]:
        """Everything a saved deep prompt holds: the folded prompts and the linear head."""
        arrays = {'prompts': self.layer_prompts().astype('float32')}
        if self.head is not None:
            kernel, bias = self.head.get_weights()
            arrays.update(head_kernel=kernel.astype('float32'), head_bias=bias.astype('float32'))
        return arrays

    def set_prompt_arrays(self, arrays: Dict[str, np.ndarray]) -> None:
        self.set_layer_prompts(np.asarray(arrays['prompts']))
        if self.head is not None:
            if 'head_kernel' not in arrays:
                raise ValueError('these prompts were trained without a linear head')
            self.head.set_weights([arrays['head_kernel'], arrays['head_bias']])

    def trainable_state(self):
        return [w.numpy() for w in self.model.trainable_weights]

    def set_trainable_state(self, state) -> None:
        for weight, value in zip(self.model.trainable_weights, state):
            weight.assign(value)

    # ---- training and inference --------------------------------------------------------
    def default_learning_rate(self) -> float:
        return DEFAULT_LEARNING_RATE

    def batches(self, examples, batch_size: int = 32, shuffle: bool = True, seed: int = 0,
                steps: Optional[int] = None):
        if self.head is None:
            return super().batches(examples, batch_size, shuffle, seed, steps)
        return HeadBatches(self, examples, batch_size, shuffle, seed, steps)

    @property
    def training_model(self) -> keras.Model:
        return super().training_model if self.head is None else self.model  # linear: reads one position

    def compile(self, learning_rate: float = DEFAULT_LEARNING_RATE, jit_compile: bool = False) -> None:
        if self.head is None:
            return super().compile(learning_rate, jit_compile)
        self.model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                           optimizer=keras.optimizers.Adam(learning_rate), jit_compile=jit_compile)

    def read_position(self, encoded: Encoded) -> int:
        if self.head is not None and self.config.kind == 'bert':
            return 0  # [CLS]
        return super().read_position(encoded)  # the slot (BERT), the last token (GPT)

    def _slot_logits(self, token_ids, positions):
        if self.head is None:
            return super()._slot_logits(token_ids, positions)
        inputs = [token_ids] if self.config.kind == 'gpt' else [token_ids, tf.zeros_like(token_ids)]
        hidden = self._encoder(inputs, training=False)
        return self.head(tf.gather(hidden, positions, batch_dims=1))
