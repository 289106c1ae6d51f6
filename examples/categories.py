"""Ten product categories from 16 reviews each: P-tuning with two-character label words.

    python examples/categories.py            # the shipped mini masked LM (needs ../shared/data)
    python examples/categories.py --kind lm  # the causal-LM template on the shipped mini LM

online_shopping_10_cats' `cat` column as a 10-class task (the `categories` dataset: a fixed
80/10/10 split), 16 labelled texts a class. The label words have two characters each
(书籍, 平板, 手机, ...): the masked-LM template has two [MASK]s and a class scores the mean
log-probability of its characters; the causal-LM template scores each word as the text's
continuation. Only the eight prompt embeddings learn.
"""
import argparse

from ptuning_tf import PromptClassifier, few_shot, label_words_of, load_dataset

SAMPLES = ['屏幕很清楚，运行速度也快，玩游戏不卡', '房间干净，早餐丰富，前台服务热情', '这本书写得很好，值得一读']


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--kind', default='mlm', choices=['mlm', 'lm'])
    p.add_argument('--model-dir', help='bert4keras-format model (default: the shipped mini model)')
    p.add_argument('--k', type=int, default=16, help='labelled texts a class')
    p.add_argument('--epochs', type=int, default=6)
    args = p.parse_args()

    data = load_dataset('categories')
    labeled = few_shot(data['train'], k=args.k, seed=0)
    valid, test = data['valid'][:1000], data['test']
    words = label_words_of('categories')
    print('%d labelled texts, %d classes (%s); %d valid, %d test'
          % (len(labeled), len(words), ','.join(words), len(valid), len(test)))
    clf = PromptClassifier.build(args.model_dir, kind=args.kind, label_words=words)
    best = clf.fit(labeled, valid, None, epochs=args.epochs, batch_size=32,
                   steps_per_epoch=len(labeled) // 32 * 10, patience=2, log=print, verbose=2)
    print('best epoch %d: valid %.4f, test %.4f' % (best['epoch'], best['valid_acc'], clf.evaluate(test)))
    labels, probs = clf.predict(SAMPLES)
    for text, label, prob in zip(SAMPLES, labels, probs):
        print('%s  ->  %s (%.2f)' % (text, words[label], prob[label]))


if __name__ == '__main__':
    main()
