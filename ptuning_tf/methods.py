"""Tuning methods: what trains, with which defaults, and what is saved.

A method is a small dataclass registered by name (HF PEFT's way): it checks its own
options, fills in its template defaults, builds the backbone with the right weights
trainable (every other one frozen, `model.fit` respects that), picks its head, and
reads and writes its learned state as named arrays, the form `saving.py` stores.

- `ptuning`: the prompt tokens' embedding rows learn (`PtuningEmbedding`), optionally
  through the paper's prompt encoder (`prompt_encoder='mlp'|'lstm'`, folded on saving).
- `ptuning_v2`: m prompt vectors before every layer (deep.py), with the verbalizer or
  a linear head, optionally reparameterised by an MLP during training.
- `finetune`: every weight learns (the baseline); saved as a whole checkpoint.
"""
from dataclasses import asdict, dataclass, fields
from typing import ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from .deep import PROMPT_START, DeepPrompt, DeepPromptEncoder, build_deep_transformer, deep_pattern
from .encoders import ENCODERS, encoder_embedding_class
from .heads import HEADS, Verbalizer
from .layers import PtuningEmbedding
from .models import build_transformer, freeze_all_but_prompts
from .templates import TemplateError

METHODS: Dict[str, type] = {}


def register(cls):
    METHODS[cls.name] = cls
    return cls


@dataclass
class Method:
    """The base: options checked on creation; hooks the classifier calls."""
    name: ClassVar[str] = ''
    learning_rate: ClassVar[float] = 6e-4  # Adam, the reference scripts' rate
    saves_checkpoint: ClassVar[bool] = False  # True: the whole model is the saved state

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Raise ValueError for options that would silently mean something else."""

    def to_config(self) -> dict:
        return dict(name=self.name, **asdict(self))

    def template_args(self, kind, pattern: Optional[str], prompt_ids) -> Tuple[Optional[str], object]:
        """(pattern, prompt ids) with the method's defaults filled in."""
        return pattern, prompt_ids

    def build(self, spec, kind, template, dropout: Optional[float]):
        """The bert4keras transformer on `spec`, checkpoint loaded, frozen as the method wants."""
        raise NotImplementedError

    def make_head(self, classifier):
        return Verbalizer(classifier)

    def attach(self, classifier) -> None:
        """Called once the classifier holds the transformer, template and head."""

    def for_inference(self) -> 'Method':
        """The method a saved state is loaded into (training-only parts folded away)."""
        return self

    # the learned state: `state` is what is saved, `snapshot` what the best epoch restores
    def state(self, classifier) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def set_state(self, classifier, arrays: Dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def snapshot(self, classifier) -> List[np.ndarray]:
        return [w.numpy() for w in classifier.training_model.trainable_weights]

    def restore(self, classifier, snapshot: List[np.ndarray]) -> None:
        for weight, value in zip(classifier.training_model.trainable_weights, snapshot):
            weight.assign(value)


@register
@dataclass
class PTuning(Method):
    """Only the prompt tokens' embedding rows learn; the model is frozen."""
    name: ClassVar[str] = 'ptuning'
    prompt_encoder: str = 'none'  # 'mlp' / 'lstm': reparameterise the rows in training
    # words whose embeddings start the prompt rows (cycled over them), e.g. a manual
    # template's '满意。': a small model's unused rows are untrained noise, a real word is
    # a start the model can already read (prompt tuning's vocabulary initialisation)
    prompt_init: str = ''

    def check(self):
        if self.prompt_encoder not in ('none',) + ENCODERS:
            raise ValueError('prompt_encoder must be one of %s, got %r'
                             % (('none',) + ENCODERS, self.prompt_encoder))
        if self.prompt_init and self.prompt_encoder != 'none':
            raise ValueError('prompt_init sets the rows themselves; with a prompt encoder the '
                             'rows are computed, so give one or the other')

    def attach(self, classifier):
        if self.prompt_init and classifier.template.prompt_ids:
            words = classifier.template.word_token_ids(self.prompt_init, 'prompt_init')
            matrix = self._embedding(classifier).embeddings.numpy()
            n = len(classifier.template.prompt_ids)
            self.set_state(classifier, {'rows': matrix[[words[i % len(words)] for i in range(n)]]})

    def build(self, spec, kind, template, dropout):
        extra = {}
        if self.prompt_encoder != 'none':
            extra['embedding_class'] = encoder_embedding_class(self.prompt_encoder)
        # a template without prompts (PET's manual one) still needs one id for the layer
        transformer = build_transformer(spec.config, spec.checkpoint_path, kind,
                                        trainable_ids=template.prompt_ids or [1], dropout=dropout,
                                        family=spec.family, **extra)
        freeze_all_but_prompts(transformer)
        return transformer

    def for_inference(self):
        return PTuning()

    def _embedding(self, classifier) -> PtuningEmbedding:
        return classifier.transformer.layers['Embedding-Token']

    def state(self, classifier):
        embedding = self._embedding(classifier)
        if self.prompt_encoder != 'none':  # the rows the encoder computes: what the model uses
            rows = embedding.encoded_rows().numpy()
        else:
            rows = embedding.embeddings.numpy()[classifier.template.prompt_ids]
        return {'rows': rows.astype('float32')}

    def set_state(self, classifier, arrays):
        if self.prompt_encoder != 'none':
            raise ValueError('an encoder computes the prompt rows, they cannot be set; load saved '
                             "rows into a classifier built with prompt_encoder='none' (load does)")
        rows = np.asarray(arrays['rows'])
        matrix = self._embedding(classifier).embeddings
        ids = classifier.template.prompt_ids
        if rows.shape != (len(ids), matrix.shape[1]):
            raise ValueError('prompt rows have shape %s, this model needs %s'
                             % (rows.shape, (len(ids), int(matrix.shape[1]))))
        index = tf.constant(ids, tf.int32)[:, None]
        matrix.assign(tf.tensor_scatter_nd_update(matrix, index, tf.constant(rows, matrix.dtype)))

    def snapshot(self, classifier):
        if self.prompt_encoder != 'none':
            return [w.numpy() for w in self._embedding(classifier).encoder_weights()]
        return [self.state(classifier)['rows']]

    def restore(self, classifier, snapshot):
        if self.prompt_encoder != 'none':
            for weight, value in zip(self._embedding(classifier).encoder_weights(), snapshot):
                weight.assign(value)
        else:
            self.set_state(classifier, {'rows': snapshot[0]})


@register
@dataclass
class PTuningV2(Method):
    """m prompt vectors at every layer (deep prompts); the backbone frozen."""
    name: ClassVar[str] = 'ptuning_v2'
    learning_rate: ClassVar[float] = 5e-3  # P-tuning v2 trains prompts with 5e-3..1e-2
    prompt_length: Optional[int] = None  # None: 20, or counted from a given pattern
    head: str = 'verbalizer'  # 'linear': a Dense on [CLS] (last token for a causal LM)
    reparameterize: bool = False  # an MLP computes all layers' prompts during training

    def check(self):
        if self.head not in HEADS:
            raise ValueError('head must be one of %s, got %r' % (tuple(HEADS), self.head))
        if self.prompt_length is not None and self.prompt_length < 1:
            raise ValueError('prompt_length must be >= 1, got %r' % self.prompt_length)

    def template_args(self, kind, pattern, prompt_ids):
        pattern, ids, self.prompt_length = deep_pattern(kind, pattern, prompt_ids, self.prompt_length)
        return pattern, ids

    def build(self, spec, kind, template, dropout):
        return build_deep_transformer(spec.config, spec.checkpoint_path, kind, self.prompt_length,
                                      self.reparameterize, dropout, spec.family)

    def make_head(self, classifier):
        return HEADS[self.head](classifier)

    def for_inference(self):
        return PTuningV2(self.prompt_length, self.head)

    def attach(self, classifier):
        m = self.prompt_length
        positions = classifier.template.encode('').prompt_positions
        if positions != list(range(PROMPT_START, PROMPT_START + m)):
            raise TemplateError('deep prompts need the %d {p} at positions %d..%d, template %r '
                                'puts them at %s' % (m, PROMPT_START, m, classifier.template.pattern,
                                                     positions))
        self.initialize_prompts(classifier)

    @staticmethod
    def _layers(classifier) -> Tuple[List[DeepPrompt], Optional[DeepPromptEncoder]]:
        t = classifier.transformer
        return ([t.layers['Deep-Prompt-%d' % i] for i in range(t.num_hidden_layers)],
                t.layers.get('Deep-Prompt-Encoder'))

    def initialize_prompts(self, classifier) -> None:
        """Set each layer's prompt to the hidden states the model computes there.

        Layer by layer, so layer i sees layers < i already initialised; the result is
        exactly the frozen backbone reading the placeholders: a start that is the
        pretrained model itself, not random noise.
        """
        layers, encoder = self._layers(classifier)
        model = classifier.transformer.model
        probe = _probe(model, layers, encoder)
        inputs = classifier.kind.inputs(np.array([classifier.template.encode('').token_ids], 'int32'))
        span = slice(PROMPT_START, PROMPT_START + self.prompt_length)
        for i, layer in enumerate(layers):
            hidden = probe(inputs, training=False)[i].numpy()[0, span]
            if encoder is None:
                layer.prompt.assign(hidden)
            else:
                base = encoder.base.numpy()
                base[i] += hidden - encoder.prompts().numpy()[i]
                encoder.base.assign(base)

    def layer_prompts(self, classifier) -> np.ndarray:
        """[L, m, H], the encoder (if any) folded in."""
        layers, encoder = self._layers(classifier)
        if encoder is not None:
            return encoder.prompts().numpy()
        return np.stack([layer.prompt.numpy() for layer in layers])

    def state(self, classifier):
        arrays = {'prompts': self.layer_prompts(classifier).astype('float32')}
        arrays.update(classifier.head.arrays())
        return arrays

    def set_state(self, classifier, arrays):
        prompts = np.asarray(arrays['prompts'])
        layers, encoder = self._layers(classifier)
        expected = (len(layers), self.prompt_length, classifier.transformer.hidden_size)
        if tuple(prompts.shape) != expected:
            raise ValueError('deep prompts have shape %s, this model needs %s'
                             % (tuple(prompts.shape), expected))
        if encoder is not None:  # keep the encoder, move its base (exact up to rounding)
            encoder.base.assign(encoder.base.numpy() + prompts - encoder.prompts().numpy())
        else:
            for layer, value in zip(layers, prompts):
                layer.prompt.assign(value)
        classifier.head.set_arrays(arrays)


def _probe(model, layers, encoder):
    from tf_keras import Model
    return Model(model.inputs, [layer.input[0] if encoder else layer.input for layer in layers])


@register
@dataclass
class FineTune(Method):
    """Every weight learns: the baseline P-tuning is compared with."""
    name: ClassVar[str] = 'finetune'
    learning_rate: ClassVar[float] = 1e-5
    saves_checkpoint: ClassVar[bool] = True

    def build(self, spec, kind, template, dropout):
        return build_transformer(spec.config, spec.checkpoint_path, kind, trainable_ids=None,
                                 dropout=dropout, family=spec.family)

    def state(self, classifier):
        return {}  # the whole model is saved as a checkpoint (saving.py)

    def set_state(self, classifier, arrays):
        if arrays:
            raise ValueError('a fine-tuned model is loaded from its own checkpoint')

    def snapshot(self, classifier):
        return classifier.model.get_weights()

    def restore(self, classifier, snapshot):
        classifier.model.set_weights(snapshot)


def make_method(method='ptuning', **options) -> Method:
    """A method by name (or an instance, returned as is) with its options checked."""
    if isinstance(method, Method):
        if options:
            raise ValueError('give options in the method object or as arguments, not both')
        return method
    if method not in METHODS:
        raise ValueError('method must be one of %s, got %r' % (', '.join(METHODS), method))
    cls = METHODS[method]
    known = {f.name for f in fields(cls)}
    unknown = sorted(k for k in options if k not in known)
    if unknown:
        raise ValueError('method %r has no option %s (its options: %s)'
                         % (method, ', '.join(unknown), ', '.join(sorted(known)) or 'none'))
    return cls(**options)


def method_from_config(config: dict) -> Method:
    options = dict(config)
    return make_method(options.pop('name'), **options)
