"""Text stage: language-model snippets → build/text/snippet-{ID}.txt."""
