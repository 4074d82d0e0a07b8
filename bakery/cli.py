"""`bakery` command line: one subcommand per stage, plus `bake` to run them in order."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import textwrap
from pathlib import Path

from bakery import __version__
from bakery import cli_help
from bakery.config import DEFAULT_CONFIG, load_config
from bakery.errors import BakeryError, ConfigError, StageFailures
from bakery.lock import LOCKED_COMMANDS, locked_command
from bakery.progress import setup_logging
from bakery.redact import redact, redact_log_handlers
from bakery.upscale.config import ENGINES

log = logging.getLogger("bakery")

# subcommand → "module:function"; imported lazily so `bakery site` never loads TensorFlow.
ACTIONS = {
    "generate": "bakery.images.stage:run_generate",
    "upscale": "bakery.upscale.stage:run_upscale",
    "compress": "bakery.upscale.stage:run_compress",
    "text": "bakery.text.stage:run_text",
    "site": "bakery.site.build:run_site",
    "figures": "bakery.images.figures:run_figures",
    "video": "bakery.video.stage:run_video",
    "serve": "bakery.site.serve:run_serve",
    "deploy": "bakery.deploy.run:run_deploy",
    "archive": "bakery.deploy.archive:run_archive",
    "mirror-config": "bakery.deploy.rsync:run_mirror_config",
    "merge": "bakery.scale.merge:run_merge",
    "clean": "bakery.cleanup:run_clean",
}


# The config sections each command reads, validated before it starts (the rest are only
# validated if read): `bakery generate` must not need text prompts, templates or deploy keys.
SECTIONS = {
    "generate": ["images"], "upscale": ["images", "upscale"], "compress": ["images", "jpeg"],
    "images": ["images", "upscale", "jpeg"], "text": ["images", "text"], "site": ["site", "images"],
    "figures": ["images"], "video": ["images"], "serve": [], "deploy": ["deploy"], "archive": ["images"],
    "mirror-config": ["deploy"], "bake": None, "merge": ["images", "upscale", "jpeg", "text"], "clean": [],
}

# The folders each command writes, checked before any work (a read-only or missing-permission
# folder is one line, not a traceback after the first batch).
OUTPUTS = {
    "generate": lambda c: [c.build_dir / "raw"],
    "upscale": lambda c: [c.build_dir / "upscaled"],
    "compress": lambda c: [c.public_dir, c.build_dir / "compress"],
    "images": lambda c: [c.build_dir, c.public_dir],
    "text": lambda c: [c.build_dir / "text"],
    "site": lambda c: [c.public_dir, c.build_dir],
    "bake": lambda c: [c.build_dir, c.public_dir],
    "figures": lambda c: [c.build_dir / "figures"],
    "video": lambda c: [c.build_dir / "videos"],
    "archive": lambda c: [c.public_dir],
    "merge": lambda c: [c.build_dir, c.public_dir],
}


# What to try when a command that has a project-free form finds no config.
QUICK_HINTS = {
    "generate": "bakery generate --model X.pkl --seeds 0-9 --psi 0.7",
    "figures": "bakery figures --model X.pkl",
    "upscale": "bakery upscale --in DIR --out DIR",
    "video": "bakery video grid --model X.pkl",
}


def action(name: str):
    module, func = ACTIONS[name].split(":")
    return getattr(importlib.import_module(module), func)


def run_steps(config, args, steps: list[str]) -> None:
    """Run steps in order; a step whose items partly failed does not stop the later steps
    (they work on what succeeded), but the whole run still exits non-zero at the end."""
    failures: list[StageFailures] = []
    for step in steps:
        try:
            action(step)(config, args)
        except StageFailures as exc:
            log.error("%s: %s", step, exc)
            failures.append(exc)
        except OSError as exc:  # a disk filled up mid-run: one line naming the step and the file
            from bakery.preflight import describe_stage_os_error

            raise BakeryError(describe_stage_os_error(exc, step, OUTPUTS[step](config))) from None
    if failures:
        raise StageFailures("; ".join(str(f) for f in failures))


def run_images(config, args) -> None:
    """generate (build/raw PNGs) → upscale (build/upscaled) → compress (public/ JPEGs)."""
    run_steps(config, args, ["generate", "upscale", "compress"])


def run_bake(config, args) -> None:
    """images (generate → upscale → compress) → text → site, skipping disabled stages."""
    steps = []
    if config.images.enabled:
        steps += ["generate", "upscale", "compress"]
    else:
        log.info("images: disabled in config, skipped")
    if config.text.enabled:
        steps.append("text")
    else:
        log.info("text: disabled in config, skipped")
    if getattr(args, "shard", None) is not None:  # the site is built once, after `bakery merge`
        log.info("site: skipped in a shard (run `bakery merge` and then `bakery site`)")
        return run_steps(config, args, steps)
    run_steps(config, args, steps + ["site"])


def build_parser() -> argparse.ArgumentParser:
    # Global options are accepted before or after the subcommand; the subcommand copies use
    # SUPPRESS so that they never overwrite a value given before the subcommand.
    def global_options(parser: argparse.ArgumentParser, top: bool) -> None:
        parser.add_argument("-c", "--config", type=Path,
                            default=DEFAULT_CONFIG if top else argparse.SUPPRESS,
                            help=f"site config (default: {DEFAULT_CONFIG})")
        parser.add_argument("-q", "--quiet", action="count", default=0 if top else argparse.SUPPRESS,
                            help="less output (no progress bars)")
        parser.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
                            help="more output")

    common = argparse.ArgumentParser(add_help=False)
    global_options(common, top=False)
    parser = argparse.ArgumentParser(prog="bakery", formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Bake and deploy a 'This ___ Does Not Exist' static site.",
                                     epilog=cli_help.overview())
    global_options(parser, top=True)
    parser.add_argument("--version", action="version", version=f"bakery {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str, func) -> argparse.ArgumentParser:
        # No help= here: `bakery --help` lists the commands in pipeline order (cli_help.overview)
        p = sub.add_parser(name, parents=[common], description=textwrap.fill(help, 88),
                           epilog=cli_help.epilog(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func, command_name=name)
        if name in LOCKED_COMMANDS:
            p.add_argument("--wait", action="store_true",
                           help="if another bakery run holds this project, wait for it instead of exiting")
        return p

    p = add("bake", "run every enabled stage in order: images → text → site", run_bake)
    add_image_options(p)
    add_text_options(p)
    add_scale_options(p)
    p = add("images", "render StyleGAN images for the configured psi bands, then upscale and compress",
            run_images)
    add_image_options(p)
    add_scale_options(p)
    p = add("generate", "render StyleGAN images for the configured psi bands into build/raw (no upscaling); "
            "with --model, render any checkpoint's seeds into a folder, no project needed",
            action_runner("generate"))
    add_image_options(p)
    add_scale_options(p)
    add_quick_generate_options(p)
    p = add("upscale", "upscale build/raw PNGs 2x (waifu2x/lanczos) into build/upscaled; "
            "with -i/-o, any image or folder of images with waifu2x", action_runner("upscale"))
    add_quick_upscale_options(p)
    add_scale_options(p, image_batches=True)
    p = add("compress", "JPEG-compress upscaled images into public/example-{ID}.jpg", action_runner("compress"))
    add_scale_options(p, image_batches=True)
    p = add("text", "generate and clean snippets into build/text/snippet-{ID}.txt", action_runner("text"))
    add_text_options(p)
    add_scale_options(p)
    p = add("merge", "merge the build-shard-I-of-N folders of a `--shard I/N` bake into build/ and public/",
            action_runner("merge"))
    p.add_argument("shards", nargs="+", type=Path, metavar="DIR", help="the shard folders, all N of them")
    p = add("site", "render public/index.html with CSS/JS and publish complete ID pairs", action_runner("site"))
    p.add_argument("--allow-empty", action="store_true", help="write the pages even with no pairs to publish")
    p = add("figures", "contact sheet, truncation sweep and style-mixing grid of the configured model (or of "
            "--model, no project needed)", action_runner("figures"))
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: build/figures; with --model: figures)")
    p.add_argument("--seed", type=int, default=0, help="first seed of the figures (default: 0)")
    p.add_argument("--model", default=None, help="a StyleGAN .pkl: draw its figures without a project")
    p.add_argument("--psi", "--trunc", type=float, default=None,
                   help="the contact sheet's psi (default: the first band's; with --model 0.7)")
    p.add_argument("--noise", choices=NOISE_CHOICES, default=None,
                   help="noise mode (default: the first band's; with --model const)")
    add_class_option(p, "the class of every image, for a class-conditional model (default: the first "
                        "band's `class`; with --model required by such a model)")
    add_image_options(p)
    m = p.add_argument_group("style-mixing.png (NVIDIA's style_mixing.py)")
    m.add_argument("--rows", default=None, metavar="SEEDS",
                   help='seeds of the rows, whose W the cells keep, e.g. "85,100,75,458,1500" (default: --seed … +3)')
    m.add_argument("--cols", default=None, metavar="SEEDS",
                   help='seeds of the columns, which give the --styles rows, e.g. "55,821,1789" '
                        "(default: --seed+4 … +8)")
    m.add_argument("--styles", default=None, metavar="W_ROWS",
                   help='W rows taken from the column seeds, e.g. 0-6 (NVIDIA\'s default) or "0,2,4" (default: '
                        "0-3, the coarse styles)")
    p = add("rank", "score a folder of images with a checkpoint's own discriminator (D), NVIDIA's minibatch "
            "conventions; writes ranks.csv, no project needed", None)  # always project-free: quick_path
    add_rank_options(p)
    p = add("video", "latent-walk grid, style-mixing or circular-interpolation video as H.264 MP4 "
            "(of the project's model, or of --model, no project needed)", action_runner("video"))
    from bakery.video.stage import add_video_arguments

    add_video_arguments(p)
    p = add("serve", "preview public/ on a local HTTP server", action_runner("serve"))
    p.add_argument("--watch", action="store_true",
                   help="rebuild the site whenever content/, templates/ or static/ change (as `hugo server`)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=whole_number(0, 65535, "0 picks a free one"), default=8000,
                   help="port (default: %(default)s; 0 picks a free one)")
    p = add("deploy", "publish public/ to the configured targets", action_runner("deploy"))
    p.add_argument("target", nargs="?", default="all", choices=("all", "s3", "rsync"),
                   help="which target (default: all targets in deploy.targets)")
    p.add_argument("--dry-run", "--dryrun", dest="dry_run", action="store_true",
                   help="list each file that would be uploaded, copied or deleted; change nothing")
    p.add_argument("--delete", action=argparse.BooleanOptionalAction, default=None,
                   help="delete remote files that public/ no longer has (default: each target's `delete` key)")
    p.add_argument("--max-deletes", type=whole_number(0), default=None,
                   help="refuse, before changing anything, to delete more than this many files "
                        "(default: each target's `max_deletes`, 1000)")
    p.add_argument("--allow-empty", action="store_true", help="deploy a public/ with no image + snippet pairs")
    p.add_argument("--purge-everything", action="store_true", help="purge the whole CDN cache after the deploy")
    p.add_argument("--trust-state", action="store_true",
                   help="S3: plan from the last complete deploy's state file instead of listing the bucket "
                        "(fast; misses changes others made to the bucket)")
    p = add("archive", "move the current generation into public/NAME/ before baking a new one",
            action_runner("archive"))
    p.add_argument("name", help="version folder name, e.g. v1")
    p = add("mirror-config", "write an rsyncd.conf module serving public/ read-only",
            action_runner("mirror-config"))
    p.add_argument("--module", default=None, help="rsync module name (default: deploy.mirror.module)")
    p.add_argument("--out", type=Path, default=None, help="where to write it (default: build/rsyncd.conf)")
    p.add_argument("--snippets-tarball", action="store_true", help="also write public/snippets.tar.gz (the page's download links "
                        "list it from the next `bakery site`)")
    p = add("clean", "remove the current generation's outputs from build/ and public/; archived "
            "generations (build/archive/NAME/, public/NAME/) are kept", action_runner("clean"))
    p.add_argument("--archives", action="store_true",
                   help="also delete the archived generations (build/archive/, public/NAME/)")
    return parser


def add_image_options(p: argparse.ArgumentParser, help_text: str = "override images.batch_size") -> None:
    p.add_argument("--batch-size", type=int, default=None, help=help_text)


def add_scale_options(p: argparse.ArgumentParser, image_batches: bool = False) -> None:
    """--shard and --ray (docs/scale-out.md)."""
    from bakery.scale.shard import parse_shard

    g = p.add_argument_group("scale-out (docs/scale-out.md)")
    g.add_argument("--shard", type=parse_shard, default=None, metavar="I/N",
                   help="bake only shard I of N (every N-th batch) into build-shard-I-of-N/; then `bakery merge`")
    g.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                   help="run the batches on a Ray cluster (default address: ray.init()'s: $RAY_ADDRESS, "
                        "else a local cluster); needs pip install 'bakery[ray]'")
    if image_batches:  # a shard's upscale and compress take the IDs its generate rendered
        add_image_options(p, "the images batch size (images.batch_size) that decides which IDs a --shard "
                             "owns: give the shard's generate value; the upscale tile batch is "
                             "upscale.batch_size")


def add_text_options(p: argparse.ArgumentParser) -> None:
    # 1 to 1024: the range of the text.*.batch_size keys it overrides
    p.add_argument("--text-batch-size", type=whole_number(1, 1024), default=None,
                   help="override batch_size of every [text.<stage>] table for this run")


NOISE_CHOICES = ("const", "seeded", "random")


def add_quick_generate_options(p: argparse.ArgumentParser) -> None:
    q = p.add_argument_group("without a project (NVIDIA's generate.py conventions)")
    q.add_argument("--model", "--network", default=None,
                   help="a StyleGAN 1/2, stylegan2-ada-pytorch or StyleGAN3 .pkl: render it without a project")
    q.add_argument("--seeds", default=None, help='seed list, e.g. "0-9,20,30-35" (with --model)')
    q.add_argument("--psi", "--trunc", type=float, default=None,
                   help="truncation psi (default: 1, as NVIDIA's; 0.7 is the usual balance)")
    q.add_argument("--noise", "--noise-mode", choices=NOISE_CHOICES, default=None,
                   help="noise inputs: the checkpoint's stored maps, seeded per seed, or fresh (default: const)")
    q.add_argument("--out", "--outdir", type=Path, default=None,
                   help="output folder for seedNNNN.png (default: out)")
    add_class_option(q, "class of every seed, for a class-conditional model (required by one, refused by others)")
    q.add_argument("--translate", default=None, metavar="TX,TY",
                   help="StyleGAN3 only: translate the input layer (NVIDIA's gen_images.py), e.g. 0.3,-0.1")
    q.add_argument("--rotate", type=float, default=None, metavar="DEG",
                   help="StyleGAN3 only: rotate the input layer by DEG degrees (NVIDIA's gen_images.py)")


def add_rank_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--network", required=True,
                   help="a StyleGAN 1/2 TF1 (G, D, Gs) .pkl or a stylegan2-ada-pytorch / StyleGAN3 snapshot with D")
    p.add_argument("-i", "--in", dest="input", type=Path, required=True, help="folder of images (sorted by name)")
    p.add_argument("--out", type=Path, default=None, help="the CSV to write (default: DIR/ranks.csv)")
    p.add_argument("--shuffles", type=int, default=5, help="passes in all: pass 0 in file order, pass p in "
                   "RandomState(seed + p).permutation order (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffled passes (default: %(default)s)")
    p.add_argument("--minibatch", type=int, default=4, help="images per D call; the minibatch-stddev layer "
                   "compares them (default: %(default)s, as NVIDIA trains)")
    add_class_option(p, "class of every image, for a class-conditional model (default: the folder's dataset.json)")
    p.add_argument("--resize", action="store_true",
                   help="resize images of another size to the model's with Pillow's Lanczos (default: an error)")
    p.add_argument("--sheet", type=Path, default=None, help="also draw a contact sheet of the worst and best (.png/.jpg)")
    p.add_argument("--sheet-count", type=int, default=8, help="images per sheet row (default: %(default)s)")
    p.add_argument("--show", type=whole_number(0), default=5,
                   help="how many lowest and highest to print (default: %(default)s)")


def add_class_option(p, help_text: str) -> None:
    p.add_argument("--class", dest="class_index", type=whole_number(0), default=None, metavar="N", help=help_text)


def whole_number(low: int, high: int | None = None, note: str = ""):
    """An argparse type: an int in [low, high], else argparse's one error line naming the
    option (not a traceback from whatever the number reaches: bind() for a port)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or high is not None and value > high:
            span = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"must be a whole number {span}{f' ({note})' if note else ''}, "
                                             f"got {text!r}")
        return value

    return parse


def add_quick_upscale_options(p: argparse.ArgumentParser) -> None:
    q = p.add_argument_group("any image or folder of images (waifu2x-ncnn-vulkan's -i/-o/-n/-s/-f/-t)")
    q.add_argument("-i", "--in", dest="input", type=Path, default=None,
                   help="an image, or a folder of images (png, jpg, webp...)")
    q.add_argument("-o", "--out", dest="output", type=Path, default=None,
                   help="the output image (its extension is its format), or the folder for the outputs")
    q.add_argument("-n", "--noise", default=None, help="denoise level -1 (none), 0, 1, 2, 3 (default: 0)")
    q.add_argument("-s", "--scale", type=int, default=None, help="2, 4, 8, 16 or 32 (repeated 2x passes; default: 2)")
    q.add_argument("-f", "--format", choices=("png", "jpg", "webp"), default=None,
                   help="output format of a folder's images (default: png; one file's comes from -o's name)")
    q.add_argument("-t", "--tile-size", type=int, default=None, metavar="PX",
                   help="tile size in pixels, 0 = auto (512); same result at any size, smaller uses less memory")
    q.add_argument("--engine", choices=ENGINES, default=None,
                   help="waifu2x engine (default: ncnn; see docs/upscale.md)")


def action_runner(name: str):
    return lambda config, args: action(name)(config, args)


def quick_path(args):
    """The project-free form of generate/figures/upscale, or None for the project form."""
    command = getattr(args, "command_name", None)
    if command == "generate":
        if args.model is None:
            given = [flag for flag, value in (("--seeds", args.seeds), ("--psi", args.psi), ("--noise", args.noise),
                                              ("--out", args.out), ("--class", args.class_index),
                                              ("--translate", args.translate), ("--rotate", args.rotate))
                     if value is not None]
            if given:
                raise BakeryError(f"{given[0]} needs --model (without it, seeds, psi and class come from "
                                  "[[images.bands]] in site.toml)")
            return None
        if args.seeds is None:
            raise BakeryError('--model needs --seeds, e.g. --seeds 0-9,20,30-35')
        return lambda: importlib.import_module("bakery.images.quick").run_quick_generate(args)
    if command == "figures" and args.model is not None:
        return lambda: importlib.import_module("bakery.images.figures").run_quick_figures(args)
    if command == "rank":
        return lambda: importlib.import_module("bakery.images.rank").run_rank(args)
    if command == "video" and args.model is not None:
        return lambda: action("video")(None, args)
    if command == "upscale":
        if args.input is None and args.output is None:
            if any(value is not None for value in (args.noise, args.scale, args.format, args.tile_size, args.engine)):
                raise BakeryError("-n/-s/-f/-t/--engine need --in and --out (the project's upscale.noise, "
                                  "upscale.tile_size and upscale.engine are set in site.toml)")
            return None
        if args.input is None or args.output is None:
            raise BakeryError("upscale needs both --in and --out (or neither, for the project's build/raw)")
        return lambda: importlib.import_module("bakery.upscale.folder").run_upscale_folder(args)
    return None


def check_outputs(config, command: str | None) -> None:
    from bakery.preflight import ensure_writable

    for folder in OUTPUTS.get(command, lambda c: [])(config):
        ensure_writable(folder)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(build_parser(), argv)
    args.verbosity = args.verbose - args.quiet
    args.quiet = args.verbosity < 0
    setup_logging(args.verbosity)
    redact_log_handlers(logging.getLogger("bakery"))
    config = None
    try:
        check_batch_size(args)
        quick = quick_path(args)
        if quick is not None:
            quick()
            return 0
        command = getattr(args, "command_name", None)
        if command in QUICK_HINTS and not Path(args.config).exists():
            raise ConfigError(f"{args.config}: config file not found (no project here? try: {QUICK_HINTS[command]})")
        sections = SECTIONS.get(command)
        if getattr(args, "ray", None) is not None and sections is not None:
            sections = [*sections, "ray"]  # [ray] checked before any work
        config = load_config(args.config, sections=sections)
        shard = getattr(args, "shard", None)
        if shard is not None:
            from bakery.scale.shard import shard_config

            config = shard_config(config, shard)
        check_outputs(config, command)
        with locked_command(config, args, argv):
            if shard is not None:
                from bakery.scale.shard import write_shard_manifest

                write_shard_manifest(config, args, shard_stages(config, command))
            args.func(config, args)
    except BakeryError as exc:
        print(f"bakery: error: {redact(exc)}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a folder turned read-only or a disk filled up mid-run
        from bakery.preflight import describe_stage_os_error

        command = getattr(args, "command_name", None)
        print(f"bakery: error: {describe_stage_os_error(exc, command, output_folders(command, args, config))}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bakery: interrupted", file=sys.stderr)
        return 130
    finally:
        if getattr(args, "ray_executor", None) is not None:
            args.ray_executor.close()
    return 0


def check_batch_size(args) -> None:
    """--batch-size, before any work: upscale and compress read it only with --shard, and a
    bake's text stage long after its images."""
    from bakery.images.config import MAX_BATCH

    size = getattr(args, "batch_size", None)
    if size is not None and not 1 <= size <= MAX_BATCH:
        raise BakeryError(f"--batch-size must be between 1 and {MAX_BATCH}, got {size}")


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, except that an option the subcommand does not know is reported with the
    subcommand's usage (`bakery generate --bogus`), not the top-level one."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
        try:  # `bakery --bogus site`: the top-level usage
            before_command = argv.index(unknown[0]) < argv.index(args.command)
        except ValueError:
            before_command = False
        (parser if before_command else subcommands[args.command]).error(
            f"unrecognized arguments: {' '.join(unknown)}")
    return args


def output_folders(command: str | None, args, config) -> list[Path]:
    """The folders `command` writes (for an OSError that names no file): the project's, or the
    project-free forms' --out."""
    if config is None:
        return [Path(p) for p in (getattr(args, "out", None), getattr(args, "output", None)) if p is not None]
    return OUTPUTS.get(command, lambda c: [])(config)


def shard_stages(config, command: str) -> list[str]:
    """The stages a sharded command runs (recorded in shard.json for `bakery merge`)."""
    images = ["generate", "upscale", "compress"]
    if command == "bake":
        return (images if config.images.enabled else []) + (["text"] if config.text.enabled else [])
    return images if command == "images" else [command]
