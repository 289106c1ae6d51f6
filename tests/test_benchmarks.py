"""`benchmarks/run.py --quick` produces every row of the table (tiny models, seconds per row)."""
import json
import os
import sys

import pytest

from ptuning_tf.data import DataError, shared_dir

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'benchmarks')
RECORD_KEYS = {'method', 'model', 'dataset', 'labeled_frac', 'seeds', 'valid_mean', 'valid_std',
               'test_mean', 'test_std'}


def test_quick_benchmark_produces_every_row(tiny_bert_dir, tiny_gpt_dir, tmp_path):
    try:
        shared_dir()
    except DataError:
        pytest.skip('../shared not available')
    sys.path.insert(0, BENCHMARKS)
    try:
        import accuracy
        import run
        run.main(['--quick', '--eval-limit', '48', '--bert-dir', tiny_bert_dir,
                  '--gpt-dir', tiny_gpt_dir, '--output-dir', str(tmp_path)])
    finally:
        sys.path.remove(BENCHMARKS)
    results = json.load(open(str(tmp_path / 'results.json'), encoding='utf-8'))['sections']
    assert set(results) == {'reference', 'fractions', 'snownlp', 'cross_domain', 'speed'}
    for name, section in results.items():
        assert section['command'].startswith('python ') and section['machine'] and section['date']
        for record in section['records']:
            assert RECORD_KEYS <= set(record) if name != 'speed' else {'metric', 'value', 'unit'} <= set(record)
    methods = {r['method'] for r in results['reference']['records']}
    assert methods == set(accuracy.METHODS)
    protocols = {r['protocol'] for r in results['reference']['records'] if r['method'] == 'bert_ptuning'}
    assert len(protocols) == 2  # random 1% per seed, and the first 1% of the file
    assert {r['dataset'] for r in results['cross_domain']['records']} == {'chnsenticorp', 'waimai'}
    metrics = {r['metric'] for r in results['speed']['records']}
    for metric in ('train_step_ratio_ptuning_vs_finetune', 'predict_throughput_batch1',
                   'predict_throughput_batch64', 'prompt_artifact_size', 'trainable_parameters_ptuning'):
        assert metric in metrics
    markdown = open(str(tmp_path / 'BENCHMARKS.md'), encoding='utf-8').read()
    assert 'BERT + P-tuning' in markdown and os.path.exists(str(tmp_path / 'fractions.png'))
