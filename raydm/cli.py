"""The raydm command line: parse, load and validate the config, call one library function."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from raydm import __version__

USAGE_ERROR = 2
RUNTIME_ERROR = 1
INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C


def fail(message: str, code: int) -> None:
    click.echo(f"raydm: error: {message}", err=True)
    sys.exit(code)


def load(path: str, overrides: tuple[str, ...]):
    from raydm.config import ConfigError, load_config

    try:
        return load_config(path, list(overrides))
    except ConfigError as err:
        fail(str(err), USAGE_ERROR)


class _EchoHandler(logging.Handler):
    """Log records as plain lines on the stderr of the moment (click's, under test too)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(record.getMessage(), err=True)


def writable(ctx: click.Context, param: click.Parameter, path: Path | None) -> Path | None:
    """Refuse an output that could not be written, before the command's work (one line)."""
    from raydm.layout import unwritable

    if path is not None:
        directory = Path(path).parent if param.name == "out" else Path(path)  # --out: a file
        if problem := unwritable(directory):
            fail(f"{param.opts[0]} {path}: {problem}", USAGE_ERROR)
    return path


def out_option(what: str):
    path = click.Path(dir_okay=False, path_type=Path)
    return click.option("--out", required=True, type=path, callback=writable, help=what)


set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY.PATH=VALUE",
    help="Override one key of the file, e.g. --set train.epochs=5 (repeatable; values are YAML).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="raydm")
def main() -> None:
    """Hyperparameter search for unsupervised domain adaptation on Ray Tune.

    \b
    Examples:
      raydm tune --space search_spaces/dann.yaml
      raydm train --config results/<experiment>/best.yaml
      raydm report results/<experiment>
    """
    # raydm's own progress (data rendering, downloads) as plain lines on stderr.
    package_log = logging.getLogger("raydm")
    if not any(isinstance(h, _EchoHandler) for h in package_log.handlers):
        package_log.addHandler(_EchoHandler())
        package_log.setLevel(logging.INFO)


@main.command()
@click.option(
    "--space",
    "space",
    required=True,
    type=click.Path(dir_okay=False),
    help="Search-space YAML file (see search_spaces/).",
)
@set_option
@click.option("--name", help="Experiment name (default: method-source-to-target-time).")
@click.option(
    "--storage-path",
    default="results",
    show_default=True,
    help="Where experiments are written: a directory, or s3://bucket/prefix.",
)
@click.option("--address", help="Join this Ray cluster (e.g. auto) instead of starting one.")
@click.option("--resume", is_flag=True, help="Continue the experiment --name where it stopped.")
@click.option(
    "--force-resume",
    is_flag=True,
    help="With --resume: continue even though the search differs from the experiment's.",
)
@click.option("--dry-run", is_flag=True, help="Validate and show what would run; start nothing.")
def tune(space, overrides, name, storage_path, address, resume, force_resume, dry_run) -> None:
    """Search hyperparameters with Optuna (TPE) and ASHA on Ray Tune.

    \b
    Examples:
      raydm tune --space search_spaces/dann.yaml
      raydm tune --space search_spaces/dann.yaml --set search.num_samples=32 --name big
      raydm tune --space search_spaces/dann.yaml --name big --resume
      raydm tune --space search_spaces/cgdm.yaml --dry-run
    """
    if address is None:
        # A local search needs no network, but Ray 2.60 binds its GCS and raylet to the
        # machine's network address even when ray.init is given _node_ip_address="127.0.0.1".
        # Read when Ray is imported, this keeps every process of the search on loopback.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    config = load(space, overrides)
    if dry_run:
        from raydm.plan import dry_run as describe_search

        click.echo(describe_search(config, address))
        return
    if resume and not name:
        fail("--resume needs --name: the experiment to continue", USAGE_ERROR)
    from raydm.cluster import ClusterError, ResourcesError
    from raydm.data.pair import DataError
    from raydm.networks import WeightsError
    from raydm.results import leaderboard
    from raydm.tuning import ExperimentPathError, run_search

    try:
        outcome = run_search(
            config,
            name=name,
            storage_path=storage_path,
            address=address,
            resume=resume,
            force_resume=force_resume,
            echo=click.echo,
        )
    except (DataError, WeightsError, ResourcesError) as err:
        fail(f"{space}: {err}", USAGE_ERROR)
    except ExperimentPathError as err:
        fail(str(err), USAGE_ERROR)
    except ClusterError as err:
        fail(f"--address: {err}", RUNTIME_ERROR)
    click.echo("")
    click.echo(leaderboard(outcome, config))
    click.echo("")
    click.echo(f"experiment: {outcome.experiment_dir}")
    if outcome.unfinished:
        fail(
            f"interrupted with {outcome.unfinished} trials unfinished; the search state is "
            f"saved: continue it with --name {outcome.experiment_dir.name} --resume",
            INTERRUPTED,
        )
    if outcome.best_config is None:
        fail("no trial reported a result; see the trial logs in the experiment", RUNTIME_ERROR)
    click.echo(f"best config: {outcome.experiment_dir / 'best.yaml'}")
    click.echo(f"all trials:  {outcome.experiment_dir / 'results.csv'}")


@main.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="A fixed configuration, e.g. an experiment's best.yaml.",
)
@set_option
@click.option(
    "--seeds",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Train with this many seeds (train.seed, +1, ...) and report mean and sd.",
)
def train(config_path, overrides, seeds) -> None:
    """Train one configuration without a search and print its metrics each epoch, on
    resources.cpu threads as a search's trial (so a best.yaml repeats its trial's figures on
    the same machine); with --seeds N, train it N times and print every final metric's mean
    and standard deviation (the honest way to report a selected configuration).

    \b
    Examples:
      raydm train --config results/<experiment>/best.yaml
      raydm train --config results/<experiment>/best.yaml --seeds 5
    """
    config = load(config_path, overrides)
    if config.params:
        fail(
            f"{config_path}: params: train runs one configuration, but "
            f"{', '.join(config.params)} are still searched; fix them with --set",
            USAGE_ERROR,
        )
    from raydm import engine
    from raydm.data.pair import DataError, load_domain_pair
    from raydm.networks import WeightsError, pretrained_state

    try:  # streamed images are decoded, and can fail, in training too
        data = load_domain_pair(config.data)
        pretrained = pretrained_state(config.model.backbone, config.model.backbone_args)
        engine.use_threads_of(config)
        click.echo(f"platform: {engine.platform(config)}")
        runs = engine.fit_seeds(config, data, seeds, pretrained, click.echo)
    except (DataError, WeightsError) as err:
        fail(f"{config_path}: {err}", USAGE_ERROR)
    click.echo("final metrics:" if seeds == 1 else f"final metrics over {seeds} seeds (mean ± sd):")
    for key, value in engine.summarize_runs(runs).items():
        click.echo(f"  {key}: {value}")


experiment_argument = click.argument("experiment", type=click.Path(path_type=Path))
trial_option = click.option("--trial", help="Use this trial's best kept checkpoint instead.")
epoch_option = click.option("--epoch", type=int, help="With --trial: its checkpoint at this epoch.")


@main.command()
@experiment_argument
@click.option(
    "--images",
    "spec",
    required=True,
    metavar="SPEC",
    help="folder:DIR (images at any depth), list:FILE (an image list) or a domain name.",
)
@out_option("CSV to write.")
@click.option("--probabilities", is_flag=True, help="Add one probability column per class.")
@trial_option
@epoch_option
@click.option(
    "--ensemble",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Average the softmax of the top K kept checkpoints by the search's selector.",
)
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
def predict(experiment, spec, out, probabilities, trial, epoch, ensemble, batch_size) -> None:
    """Label images with the model the search selected (or the top --ensemble K): one row
    per image with the predicted class and its probability.

    \b
    Examples:
      raydm predict results/<experiment> --images folder:~/target --out labels.csv
      raydm predict results/<experiment> --images list:target.txt --out labels.csv --ensemble 3
    """
    from raydm import predict as p

    try:
        selector, candidates = p.kept_candidates(experiment)
        chosen = p.choose(candidates, trial, epoch, ensemble)
        device = p.device()
        models = [p.load_model(candidate.checkpoint, device) for candidate in chosen]
        images = p.read_images(spec, models[0])
        if ensemble > len(chosen):
            click.echo(f"--ensemble {ensemble}: only {len(chosen)} kept checkpoints", err=True)
        described = ", ".join(c.describe() for c in chosen)
        click.echo(f"labelling with {described} ({selector}; {device.type})", err=True)
        with click.progressbar(length=len(images.names), file=sys.stderr, label="images") as bar:
            result = p.predict(models, images, batch_size, on_batch=bar.update)
        p.write_predictions(out, images.names, result, models[0].class_names, probabilities)
    except p.PredictError as err:
        fail(str(err), USAGE_ERROR)
    click.echo(f"wrote {len(images.names)} predictions to {out}", err=True)


@main.command()
@experiment_argument
@out_option("File to write.")
@trial_option
@epoch_option
def export(experiment, out, trial, epoch) -> None:
    """Save the selected model as one torch.export program that plain torch loads, without
    raydm: backbone, classifier and preprocessing, with the class names recorded.

    \b
    Example:
      raydm export results/<experiment> --out model.pt2
    """
    import torch

    from raydm import predict as p
    from raydm.export import export as save

    try:
        _, candidates = p.kept_candidates(experiment)
        (chosen,) = p.choose(candidates, trial, epoch, 1)
        model = p.load_model(chosen.checkpoint, torch.device("cpu"))
    except p.PredictError as err:
        fail(str(err), USAGE_ERROR)
    info = save(model, f"{experiment.name}: {chosen.describe()}", out)
    click.echo(f"wrote {out}: {len(info['class_names'])} classes, input {info['input']}")


@main.command(name="list")
@click.argument("kind", type=click.Choice(["methods", "domains", "backbones", "validators"]))
def list_(kind) -> None:
    """List what exists, one line each, with the options each takes.

    \b
    Examples:
      raydm list methods
      raydm list domains
    """
    from raydm.catalog import describe

    for line in describe(kind):
        click.echo(line)


@main.command()
@click.argument("experiment", type=click.Path(file_okay=False))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for programs.",
)
@click.option(
    "--plots", type=click.Path(file_okay=False), callback=writable, help="Write PNG figures here."
)
def report(experiment, output_format, plots) -> None:
    """Summarise a finished search: the leaderboard, the best config, failed trials with their
    reasons, and for each label-free validator the trial it would pick, that trial's oracle
    accuracy and its rank correlation with oracle accuracy over all trials and epochs.

    \b
    Examples:
      raydm report results/<experiment>
      raydm report results/<experiment> --format json
      raydm report results/<experiment> --plots figures/
    """
    import json

    from raydm import report as reporting
    from raydm.experiment import ReportError, load_experiment
    from raydm.plots import write_plots

    try:
        loaded = load_experiment(experiment)
    except ReportError as err:
        fail(str(err), USAGE_ERROR)
    if output_format == "json":
        click.echo(json.dumps(reporting.to_json(loaded), indent=2, allow_nan=False))
    else:
        click.echo(reporting.render_text(loaded))
    if plots:
        written = write_plots(loaded, plots, on_skip=lambda reason: click.echo(reason, err=True))
        for path in written:
            click.echo(f"wrote {path}", err=output_format == "json")


@main.command()
@click.argument("experiment", type=click.Path(exists=True, file_okay=False))
@click.option("--port", default=6006, show_default=True, help="Port; 0 picks a free one.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on; 0.0.0.0 exposes it to the network.",
)
def board(experiment, port, host) -> None:
    """Start TensorBoard on an experiment: every trial side by side in Scalars (losses, lambda,
    lr, validators, oracle accuracy) and in the HParams tab (searched params, final and best
    metrics), trials ASHA stopped early included.

    \b
    Example:
      raydm board results/<experiment>
    """
    import time

    from tensorboard import program

    server = program.TensorBoard()
    server.configure(argv=[None, "--logdir", experiment, "--host", host, "--port", str(port)])
    try:
        url = server.launch()
    except program.TensorBoardServerException as err:
        fail(f"--port {port}: {err.msg}", RUNTIME_ERROR)
    click.echo(f"TensorBoard on {experiment}: {url} (Ctrl-C stops it)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
