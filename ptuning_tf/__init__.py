"""ptuning_tf: P-tuning for Chinese few-shot text classification on bert4keras.

Importing this package selects the legacy Keras 2 (tf-keras) that bert4keras needs:
both switches must be set before TensorFlow is imported for the first time, so they
are set here, at the very top, and a TensorFlow already running Keras 3 is refused.
"""
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
    try:
        import tf_keras  # noqa: F401
    except ImportError as e:
        raise ImportError('ptuning_tf needs tf-keras 2.21: ' + INSTALL_HINT) from e


_select_legacy_keras()
_check_bert4keras()

from .checkpoint import CheckpointError  # noqa: E402
from .classifier import ClassifierConfig, PromptClassifier  # noqa: E402
from .data import DataError, few_shot, load_csv, load_dataset, load_split_files, load_tsv  # noqa: E402
from .families import FAMILIES, Family  # noqa: E402
from .kinds import KINDS, LossOptions, TemplateKind  # noqa: E402
from .layers import PtuningEmbedding  # noqa: E402
from .methods import METHODS, FineTune, Method, PTuning, PTuningV2, make_method  # noqa: E402
from .models import BackboneSpec, default_model_dir  # noqa: E402
from .saving import PromptFileError, load, save  # noqa: E402
from .templates import Template, TemplateError, pattern  # noqa: E402
from .training import set_seed  # noqa: E402

__all__ = [
    'BackboneSpec', 'CheckpointError', 'ClassifierConfig', 'DataError', 'FAMILIES', 'Family',
    'FineTune', 'KINDS', 'LossOptions', 'METHODS', 'Method', 'PTuning', 'PTuningV2',
    'PromptClassifier', 'PromptFileError', 'PtuningEmbedding', 'Template', 'TemplateError',
    'TemplateKind', 'default_model_dir', 'few_shot', 'load', 'load_csv', 'load_dataset',
    'load_split_files', 'load_tsv', 'make_method', 'pattern', 'save', 'set_seed',
]
