"""The registry of scaling tables and the block-string grammar."""
