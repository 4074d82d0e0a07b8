"""Site stage: complete assets + templates → public/index.html, CSS and JS."""
