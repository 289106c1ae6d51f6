"""`ptuning-tf` train/eval/predict on a tiny model: outputs, --help, one-line errors, exit code 2."""
import json
import os

import pytest

from ptuning_tf.cli import build_parser, main

POS = ['这个东西很好', '质量好价格便宜', '服务很好，推荐', '很喜欢，还会再买', '送货快，满意']
NEG = ['太差了', '质量不好，失望', '不会再买了', '价格贵，东西差', '服务太差，不满意']


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('data')
    lines = ['%s\t1' % t for t in POS] + ['%s\t0' % t for t in NEG]
    for name in ('train', 'valid', 'test'):
        (d / ('%s.tsv' % name)).write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return d


@pytest.fixture(scope='module')
def trained(data_dir, tiny_bert_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp('out')
    code = main(['train', '--model-dir', tiny_bert_dir, '--train', str(data_dir / 'train.tsv'),
                 '--valid', str(data_dir / 'valid.tsv'), '--test', str(data_dir / 'test.tsv'),
                 '--labeled-frac', '1', '--epochs', '2', '--batch-size', '4', '--maxlen', '32',
                 '--out', str(out)])
    assert code == 0
    return out


def test_train_writes_prompt_and_metrics(trained):
    metrics = json.load(open(os.path.join(str(trained), 'metrics.json')))
    for key in ('valid_acc', 'test_acc', 'labeled', 'seed', 'seconds'):
        assert key in metrics
    assert metrics['labeled'] == 10 and 0 <= metrics['test_acc'] <= 1
    assert os.path.getsize(os.path.join(str(trained), 'prompt.npz')) < 8 * 1024


def test_eval_and_predict(trained, data_dir, tiny_bert_dir, capsys):
    prompt = os.path.join(str(trained), 'prompt.npz')
    capsys.readouterr()
    assert main(['eval', prompt, '--model-dir', tiny_bert_dir, '--test', str(data_dir / 'test.tsv')]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result['examples'] == 10 and 0 <= result['accuracy'] <= 1
    assert main(['predict', prompt, '--model-dir', tiny_bert_dir, '--text', '很好', '--text', '太差']) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()[-2:]]
    assert [r['text'] for r in rows] == ['很好', '太差']
    assert all(r['label'] in (0, 1) and abs(sum(r['probs']) - 1) < 1e-3 for r in rows)


@pytest.mark.parametrize('command', ['train', 'eval', 'predict', 'pretrain'])
def test_help_documents_every_option(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, '--help'])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        for flag in action.option_strings:
            assert flag in text
        if action.option_strings and action.dest != 'help':
            assert action.help, '%s %s has no help text' % (command, action.option_strings)


def test_missing_data_file_is_a_one_line_error(tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / 'out'
    code = main(['train', '--model-dir', tiny_bert_dir, '--train', str(tmp_path / 'nope.tsv'),
                 '--out', str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and 'nope.tsv' in err[0]
    assert not (out / 'metrics.json').exists() and not (out / 'prompt.npz').exists()


def test_bad_label_word_and_model_dir(tiny_bert_dir, data_dir, tmp_path, capsys):
    args = ['train', '--train', str(data_dir / 'train.tsv'), '--out', str(tmp_path / 'o'), '--maxlen', '32']
    assert main(args + ['--model-dir', tiny_bert_dir, '--label-words', '不,非常']) == 2
    assert 'label word' in capsys.readouterr().err
    assert main(args + ['--model-dir', str(tmp_path / 'none')]) == 2
    assert 'not found' in capsys.readouterr().err


def test_unwritable_output_directory(tiny_bert_dir, data_dir, tmp_path, capsys):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    code = main(['train', '--model-dir', tiny_bert_dir, '--train', str(data_dir / 'train.tsv'),
                 '--out', str(blocker / 'out')])
    assert code == 2 and 'not writable' in capsys.readouterr().err
