"""Fine-tuned models saved whole: a model directory that reloads to identical predictions."""
import json
import os

import numpy as np
import pytest

from ptuning_tf import (CheckpointError, PromptClassifier, PromptFileError, load_classifier,
                        load_finetuned, save_finetuned, save_prompt)
from ptuning_tf.finetuned import resolve_saved

TEXTS = ['质量很好', '太差了，不会再买', '送货快，价格便宜', '一般']


EXAMPLES = [(t, 1) for t in ('这个东西很好', '质量好价格便宜', '服务很好，推荐')] + \
    [(t, 0) for t in ('太差了', '质量不好，失望', '不会再买了')]


@pytest.fixture(scope='module')
def finetuned(tiny_bert_dir):
    clf = PromptClassifier.build(tiny_bert_dir, mode='finetune', maxlen=32, label_words=('差', '好'))
    clf.fit(EXAMPLES, epochs=1, batch_size=4, learning_rate=1e-2, seed=0, verbose=0)
    return clf


def test_reload_predicts_exactly_what_the_trained_model_did(finetuned, tiny_bert_dir, tmp_path):
    expected = finetuned.predict_proba(TEXTS)
    base = PromptClassifier.build(tiny_bert_dir, mode='finetune', maxlen=32, label_words=('差', '好'))
    assert np.abs(base.predict_proba(TEXTS) - expected).max() > 1e-3  # training moved the weights
    out = save_finetuned(finetuned, str(tmp_path / 'model'))
    assert sorted(os.listdir(out)) == ['bert_model.ckpt.data-00000-of-00001', 'bert_model.ckpt.index',
                                       'checkpoint', 'classifier.json', 'config.json', 'vocab.txt']
    meta = json.load(open(os.path.join(out, 'classifier.json')))
    assert meta['template']['label_words'] == ['差', '好'] and meta['kind'] == 'bert'
    loaded = load_finetuned(out)
    assert loaded.config.mode == 'finetune' and loaded.template.config() == finetuned.template.config()
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), expected, atol=1e-6, rtol=0)
    # the directory is also an ordinary base model
    PromptClassifier.build(out, maxlen=32)


def test_load_classifier_takes_prompt_files_model_dirs_and_train_out_dirs(finetuned, tiny_bert_dir, tmp_path):
    save_finetuned(finetuned, str(tmp_path / 'ft' / 'model'))
    assert resolve_saved(str(tmp_path / 'ft')) == str(tmp_path / 'ft' / 'model')
    assert load_classifier(str(tmp_path / 'ft')).config.mode == 'finetune'
    with pytest.raises(PromptFileError, match='fine-tuned model with its own weights and vocab; drop --model-dir'):
        load_classifier(str(tmp_path / 'ft'), model_dir=tiny_bert_dir)
    prompt = save_prompt(PromptClassifier.build(tiny_bert_dir, maxlen=32), str(tmp_path / 'pt' / 'prompt.npz'))
    assert resolve_saved(str(tmp_path / 'pt')) == prompt
    assert load_classifier(str(tmp_path / 'pt'), model_dir=tiny_bert_dir).config.mode == 'ptuning'
    (tmp_path / 'empty').mkdir()
    with pytest.raises(PromptFileError, match='holds neither a prompt.npz nor a fine-tuned model'):
        load_classifier(str(tmp_path / 'empty'))


def test_only_fine_tuned_models_are_saved_whole(tiny_bert_dir, tmp_path):
    with pytest.raises(PromptFileError, match='use save_prompt'):
        save_finetuned(PromptClassifier.build(tiny_bert_dir, maxlen=32), str(tmp_path / 'm'))
    assert not os.listdir(str(tmp_path))
    with pytest.raises(CheckpointError, match='not a fine-tuned classifier'):
        load_finetuned(tiny_bert_dir)
