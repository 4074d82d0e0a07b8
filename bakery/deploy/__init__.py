"""Deploy stage: public/ → S3 (+ CDN purge) and rsync mirrors."""
