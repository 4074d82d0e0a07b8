"""Scale-out: the same bake spread over machines, by static shards (`--shard I/N` + `bakery
merge`) or on a Ray cluster (`--ray [ADDRESS]`); see docs/scale-out.md.

Both reuse each stage's own planning (what is done is skipped, what is broken is redone) and
its batches; only where a batch is computed changes. Results always come back to one
process, which writes them with the stage's atomic writes and manifest records.
"""
