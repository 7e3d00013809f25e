"""What a team reads after (or during) a study, rewritten whole each time a worker finishes:

    DIR/trials.csv      one row per trial: state, fitness, fitness at each validation, values, time, worker
    DIR/best_hyp.yaml   the base hyperparameters with the best trial's values (python -m detect.train --hyp)
    DIR/best.pt         a link to the best trial's best.pt
    DIR/report.html     optimisation history, learning curves, parameter importances, parallel coordinates
                        (each also a PNG beside it)
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import yaml  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from detect.htmldoc import embed_image, page, table  # noqa: E402
from detect.hyp import TRAIN_SECTION  # noqa: E402
from detect.outputs import atomic_write_text  # noqa: E402
from detect.tune.objective import TuneConfig  # noqa: E402
from detect.tune.space import SearchSpace  # noqa: E402

PLOTS = {  # file -> (Optuna's matplotlib plot, what it shows)
    "history.png": ("plot_optimization_history", "fitness of each trial and the best so far"),
    "curves.png": ("plot_intermediate_values", "fitness at each validation: where the pruner stopped trials"),
    "importances.png": ("plot_param_importances", "which values mattered (fANOVA over the finished trials)"),
    "parallel.png": ("plot_parallel_coordinate", "each finished trial's values, coloured by fitness"),
}


def reported_trials(study) -> list:
    """Every trial but those that stood down for starting past --trials (``detect.tune.study.surplus``)."""
    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]


def write_all(study, tc: TuneConfig) -> dict:
    """Every output; returns the best trial's summary (empty while no trial has finished)."""
    trials = reported_trials(study)
    write_trials_csv(trials, tc.out / "trials.csv", tc.base.epochs)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(done, key=lambda t: t.value) if done else None
    if best is not None:
        write_best_hyp(best, tc, tc.out / "best_hyp.yaml")
        link_best(best, tc.out)
    plots = write_plots(study, tc.out) if done else []
    write_html(study, tc, best, plots)
    return {} if best is None else {"trial": best.number, "fitness": best.value, "params": best.params}


def write_trials_csv(trials, path: Path, epochs: int) -> None:
    names = sorted({k for t in trials for k in t.params})
    head = ["number", "state", "fitness", *[f"fitness_epoch{e}" for e in range(1, epochs + 1)], *names,
            "seconds", "worker", "device", "reason", "retry_of", "duplicate_of", "out"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(head)
    for t in trials:
        a = t.user_attrs
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else ""
        w.writerow([t.number, t.state.name, "" if t.value is None else f"{t.value:.6g}",
                    *[_g(t.intermediate_values.get(e)) for e in range(1, epochs + 1)], *[_g(t.params.get(k)) for k in names],
                    f"{seconds:.1f}" if seconds != "" else "", a.get("worker", ""), a.get("device", ""),
                    a.get("fail_reason") or a.get("pruned_reason") or "", a.get("retry_of", ""), a.get("duplicate_of", ""),
                    a.get("out", "")])
    atomic_write_text(buf.getvalue(), path)


def _g(v) -> str:
    return "" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


def write_best_hyp(best, tc: TuneConfig, path: Path) -> None:
    changes, options = SearchSpace.split(best.params)
    hyp = tc.base.hyp.replace(**changes).as_dict()
    text = (f"# study {tc.study}: trial {best.number}, fitness {best.value:.4f} ({tc.out / 'trials' / f'{best.number:04d}'})\n"
            f"# python -m detect.train --hyp {path} ... trains with these; the values the study searched:\n"
            + "".join(f"#   {k}: {v}\n" for k, v in best.params.items()))
    if "img" in options:
        hyp[TRAIN_SECTION] = {"img": options["img"]}
    if "model" in options:
        text += f"# model: {options['model']} (give it as --model)\n"
    atomic_write_text(text + yaml.safe_dump(hyp, sort_keys=False), path)


def link_best(best, out: Path) -> None:
    """DIR/best.pt -> trials/NNNN/weights/best.pt (relative, replaced atomically); skipped where the trial ran
    on another machine and its folder is not here."""
    target = Path(best.user_attrs.get("out", out / "trials" / f"{best.number:04d}")) / "weights" / "best.pt"
    if not target.is_file():
        return
    tmp = out / f".best.pt.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(target.resolve(), out.resolve()))
    os.replace(tmp, out / "best.pt")


def write_plots(study, out: Path) -> list[tuple[Path, str]]:
    made = []
    for name, (fn, caption) in PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ExperimentalWarning, and fANOVA's on a constant column
                ax = getattr(optuna.visualization.matplotlib, fn)(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(8, 4.5)
            fig.tight_layout()
            fig.savefig(out / name, dpi=100)
            plt.close(fig)
            made.append((out / name, caption))
        except (ValueError, RuntimeError, ZeroDivisionError) as e:  # too few finished trials for this plot
            print(f"report: {name} skipped ({e})")
    return made


def write_html(study, tc: TuneConfig, best, plots) -> None:
    trials = reported_trials(study)
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    body = [f"<p>{len(trials)} trials ({', '.join(f'{n} {k}' for k, n in states.items() if n)}); "
            f"sampler {tc.sampler}, pruner {tc.pruner}, {tc.base.epochs} epochs each at img {tc.base.img}. "
            f"Live view: <code>optuna-dashboard {tc.out / 'study.journal'}</code>.</p>"]
    if best is not None:
        body.append(f"<h2>Best: trial {best.number}, fitness {best.value:.4f}</h2>")
        body.append(table([[k, _g(v), _g(getattr(tc.base.hyp, k, tc.base.img if k == "img" else ""))]
                           for k, v in best.params.items()], ["key", "best", "base"]))
    for path, caption in plots:
        body += [f"<h2>{caption}</h2>", embed_image(path, "wide")]
    atomic_write_text(page(f"Study {tc.study}", body), tc.out / "report.html")
