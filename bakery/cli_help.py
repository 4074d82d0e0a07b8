"""The words of `bakery --help` and each `bakery COMMAND --help`: a one-line summary per
command, real examples, and the doc file to read. Kept apart from cli.py's wiring."""

from __future__ import annotations

# Commands in pipeline order, as `bakery --help` lists them, each with its one line.
PIPELINE = [
    ("generate", "StyleGAN seeds × psi bands → build/raw/example-{ID}.png (or any .pkl with --model)"),
    ("upscale", "waifu2x 2x: build/raw → build/upscaled (or any image or folder with -i/-o)"),
    ("compress", "JPEG: build/upscaled → public/example-{ID}.jpg"),
    ("text", "language-model snippets → build/text/snippet-{ID}.txt"),
    ("site", "publish complete pairs and render public/index.html"),
    ("serve", "preview public/ on http://127.0.0.1:8000/"),
    ("deploy", "sync public/ to S3 (+ CDN purge) and rsync mirrors"),
]
SHORTCUTS = [
    ("bake", "every enabled stage in order: generate → upscale → compress → text → site"),
    ("images", "generate → upscale → compress"),
    ("merge", "the build-shard-I-of-N folders of a --shard bake → build/ and public/"),
]
TOOLS = [
    ("figures", "10×10 contact sheet, labelled truncation sweep and style-mixing grid of a model"),
    ("rank", "score a folder of images with the checkpoint's discriminator → ranks.csv (+ sheet)"),
    ("video", "latent-walk grid, coarse/fine style mixing or circular interpolation → H.264 MP4"),
    ("archive", "move the current generation into public/NAME/ before a new bake"),
    ("mirror-config", "an rsyncd.conf module serving public/ read-only"),
    ("clean", "remove build/ and public/ outputs, keeping archived generations (--archives: those too)"),
]

DOCS = {
    "generate": "docs/images.md", "images": "docs/images.md", "figures": "docs/images.md",
    "video": "docs/video.md",
    "rank": "docs/images.md",
    "upscale": "docs/upscale.md", "compress": "docs/upscale.md", "text": "docs/text.md",
    "site": "docs/config.md", "serve": "README.md", "bake": "README.md",
    "deploy": "docs/deploy.md", "archive": "docs/deploy.md", "mirror-config": "docs/deploy.md",
    "merge": "docs/scale-out.md", "clean": "docs/deploy.md",
}

EXAMPLES = {
    "bake": ["bakery bake                      # content/site.toml → public/",
             "bakery -c other/site.toml bake -q",
             "bakery bake --batch-size 16 --text-batch-size 4",
             "bakery bake --ray                # on a Ray cluster ($RAY_ADDRESS, else a local one)",
             "bakery bake --shard 0/4          # shard 0 of 4 → build-shard-0-of-4/ (then bakery merge)"],
    "images": ["bakery images                    # generate → upscale → compress",
               "bakery images --batch-size 16"],
    "generate": ["bakery generate --model ffhq.pkl --seeds 0-9,20,30-35 --psi 0.7   # no project needed",
                 "bakery generate --model ffhq.pkl --seeds 100-199 --noise seeded --out faces",
                 "bakery generate                  # the [[images.bands]] of content/site.toml"],
    "upscale": ["bakery upscale --in faces --out faces-2x          # any folder of images",
                "bakery upscale -i face.jpg -o face-2x.webp -n -1   # one file; its name gives the format",
                "bakery upscale -i faces -o faces-4x -n 1 -s 4 -f jpg -t 256",
                "bakery upscale                   # build/raw → build/upscaled, per [upscale]"],
    "compress": ["bakery compress                  # build/upscaled → public/*.jpg at [jpeg] quality",
                 "bakery -q compress"],
    "text": ["bakery text                      # snippets for every configured ID",
             "bakery text --text-batch-size 4  # less memory",
             "bakery -v text                   # with the model library's own output"],
    "site": ["bakery site                      # public/index.html, grid.html + the complete pairs",
             "bakery site --allow-empty        # the pages even before anything is baked"],
    "serve": ["bakery serve                     # http://127.0.0.1:8000/",
              "bakery serve --port 0            # any free port",
              "bakery serve --watch             # rebuild the site when content/, templates/ or static/ change"],
    "figures": ["bakery figures --model ffhq.pkl --psi 0.7 --out figures   # no project needed",
                "bakery figures --seed 100        # the configured model, into build/figures",
                "bakery figures --model ffhq.pkl --noise seeded",
                "bakery figures --model ffhq.pkl --rows 85,100,75 --cols 55,821,1789 --styles 0-6   # style mixing"],
    "rank": ["bakery rank --model network-snapshot.pkl --in faces   # faces/ranks.csv, no project needed",
             "bakery rank --model ffhq.pkl --in faces --sheet review.jpg --shuffles 10",
             "bakery rank --model cond.pkl --in faces --class 3   # or a dataset.json in faces/"],
    "video": ["bakery video grid --model ffhq.pkl --seconds 10 --out walk.mp4   # no project needed",
              "bakery video coarse --seed 3 --psi 0.7   # the project's model, into build/videos",
              "bakery video circular --model ffhq.pkl --fps 30 --size 256"],
    "deploy": ["bakery deploy --dry-run          # the plan, nothing changed",
               "bakery deploy s3",
               "bakery deploy rsync"],
    "merge": ["bakery merge build-shard-*-of-4   # all 4 shards → build/ and public/",
              "bakery -q merge build-shard-0-of-2 build-shard-1-of-2   # then: bakery site"],
    "archive": ["bakery archive v1               # public/example-* → public/v1/"],
    "mirror-config": ["bakery mirror-config --module waifus --out /etc/rsyncd.d/waifus.conf",
                      "bakery mirror-config --snippets-tarball"],
    "clean": ["bakery clean                     # what `make clean` runs: archives stay",
              "bakery clean --archives          # what `make distclean` runs: archives too"],
}


def epilog(command: str) -> str:
    lines = ["examples:"] + [f"  {line}" for line in EXAMPLES.get(command, [])]
    if command in DOCS:
        lines += ["", f"read: {DOCS[command]}"]
    return "\n".join(lines)


def overview() -> str:
    """The command list of `bakery --help`, stages first in the order they run."""
    def block(title: str, rows: list[tuple[str, str]]) -> list[str]:
        return [title] + [f"  {name:<14}{line}" for name, line in rows]

    lines = block("stages, in pipeline order:", PIPELINE) + [""] + block("shortcuts:", SHORTCUTS)
    lines += [""] + block("tools:", TOOLS)
    lines += ["", "try a checkpoint without a project:",
              "  bakery generate --model X.pkl --seeds 0-9,20 --psi 0.7 --out out",
              "", "`bakery COMMAND --help` shows examples; README.md and docs/ explain each stage."]
    return "\n".join(lines)


def summary(command: str) -> str:
    return dict(PIPELINE + SHORTCUTS + TOOLS)[command]
