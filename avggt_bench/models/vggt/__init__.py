"""VGGT-1B, key for key with the official checkpoint."""
