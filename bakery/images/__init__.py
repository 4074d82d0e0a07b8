"""Image stage: NVIDIA StyleGAN checkpoints → build/raw/example-{ID}.png."""
