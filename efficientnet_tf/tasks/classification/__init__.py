"""Image classification (V1 §5.2, V2 §5.1): task.py (the Task: settings, model, loss, metrics),
inputs.py (its train and eval pipelines), serving.py (its export and what predict shows)."""

from efficientnet_tf.tasks.classification import serving
from efficientnet_tf.tasks.classification.task import ClassificationTask

TASK = ClassificationTask
__all__ = ["TASK", "serving"]
