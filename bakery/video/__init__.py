"""`bakery video`: latent walks, style mixing and circular interpolation as H.264 MP4 videos."""
