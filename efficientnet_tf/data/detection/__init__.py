"""Detection data: anchors, box coding, anchor labeling (EfficientDet, Tan et al. CVPR 2020)."""
