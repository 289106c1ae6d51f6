"""ptuning_tf: P-tuning for Chinese few-shot text classification on bert4keras.

Importing this package selects the legacy Keras 2 (tf-keras) that bert4keras needs:
both switches must be set before TensorFlow is imported for the first time, so they
are set here, at the very top, and a TensorFlow already running Keras 3 is refused.
"""
import importlib
import importlib.util
import os
import sys

__version__ = '0.1.0'

BERT4KERAS_VERSION = '0.11.5'
INSTALL_HINT = (
    'pip install "tensorflow==2.21.*" "tf-keras==2.21.*" jieba snownlp && '
    'pip install --no-deps bert4keras==%s' % BERT4KERAS_VERSION
)


def _select_legacy_keras() -> None:
    """Make bert4keras and tf.keras agree on Keras 2 before TensorFlow loads."""
    if 'tensorflow' in sys.modules and os.environ.get('TF_USE_LEGACY_KERAS') != '1':
        import tensorflow as tf
        if not tf.keras.__name__.startswith('tf_keras'):
            raise ImportError(
                'ptuning_tf: TensorFlow was imported with Keras 3 active. Import '
                'ptuning_tf before tensorflow, or set TF_USE_LEGACY_KERAS=1 and '
                'TF_KERAS=1 in the environment.'
            )
    os.environ['TF_KERAS'] = '1'
    os.environ['TF_USE_LEGACY_KERAS'] = '1'
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def _check_bert4keras() -> None:
    try:
        import bert4keras
    except ImportError as e:
        raise ImportError(
            'ptuning_tf needs bert4keras %s (its keras<=2.3.1 pin conflicts with '
            'TF 2.21, so install it without dependencies): %s'
            % (BERT4KERAS_VERSION, INSTALL_HINT)
        ) from e
    if getattr(bert4keras, '__version__', None) != BERT4KERAS_VERSION:
        raise ImportError(
            'ptuning_tf needs bert4keras %s, found %s: %s'
            % (BERT4KERAS_VERSION, getattr(bert4keras, '__version__', '?'), INSTALL_HINT)
        )
    if importlib.util.find_spec('tf_keras') is None:  # found, not imported: that loads TensorFlow
        raise ImportError('ptuning_tf needs tf-keras 2.21: ' + INSTALL_HINT)


_select_legacy_keras()
_check_bert4keras()

# The public API, loaded on first use (PEP 562): `import ptuning_tf` alone does not load
# TensorFlow, so the command line answers --help and argument errors at once.
_API = {
    'BackboneSpec': 'models', 'CheckpointError': 'checkpoint', 'ClassifierConfig': 'classifier',
    'DataError': 'data', 'FAMILIES': 'families', 'Family': 'families', 'FineTune': 'methods',
    'KINDS': 'kinds', 'LossOptions': 'kinds', 'METHODS': 'methods', 'Method': 'methods',
    'PTuning': 'methods', 'PTuningV2': 'methods', 'PromptClassifier': 'classifier',
    'PromptFileError': 'saving', 'PtuningEmbedding': 'layers', 'Template': 'templates',
    'TemplateError': 'templates', 'TemplateKind': 'kinds', 'TrainingInterrupted': 'training',
    'default_model_dir': 'models', 'few_shot': 'data', 'label_words_of': 'data', 'load': 'saving',
    'load_csv': 'data',
    'load_dataset': 'data', 'load_split_files': 'data', 'load_tsv': 'data',
    'make_method': 'methods', 'pattern': 'templates', 'save': 'saving', 'set_seed': 'training',
}
__all__ = sorted(_API)


def __getattr__(name):
    if name not in _API:
        raise AttributeError('module %r has no attribute %r' % (__name__, name))
    value = getattr(importlib.import_module('.' + _API[name], __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))
