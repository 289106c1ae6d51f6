"""Does a pretrained masked LM use word order? Held-out MLM accuracy with the context as is and shuffled.

    python benchmarks/pretrain_probe.py data/models/mini_roformer_mlm [more model dirs] \
        --corpus WORK/corpus.txt --seq-len 128

Every model is scored on the same held-out rows (the pretraining split of `--corpus`,
packed at `--seq-len`, with the masking seed the pretraining evaluation uses). A model
that reads word order loses accuracy when the unmasked tokens of a row are permuted; a
bag-of-words model does not. Prints one JSON line per model.
"""
import argparse
import json
import os
import sys
import tempfile
from dataclasses import fields

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ptuning_tf  # noqa: E402,F401  (selects legacy Keras first)
from ptuning_tf.pretrain import PretrainConfig, Pretrainer  # noqa: E402


def probe(model_dir: str, corpus: str, seq_len: int, rows: int, cache_dir: str) -> dict:
    with open(os.path.join(model_dir, 'PRETRAIN.json')) as f:
        recorded = json.load(f)
    names = {f.name for f in fields(PretrainConfig)}
    config = PretrainConfig(**dict({k: v for k, v in recorded.items() if k in names}, seq_len=seq_len))
    # a fresh work dir per model: a Pretrainer restores any checkpoint it finds there
    work = tempfile.mkdtemp(dir=cache_dir)
    for name in os.listdir(cache_dir):  # but share the packed rows
        if name.startswith('packed_'):
            os.link(os.path.join(cache_dir, name), os.path.join(work, name))
    trainer = Pretrainer(config, os.path.join(model_dir, 'vocab.txt'), corpus, work,
                         init_from=os.path.join(model_dir, 'bert_model.ckpt'))
    for name in os.listdir(work):
        if name.startswith('packed_') and not os.path.exists(os.path.join(cache_dir, name)):
            os.link(os.path.join(work, name), os.path.join(cache_dir, name))
    out = dict(model_dir=model_dir, step=recorded.get('step'), tokens_seen=recorded.get('tokens_seen'),
               seq_len=seq_len, heldout_rows=min(rows, len(trainer.heldout_rows)))
    out.update(trainer.evaluate(rows))
    if config.kind == 'bert':
        shuffled = trainer.evaluate(rows, shuffle_context=True)
        out['shuffled_mlm_acc'] = shuffled['heldout_mlm_acc']
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('model_dirs', nargs='+', help='exported models (with PRETRAIN.json)')
    p.add_argument('--corpus', required=True, help='the pretraining corpus (its held-out split is used)')
    p.add_argument('--seq-len', type=int, default=128)
    p.add_argument('--rows', type=int, default=1000, help='held-out rows to score')
    p.add_argument('--cache-dir', default=os.path.join(tempfile.gettempdir(), 'ptuning_probe'))
    args = p.parse_args(argv)
    os.makedirs(args.cache_dir, exist_ok=True)
    for model_dir in args.model_dirs:
        print(json.dumps(probe(model_dir, args.corpus, args.seq_len, args.rows, args.cache_dir)), flush=True)


if __name__ == '__main__':
    main()
