"""Object detection with EfficientDet (EfficientDet §3-4): task.py (the Task), anchors.py,
boxes.py, targets.py (labels per anchor), inputs.py (train and eval pipelines), loss.py,
postprocess.py (NMS), metric.py (COCO AP), sources.py, coco_json.py, records.py, convert.py
(data), digit_scenes.py (the demo's data), serving.py and tflite.py (exports, predict)."""

from efficientnet_tf.tasks.detection import serving
from efficientnet_tf.tasks.detection.task import DetectionTask

TASK = DetectionTask
__all__ = ["TASK", "serving"]
