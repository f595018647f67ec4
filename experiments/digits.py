"""The embedded default run: scikit-learn's digits as image files, efficientnetv2-test, progressive
learning over 4 stages (16 -> 40 px with dropout, RandAugment and mixup ramped in step).

    python -m efficientnet_tf.data.digits /tmp/digits
    efficientnet-tf train --config=experiments/digits.py:/tmp/digits --workdir=runs/digits

(`efficientnet-tf demo --workdir=runs/digits` does both.) Hardware: 2 CPU cores, about 2.5
minutes. Measured: 97.5% top-1 on the 161 held-out digits (README, "Default run").
"""

from efficientnet_tf.demo import digits_config


def get_config(root="/tmp/digits"):
    return digits_config(root)
