"""P-tuning v2's layers: m trainable prompt vectors at every transformer layer.

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
model is exactly the backbone reading placeholder tokens, not random noise
(methods.PTuningV2, which also picks the head: heads.py).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras
from bert4keras.models import BERT
from tf_keras.utils import register_keras_serializable

from .families import CausalBERT, get_family
from .kinds import get_kind
from .models import build_transformer
from .templates import TemplateError

PROMPT_START = 1  # right after [CLS]
PLACEHOLDER_ID = 1  # [unused1]: any non-zero id (0 is padding); its embedding is overwritten


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


def build_deep_transformer(model_config: dict, checkpoint_path: Optional[str], kind, prompt_length: int,
                           reparameterize: bool = False, dropout: Optional[float] = None,
                           family=None):
    """The backbone with deep prompts, every backbone layer frozen."""
    family = get_family(family or model_config.get('model') or 'bert')
    base = family.model_class(causal=get_kind(kind).causal)
    transformer = build_transformer(
        model_config, checkpoint_path, kind, trainable_ids=None, dropout=dropout,
        model_class=deep_variant(base), family=family,
        deep_prompt_length=prompt_length, deep_reparameterize=reparameterize)
    for layer in transformer.model.layers:
        layer.trainable = isinstance(layer, (DeepPrompt, DeepPromptEncoder))
    return transformer


def deep_pattern(kind, pattern: Optional[str], prompt_ids: Optional[Sequence[int]],
                 prompt_length: Optional[int]) -> Tuple[str, List[int], int]:
    """(pattern, placeholder ids, m) of a deep-prompt template.

    Default: `{p}*m{mask}{text}` (masked LM) or `{p}*m{text}{mask}` (causal LM). A
    custom pattern must start with its m `{p}` (the layers write at fixed positions
    1..m) and have no other; m is counted from it when `prompt_length` is not given.
    """
    if pattern is None:
        m = 20 if prompt_length is None else int(prompt_length)
        if m < 1:
            raise ValueError('prompt_length must be >= 1, got %r' % prompt_length)
        pattern = '{p}' * m + ('{text}{mask}' if get_kind(kind).causal else '{mask}{text}')
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
