from setuptools import find_packages, setup

setup(
    name='ptuning_tf',
    version='0.1.0',
    description='P-tuning for Chinese few-shot text classification on bert4keras / TensorFlow',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['ptuning_tf', 'ptuning_tf.*']),
    python_requires='>=3.11',
    # bert4keras==0.11.5 is required too, but its keras<=2.3.1 pin conflicts with TF 2.21:
    # install it with `pip install --no-deps bert4keras==0.11.5` (see README).
    install_requires=['tensorflow==2.21.*', 'tf-keras==2.21.*', 'numpy', 'jieba', 'snownlp',
                      'tqdm', 'matplotlib'],
    extras_require={'test': ['pytest']},
    entry_points={'console_scripts': ['ptuning-tf=ptuning_tf.cli:main']},
)
