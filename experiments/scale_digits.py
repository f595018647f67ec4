"""The compound-scaling search's recipe on the bundled digits (efficientnet_tf/demo.py,
scaling_config): efficientnetv2-test, each network at its own resolution, 8 epochs.

    python -m efficientnet_tf.data.digits /tmp/digits
    efficientnet-tf scale-search --config=experiments/scale_digits.py:/tmp/digits \\
        --workdir=runs/scale --grid_step=0.1 --seeds=0,1

(`efficientnet-tf demo scaling --workdir=runs/scale` does both.) Hardware: 2 CPU cores; the
measured time, table and plot are in the README ("Compound scaling search").
"""

from efficientnet_tf.demo import scaling_config


def get_config(root="/tmp/digits"):
    return scaling_config(root)
