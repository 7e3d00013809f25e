"""What a team reads after (or during) a study, rewritten whole each time a worker finishes:

    DIR/trials.csv      one row per trial: state, fitness, fitness at each validation, values, time, worker
    DIR/best_hyp.yaml   the base hyperparameters with the best trial's values (python -m detect.train --hyp)
    DIR/best.pt         a link to the best trial's best.pt
    DIR/report.html     optimisation history, learning curves, parameter importances, parallel coordinates
                        (each also a PNG beside it)
    DIR/pareto.csv      with --objectives fitness latency: the trials no other beats on both (the Pareto
                        front), fastest first, and pareto.png (every finished trial, the front marked)
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


def fitness_of(trial) -> float:
    """The trial's fitness: its value, or the first of its two (``--objectives fitness latency``)."""
    return trial.values[0]


def pareto_front(study) -> list:
    """The finished trials no other finished trial beats on both fitness and latency, fastest first; a trial that
    re-drew an earlier trial's values (``duplicate_of``) is that trial's point, listed once."""
    keep = [t for t in study.best_trials if not t.user_attrs.get("surplus") and "duplicate_of" not in t.user_attrs]
    return sorted(keep, key=lambda t: t.values[1])


def write_all(study, tc: TuneConfig) -> dict:
    """Every output; returns the best trial's summary (empty while no trial has finished). With two objectives
    the best is the most accurate trial (it is on the front) and the summary lists the front."""
    trials = reported_trials(study)
    two = len(tc.objectives) == 2
    write_trials_csv(trials, tc.out / "trials.csv", tc.base.epochs, two)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(done, key=fitness_of) if done else None
    front = pareto_front(study) if two and done else []
    if best is not None:
        write_best_hyp(best, tc, tc.out / "best_hyp.yaml")
        link_best(best, tc.out)
    plots = write_plots(study, tc.out, two) if done else []
    if front:
        write_pareto_csv(front, tc.out / "pareto.csv")
        plots.insert(0, (plot_pareto(done, front, tc.out / "pareto.png"), "fitness against CPU latency: the front"))
    write_html(study, tc, best, plots, front)
    if best is None:
        return {}
    summary = {"trial": best.number, "fitness": fitness_of(best), "params": best.params}
    if two:
        summary["pareto"] = [{"trial": t.number, "fitness": t.values[0], "latency_ms": t.values[1]} for t in front]
    return summary


def write_trials_csv(trials, path: Path, epochs: int, latency: bool = False) -> None:
    names = sorted({k for t in trials for k in t.params})
    head = ["number", "state", "fitness", *(["latency_ms"] if latency else []),
            *[f"fitness_epoch{e}" for e in range(1, epochs + 1)], *names,
            "seconds", "worker", "device", "reason", "retry_of", "duplicate_of", "out"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(head)
    for t in trials:
        a = t.user_attrs
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else ""
        values = list(t.values or ()) + [None] * 2
        w.writerow([t.number, t.state.name, _g(values[0]), *([_g(values[1])] if latency else []),
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
    text = (f"# study {tc.study}: trial {best.number}, fitness {fitness_of(best):.4f} "
            f"({tc.out / 'trials' / f'{best.number:04d}'})\n"
            f"# python -m detect.train --hyp {path} ... trains with these; the values the study searched:\n"
            + "".join(f"#   {k}: {v}\n" for k, v in best.params.items()))
    if "img" in options:
        hyp[TRAIN_SECTION] = {"img": options["img"]}
    if "model" in options:
        text += f"# model: {options['model']} (give it as --model)\n"
    if "weights" in options:
        text += f"# weights: {options['weights']} (give it as --weights)\n"
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


def write_pareto_csv(front, path: Path) -> None:
    """The front, fastest first: what each step of latency buys in fitness, and the values behind it."""
    names = sorted({k for t in front for k in t.params})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["number", "fitness", "latency_ms", *names, "out"])
    for t in front:
        w.writerow([t.number, _g(t.values[0]), _g(t.values[1]), *[_g(t.params.get(k)) for k in names],
                    t.user_attrs.get("out", "")])
    atomic_write_text(buf.getvalue(), path)


def plot_pareto(done, front, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([t.values[1] for t in done], [t.values[0] for t in done], c="0.7", s=18, label="finished trials")
    ax.step([t.values[1] for t in front], [t.values[0] for t in front], where="post", c="tab:red", marker="o",
            label="Pareto front")
    for t in front:
        ax.annotate(str(t.number), (t.values[1], t.values[0]), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set(xlabel="ONNX Runtime latency, one CPU thread (ms)", ylabel="fitness (0.1 mAP50 + 0.9 mAP50-95)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plots(study, out: Path, two: bool = False) -> list[tuple[Path, str]]:
    """Optuna's plots; with two objectives each of fitness alone (its learning curves do not exist: no pruning)."""
    made = []
    for name, (fn, caption) in PLOTS.items():
        if two and fn == "plot_intermediate_values":
            continue
        kwargs = {"target": fitness_of, "target_name": "fitness"} if two else {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ExperimentalWarning, and fANOVA's on a constant column
                ax = getattr(optuna.visualization.matplotlib, fn)(study, **kwargs)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(8, 4.5)
            fig.tight_layout()
            fig.savefig(out / name, dpi=100)
            plt.close(fig)
            made.append((out / name, caption))
        except (ValueError, RuntimeError, ZeroDivisionError) as e:  # too few finished trials for this plot
            print(f"report: {name} skipped ({e})")
    return made


def write_html(study, tc: TuneConfig, best, plots, front=()) -> None:
    trials = reported_trials(study)
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    body = [f"<p>{len(trials)} trials ({', '.join(f'{n} {k}' for k, n in states.items() if n)}); "
            f"objectives {', '.join(tc.objectives)}; sampler {tc.sampler}, pruner {tc.pruner}, "
            f"{tc.base.epochs} epochs each at img {tc.base.img}. "
            f"Live view: <code>optuna-dashboard {tc.out / 'study.journal'}</code>.</p>"]
    if front:
        body.append("<h2>Pareto front: no other trial is both more accurate and faster</h2>")
        body.append(table([[t.number, f"{t.values[0]:.4f}", f"{t.values[1]:.2f}",
                            ", ".join(f"{k}={_g(v)}" for k, v in t.params.items())] for t in front],
                          ["trial", "fitness", "latency ms", "values"]))
    if best is not None:
        body.append(f"<h2>Best: trial {best.number}, fitness {fitness_of(best):.4f}</h2>")
        body.append(table([[k, _g(v), _g(tc.base_value(k))] for k, v in best.params.items()], ["key", "best", "base"]))
    for path, caption in plots:
        body += [f"<h2>{caption}</h2>", embed_image(path, "wide")]
    atomic_write_text(page(f"Study {tc.study}", body), tc.out / "report.html")
