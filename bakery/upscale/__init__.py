"""Upscale and compress stage: build/raw PNGs → waifu2x 2x → public/example-{ID}.jpg."""
