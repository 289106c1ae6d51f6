"""P-tuning v1 with the paper's prompt encoder: only the encoder trains, and it folds exactly."""
import numpy as np
import pytest

from ptuning_tf import PromptClassifier, load, save
from ptuning_tf.saving import read_saved

TEXTS = ['质量很好', '太差了，不会再买', '送货快，价格便宜', '一般']
EXAMPLES = [(t, 1) for t in ('这个东西很好', '质量好价格便宜', '服务很好，推荐', '送货快，满意')] + \
    [(t, 0) for t in ('太差了', '质量不好，失望', '不会再买了', '价格贵，东西差')]
CASES = [('bert', 'lstm'), ('bert', 'mlp'), ('gpt', 'lstm')]


@pytest.fixture(scope='module', params=CASES, ids=['-'.join(c) for c in CASES])
def trained(request, tiny_bert_dir, tiny_gpt_dir):
    kind, encoder = request.param
    model_dir = tiny_bert_dir if kind == 'bert' else tiny_gpt_dir
    clf = PromptClassifier.build(model_dir, kind=kind, prompt_encoder=encoder, maxlen=32)
    before = {w.name: w.numpy().copy() for w in clf.model.weights}
    rows_before = clf.state()['rows']
    clf.fit(EXAMPLES, epochs=2, batch_size=4, learning_rate=1e-2, verbose=0)
    return clf, model_dir, before, rows_before


def test_only_the_encoder_trains(trained):
    clf, _, before, rows_before = trained
    encoder = {w.name for w in clf.embedding.encoder_weights()}
    assert any('lstm' in n for n in encoder) == (clf.method.prompt_encoder == 'lstm')
    changed = {w.name for w in clf.model.weights if not np.array_equal(w.numpy(), before[w.name])}
    assert changed and changed <= encoder  # the whole embedding matrix E included: unchanged
    assert not np.allclose(clf.state()['rows'], rows_before)


def test_folded_prompt_gives_the_live_outputs(trained, tmp_path):
    clf, model_dir, _, _ = trained
    out = save(clf, str(tmp_path / 'p'))
    meta, arrays, _ = read_saved(out)
    assert meta['config']['method'] == dict(name='ptuning', prompt_encoder=clf.method.prompt_encoder, prompt_init='')
    assert set(arrays) == {'rows'} and arrays['rows'].shape == (8, 32)
    folded = load(out, model_dir)
    assert folded.method.prompt_encoder == 'none'  # inference needs no encoder
    np.testing.assert_array_equal(folded.state()['rows'], clf.state()['rows'])
    np.testing.assert_allclose(folded.predict_proba(TEXTS), clf.predict_proba(TEXTS), atol=1e-6, rtol=0)
    ids = np.array([clf.template.encode(t).token_ids[:8] for t in TEXTS], 'int32')
    inputs = folded.kind.inputs(ids)
    # the tied output projection sees the computed rows too: all logits, not only the label words
    np.testing.assert_allclose(folded.model.predict(inputs, verbose=0),
                               clf.model.predict(inputs, verbose=0), atol=1e-6, rtol=0)


def test_encoded_rows_cannot_be_set(trained):
    clf = trained[0]
    with pytest.raises(ValueError, match="prompt_encoder='none'"):
        clf.set_state(clf.state())
