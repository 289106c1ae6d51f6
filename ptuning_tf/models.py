"""Builders: a bert4keras BERT (MLM head) or GPT (causal LM) ready for P-tuning.

Both load bert4keras/Google-format checkpoints (chinese_L-12_H-768_A-12,
chinese_roberta_wwm_ext, NEZHA-GPT's BERT layout, or the shipped mini models).
The token embedding is a `PtuningEmbedding`; in `ptuning` mode every other layer
is frozen, in `finetune` mode the same model trains all of its weights (the baseline).
"""
import os
from dataclasses import dataclass
from typing import Optional, Sequence

from bert4keras.models import build_transformer_model
from tf_keras.initializers import TruncatedNormal

from .checkpoint import (CheckpointError, check_checkpoint, check_vocab, read_config,
                         resolve_model_dir)
from .families import CausalBERT, Family, detect_family, get_family  # noqa: F401  (CausalBERT: public here too)
from .kinds import get_kind
from .layers import DEFAULT_PROMPT_IDS, PtuningEmbedding, TargetRows



@dataclass
class BackboneSpec:
    """Where a pretrained model lives: a directory, or its three files spelled out."""
    config_path: str
    checkpoint_path: Optional[str]
    vocab_path: str
    family_name: Optional[str] = None  # None: read from config.json or the checkpoint

    def __post_init__(self):
        # checked here, once for every way of naming a model, so that a vocab without
        # [UNK] etc. fails with its file name instead of inside the tokenizer
        check_vocab(self.vocab_path)

    @property
    def config(self) -> dict:
        """config.json, read once and checked."""
        if not hasattr(self, '_config'):
            self._config = read_config(self.config_path)
        return self._config

    @property
    def family(self) -> Family:
        """The backbone family: as given, from config.json's `"model"`, or by the checkpoint's variables."""
        if not hasattr(self, '_family'):
            names = None
            if self.checkpoint_path is not None:
                import tensorflow as tf
                try:
                    names = tf.train.load_checkpoint(self.checkpoint_path).get_variable_to_shape_map()
                except (tf.errors.OpError, ValueError) as e:
                    raise CheckpointError('cannot read checkpoint %s: %s'
                                          % (self.checkpoint_path, str(e).splitlines()[0])) from e
            try:
                self._family = detect_family(self.config, names, self.family_name)
            except ValueError as e:
                raise CheckpointError('%s: %s' % (self.config_path, e)) from e
        return self._family

    @classmethod
    def from_dir(cls, model_dir: str, family: Optional[str] = None) -> 'BackboneSpec':
        return cls(*resolve_model_dir(model_dir), family_name=family)

    @classmethod
    def resolve(cls, model_dir: Optional[str] = None, config_path: Optional[str] = None,
                checkpoint_path: Optional[str] = None, vocab_path: Optional[str] = None,
                kind='mlm', family: Optional[str] = None) -> 'BackboneSpec':
        """Explicit files win over a directory; with neither, the shipped mini model."""
        if config_path or checkpoint_path or vocab_path:
            missing = [n for n, v in (('config', config_path), ('checkpoint', checkpoint_path),
                                      ('vocab', vocab_path)) if not v]
            if missing:
                raise CheckpointError('give config, checkpoint and vocab together (missing: %s)'
                                      % ', '.join(missing))
            for what, path in (('config', config_path), ('vocab', vocab_path)):
                if not os.path.isfile(path):
                    raise CheckpointError('%s file not found: %s' % (what, path))
            return cls(config_path, checkpoint_path, vocab_path, family)
        return cls.from_dir(model_dir or default_model_dir(kind), family)


# the shipped mini model of each template kind (data/models/NAME)
SHIPPED_MODELS = {'mlm': 'mini_roformer_mlm', 'lm': 'mini_roformer_lm'}


def default_model_dir(kind='mlm') -> str:
    """The shipped mini model of this template kind (under data/models)."""
    name = SHIPPED_MODELS[get_kind(kind).name]
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(here, 'data', 'models', name),
                  os.path.join(os.path.dirname(here), 'data', 'models', name)]
    for path in candidates:
        if os.path.isdir(path):
            return path
    raise CheckpointError('no shipped model %s found (looked in %s); pass a model '
                          'directory or config/checkpoint/vocab paths' % (name, candidates[-1]))


def build_transformer(config: dict, checkpoint_path: Optional[str], kind='mlm',
                      trainable_ids: Optional[Sequence[int]] = DEFAULT_PROMPT_IDS,
                      dropout: Optional[float] = None, model_class=None,
                      embedding_class=PtuningEmbedding, family=None, **model_kwargs):
    """A bert4keras Transformer (not yet frozen) with a `PtuningEmbedding` for tokens.

    The head gives logits (the family's `head_options`); the losses apply the softmax.
    `family` (a name or `families.Family`; default: the config's `"model"`, else
    bert) picks the bert4keras class; a causal
    template kind (`'lm'`) gives its causal variant, without segment input.
    `model_class`/`embedding_class` (and `model_kwargs` for
    the model class) let the deep-prompt and prompt-encoder variants reuse this one
    checkpoint-loading path.
    """
    kind = get_kind(kind)
    # the family a config names (our exports do) unless the caller says, and never both ways
    named = config.get('model')
    family = get_family(family or named or 'bert')
    if checkpoint_path is not None:
        check_checkpoint(checkpoint_path, config, family.word_embeddings, family.last_layer)
    embedding = embedding_class(
        input_dim=config['vocab_size'],
        output_dim=config.get('embedding_size') or config['hidden_size'],
        embeddings_initializer=TruncatedNormal(stddev=0.02),
        mask_zero=True, name='Embedding-Token', trainable_ids=trainable_ids)
    kwargs = {k: v for k, v in config.items() if k != 'model'}  # the family is `family`
    if dropout is not None:
        kwargs['hidden_dropout_prob'] = kwargs['attention_probs_dropout_prob'] = dropout
    if kind.causal:
        kwargs['segment_vocab_size'] = 0  # NEZHA-GPT style: no segment input
    kwargs.update(model_kwargs)
    transformer = build_transformer_model(
        None, None, model=model_class or family.model_class(causal=kind.causal),
        return_keras_model=False, **family.head_options,
        layers={'Embedding-Token': embedding}, **kwargs)
    if checkpoint_path is not None:
        load_checkpoint_weights(transformer, checkpoint_path, kind, family)
    return transformer


SEGMENT_EMBEDDINGS = 'bert/embeddings/token_type_embeddings'  # absent in the GPT layout


def _checkpoint_pairs(transformer):
    """(weight, checkpoint name) pairs exactly as bert4keras' loader matches them."""
    pairs = []
    for layer_name, names in transformer.variable_mapping().items():
        layer = transformer.layers.get(transformer.prefixed(layer_name))
        if layer is not None:
            pairs.extend(zip(layer.trainable_weights, names))
    return pairs


def load_checkpoint_weights(transformer, checkpoint_path: str, kind='mlm', family=None) -> None:
    """Load a checkpoint into a built transformer, every variable checked first.

    bert4keras would raise TensorFlow's NotFoundError (or a shape ValueError) on the
    first mismatch; this names the checkpoint and the variable in a CheckpointError,
    and points at --kind lm when a masked LM is asked of a checkpoint without segment
    embeddings (a GPT's layout).
    """
    import tensorflow as tf
    kind, family = get_kind(kind), get_family(family or 'bert')
    shapes = tf.train.load_checkpoint(checkpoint_path).get_variable_to_shape_map()
    pairs = _checkpoint_pairs(transformer)
    # the other direction too: a config with fewer layers (or a smaller model) than its
    # checkpoint would otherwise load the part it has and silently be another model
    unused = sorted(n for n in set(shapes) - {name for _, name in pairs}
                    if n.startswith(family.scopes) and n != SEGMENT_EMBEDDINGS)
    if unused:
        raise CheckpointError('checkpoint %s has variables its config does not build (%s%s): the '
                              'config (num_hidden_layers=%d) does not describe this checkpoint'
                              % (checkpoint_path, ', '.join(unused[:2]), ', ...' if len(unused) > 2
                                 else '', transformer.num_hidden_layers))
    for weight, name in pairs:
        if name not in shapes:
            hint = ''
            if not kind.causal and name == SEGMENT_EMBEDDINGS:
                hint = ('; it looks like a causal LM (no segment embeddings): '
                        "use --kind lm (kind='lm')")
            raise CheckpointError('checkpoint %s has no variable %s, which a %s needs%s'
                                  % (checkpoint_path, name, kind.title, hint))
        if list(shapes[name]) != list(weight.shape):
            raise CheckpointError('checkpoint %s does not match its config: %s is %s, the model '
                                  'needs %s' % (checkpoint_path, name, list(shapes[name]),
                                                list(weight.shape)))
    try:
        transformer.load_weights_from_checkpoint(checkpoint_path)
    except IndexError as e:  # TensorFlow's answer to a .data file cut short
        raise CheckpointError('checkpoint %s is damaged or incomplete (%s); copy it again'
                              % (checkpoint_path, e)) from None
    except (tf.errors.OpError, ValueError) as e:  # anything the checks above did not foresee
        raise CheckpointError('cannot load checkpoint %s: %s'
                              % (checkpoint_path, str(e).splitlines()[0])) from e


def is_gpt_checkpoint(checkpoint_path: str) -> bool:
    """A BERT-layout checkpoint without segment embeddings: the NEZHA-GPT layout."""
    import tensorflow as tf
    return SEGMENT_EMBEDDINGS not in tf.train.load_checkpoint(checkpoint_path).get_variable_to_shape_map()


def load_gpt_into_bert(transformer, checkpoint_path: str) -> None:
    """Start a BERT from a GPT of the same size: every shared weight, zero segment embeddings.

    With zero segment embeddings the BERT computes the GPT's network without the causal
    mask. Why: measured here, a small GPT learns word order within a few million tokens,
    while a BERT from scratch on the same budget still predicts masked characters from
    the bag of surrounding ones.
    """
    import tensorflow as tf
    reader = tf.train.load_checkpoint(checkpoint_path)
    shapes = reader.get_variable_to_shape_map()
    for weight, name in _checkpoint_pairs(transformer):
        if name == SEGMENT_EMBEDDINGS:
            weight.assign(tf.zeros_like(weight))
        elif name not in shapes or list(shapes[name]) != list(weight.shape):
            raise CheckpointError('checkpoint %s does not fit this BERT: %s is %s, the model needs %s'
                                  % (checkpoint_path, name, shapes.get(name, 'missing'),
                                     list(weight.shape)))
        else:
            weight.assign(reader.get_tensor(name).astype('float32'))


def freeze_all_but_prompts(transformer) -> None:
    """Freeze every layer; the token embedding stays trainable but masked to its prompt rows."""
    for layer in transformer.model.layers:
        layer.trainable = isinstance(layer, PtuningEmbedding)


def split_head(transformer):
    """(encoder, project): the body up to the last hidden states, and the family's own head.

    `project` is the head bert4keras built (`apply_final_layers`: BERT's MLM-Dense/Norm/
    tied embedding/bias, GPT-2's output norm and tied embedding, ...), applied again with
    the same layers to any rows, so the vocabulary projection runs only where needed.
    """
    from tf_keras import Model
    encoder = Model(transformer.model.inputs, transformer.last_hidden)
    return encoder, transformer.apply_final_layers


def gathered_head_model(encoder, project):
    """The training graph: the model's inputs plus the targets; out come the head's
    logits at the targeted positions only (`TargetRows`), for `gathered_crossentropy`.

    `encoder, project` come from `split_head`: every layer and weight is shared with the
    full model, which stays the inference model.
    """
    from tf_keras import Input, Model
    targets = Input(shape=(None,), dtype='int32', name='Targets')
    picked = TargetRows(name='Target-Rows')([encoder.output, targets])
    return Model(list(encoder.inputs) + [targets], project(picked))
