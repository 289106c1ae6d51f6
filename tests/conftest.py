"""Shared fixtures: tiny BERT/GPT checkpoints in the Google/bert4keras format, built here."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ptuning_tf  # noqa: E402,F401  (selects legacy Keras before TensorFlow loads)

TINY_CHARS = list('，。！？、的一是不了很好我有这个在人们说也没来太差满意东西质量服务还可以就'
                  '都和要会到买用书店酒吃快送货价格便宜贵喜欢失望推荐再次下'
                  '籍平板手机水果洗发热蒙牛衣电脑评')  # + the categories' label words


def write_tiny_vocab(path):
    """A vocab in the real Chinese BERT layout: [PAD], [unused1..99], [UNK], [CLS], [SEP], [MASK], chars."""
    tokens = ['[PAD]'] + ['[unused%d]' % i for i in range(1, 100)] + ['[UNK]', '[CLS]', '[SEP]', '[MASK]']
    tokens += TINY_CHARS + [str(d) for d in range(10)] + ['##%d' % d for d in range(10)]
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(tokens) + '\n')
    return path


def tiny_config(vocab_size):
    return {'vocab_size': vocab_size, 'hidden_size': 32, 'num_hidden_layers': 2,
            'num_attention_heads': 2, 'intermediate_size': 64, 'hidden_act': 'gelu',
            'hidden_dropout_prob': 0.0, 'attention_probs_dropout_prob': 0.0,
            'max_position_embeddings': 128, 'type_vocab_size': 2, 'initializer_range': 0.02}


def make_model_dir(out_dir, kind, seed=0, family='bert'):
    """A randomly initialised model written as config.json + bert_model.ckpt + vocab.txt.

    A RoFormer's config names its family (`"model"`), as the pretraining export does.
    """
    import tf_keras as keras
    from ptuning_tf.checkpoint import save_model_dir
    from ptuning_tf.models import build_transformer
    keras.utils.set_random_seed(seed)
    os.makedirs(out_dir, exist_ok=True)
    vocab = write_tiny_vocab(os.path.join(out_dir, 'vocab.src.txt'))
    with open(vocab, encoding='utf-8') as f:
        size = sum(1 for _ in f)
    config = tiny_config(size)
    if family != 'bert':
        config = dict(config, model=family)
    transformer = build_transformer(config, None, kind, trainable_ids=None, family=family)
    model_dir = os.path.join(out_dir, 'model')
    save_model_dir(transformer, model_dir, config, vocab)
    return model_dir


@pytest.fixture(scope='session')
def tiny_tokenizer(tmp_path_factory):
    from bert4keras.tokenizers import Tokenizer
    return Tokenizer(write_tiny_vocab(os.path.join(str(tmp_path_factory.mktemp('vocab')), 'vocab.txt')))


def log_softmax(x):
    """The numpy reference the loss and scoring tests compare against."""
    import numpy as np
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.fixture(scope='session')
def tiny_bert_dir(tmp_path_factory):
    return make_model_dir(str(tmp_path_factory.mktemp('tiny_bert')), 'bert', seed=1)


@pytest.fixture(scope='session')
def tiny_gpt_dir(tmp_path_factory):
    return make_model_dir(str(tmp_path_factory.mktemp('tiny_gpt')), 'gpt', seed=2)


@pytest.fixture(scope='session')
def tiny_roformer_dir(tmp_path_factory):
    return make_model_dir(str(tmp_path_factory.mktemp('tiny_roformer')), 'bert', seed=3,
                          family='roformer')


@pytest.fixture(scope='session')
def tiny_roformer_lm_dir(tmp_path_factory):
    return make_model_dir(str(tmp_path_factory.mktemp('tiny_roformer_lm')), 'gpt', seed=4,
                          family='roformer')


@pytest.fixture
def tiny_examples():
    pos = ['这个东西很好', '质量好价格便宜', '服务很好，推荐', '很喜欢，还会再买', '送货快，满意']
    neg = ['太差了', '质量不好，失望', '不会再买了', '价格贵，东西差', '服务太差，不满意']
    return [(t, 1) for t in pos] + [(t, 0) for t in neg]
