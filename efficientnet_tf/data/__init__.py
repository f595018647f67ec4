"""Sources, preprocessing, augmentation and input pipelines."""
