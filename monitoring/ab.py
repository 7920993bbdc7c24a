"""A/B analysis of two model versions on a 50/50 split: one fixed-horizon test, no peeking.

The sample size each arm needs is computed up front from ``monitor.ab`` (alpha, power,
the control rate and the smallest difference worth detecting); until both arms reach it
the analysis says "keep running" and computes no p-value -- stopping the first time a
p-value dips under alpha inflates false positives. Once reached, one test:

* binary outcomes -- ``recall`` (a labelled fraud was sent to review or declined) and
  ``false_alert_rate`` (a genuine payment was) -- a two-proportion z-test (pooled standard
  error), a Wald confidence interval for the difference and Cohen's h;
* ``net_benefit`` per transaction (fraud amount caught minus the review cost of each alert)
  -- Welch's t-test and its Welch-Satterthwaite interval (``scipy.stats.ttest_ind``) and
  Cohen's d.

Outcomes are what each arm served (its logged decisions) on transactions whose labels
have matured. ``python -m monitoring.ab --predictions DIR --labels FILE [--metric ...]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from data.schema import TX_AMOUNT, TX_DATETIME, TX_FRAUD
from fraudops.bundle import APPROVE
from fraudops.config import ABParams, load_params
from fraudops.paths import paths
from monitoring.outputs import EXIT_OK, default_prediction_log_dir, fail, json_ready
from monitoring.performance import matured_predictions, read_labels
from monitoring.window import MODEL_VERSION_COLUMN, MonitoringInputError, read_log

Metric = Literal["recall", "false_alert_rate", "net_benefit"]
BINARY_METRICS = ("recall", "false_alert_rate")


def _z(alpha: float, power: float) -> tuple[float, float]:
    return float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))


def required_sample_size_proportions(
    baseline_rate: float, minimum_detectable_effect: float, alpha: float, power: float
) -> int:
    """Per-arm n for a two-sided two-proportion z-test to detect ``baseline ± effect``.

    n = (z_{1-a/2} sqrt(2 p(1-p)) + z_{power} sqrt(p1(1-p1) + p2(1-p2)))^2 / (p2 - p1)^2,
    p = (p1 + p2) / 2 (Fleiss); the alternative is moved toward 0.5 when ``+`` would leave (0, 1).
    """
    p1 = baseline_rate
    p2 = (
        p1 + minimum_detectable_effect
        if p1 + minimum_detectable_effect < 1
        else p1 - minimum_detectable_effect
    )
    if not 0 < p2 < 1:
        raise ValueError(
            f"monitor.ab.minimum_detectable_effect: {minimum_detectable_effect} leaves no valid "
            f"alternative around baseline_rate {baseline_rate}"
        )
    z_alpha, z_power = _z(alpha, power)
    p_bar = (p1 + p2) / 2
    numerator = (
        z_alpha * math.sqrt(2 * p_bar * (1 - p_bar))
        + z_power * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    ) ** 2
    return math.ceil(numerator / (p2 - p1) ** 2)


def required_sample_size_means(minimum_detectable_d: float, alpha: float, power: float) -> int:
    """Per-arm n for a two-sided two-sample test to detect a standardised effect ``d``.

    n = 2 (z_{1-a/2} + z_{power})^2 / d^2 (normal approximation).
    """
    z_alpha, z_power = _z(alpha, power)
    return math.ceil(2 * (z_alpha + z_power) ** 2 / minimum_detectable_d**2)


@dataclass(frozen=True)
class TestResult:
    """One two-sided test of treatment minus control."""

    test: str
    control_value: float
    treatment_value: float
    difference: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float
    effect_size: float
    effect_size_name: str


def two_proportion_z_test(
    successes_control: int, n_control: int, successes_treatment: int, n_treatment: int, alpha: float
) -> TestResult:
    """Pooled two-proportion z-test, Wald interval of the difference, Cohen's h."""
    if min(n_control, n_treatment) < 1:
        raise ValueError("two_proportion_z_test: each arm needs at least one observation")
    p_c, p_t = successes_control / n_control, successes_treatment / n_treatment
    pooled = (successes_control + successes_treatment) / (n_control + n_treatment)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_control + 1 / n_treatment))
    difference = p_t - p_c
    z = difference / se_pooled if se_pooled > 0 else 0.0
    p_value = math.erfc(abs(z) / math.sqrt(2))  # = 2 * (1 - Phi(|z|))
    se = math.sqrt(p_c * (1 - p_c) / n_control + p_t * (1 - p_t) / n_treatment)
    half = _z(alpha, 0.5)[0] * se
    h = 2 * math.asin(math.sqrt(p_t)) - 2 * math.asin(math.sqrt(p_c))
    return TestResult(
        "two-proportion z-test",
        p_c,
        p_t,
        difference,
        difference - half,
        difference + half,
        z,
        p_value,
        h,
        "Cohen's h",
    )


def welch_t_test(control: np.ndarray, treatment: np.ndarray, alpha: float) -> TestResult:
    """Welch's unequal-variance t-test, Welch-Satterthwaite interval, Cohen's d (pooled SD).

    scipy does the test and the interval; two constant arms (no variance at all) have no
    t statistic, and are reported as no evidence (t 0, p 1, the interval the difference).
    """
    a, b = np.asarray(control, dtype=float), np.asarray(treatment, dtype=float)
    if min(a.size, b.size) < 2:
        raise ValueError("welch_t_test: each arm needs at least two observations")
    var_a, var_b = a.var(ddof=1), b.var(ddof=1)
    difference = float(b.mean() - a.mean())
    if var_a / a.size + var_b / b.size > 0:
        # Treatment first: scipy's statistic and interval are of the first minus the second.
        welch = stats.ttest_ind(b, a, equal_var=False)
        interval = welch.confidence_interval(confidence_level=1 - alpha)
        t, p_value = float(welch.statistic), float(welch.pvalue)
        ci_low, ci_high = float(interval.low), float(interval.high)
    else:
        t, p_value, ci_low, ci_high = 0.0, 1.0, difference, difference
    pooled_sd = math.sqrt(((a.size - 1) * var_a + (b.size - 1) * var_b) / (a.size + b.size - 2))
    d = difference / pooled_sd if pooled_sd > 0 else 0.0
    return TestResult(
        "Welch t-test",
        float(a.mean()),
        float(b.mean()),
        difference,
        ci_low,
        ci_high,
        t,
        p_value,
        d,
        "Cohen's d",
    )


@dataclass(frozen=True)
class ABAnalysis:
    """The plan, the data each arm has, and -- once the plan is met -- the test."""

    metric: str
    control: str
    treatment: str
    required_per_arm: int
    n_control: int
    n_treatment: int
    enough_data: bool
    result: TestResult | None
    significant: bool
    conclusion: str

    def as_dict(self) -> dict:
        """Strict-JSON-ready dict."""
        return json_ready(asdict(self))


def planned_sample_size(metric: Metric, params: ABParams) -> int:
    """Per-arm observations the test needs, fixed before any outcome is looked at."""
    if metric in BINARY_METRICS:
        return required_sample_size_proportions(
            params.baseline_rate, params.minimum_detectable_effect, params.alpha, params.power
        )
    return required_sample_size_means(params.minimum_detectable_d, params.alpha, params.power)


def arm_outcomes(frame: pd.DataFrame, metric: Metric, review_cost: float) -> np.ndarray:
    """Per-observation outcomes of one arm (0/1 for rates, dollars for net benefit)."""
    alerted = frame["decision"].astype(str).to_numpy() != APPROVE
    fraud = frame[TX_FRAUD].to_numpy().astype(bool)
    if metric == "recall":
        return alerted[fraud].astype(float)
    if metric == "false_alert_rate":
        return alerted[~fraud].astype(float)
    amount = frame[TX_AMOUNT].to_numpy(dtype=float)
    return np.where(alerted & fraud, amount, 0.0) - review_cost * alerted


def analyse_ab(
    outcomes: pd.DataFrame,
    control: str,
    treatment: str,
    metric: Metric,
    params: ABParams,
    review_cost: float,
) -> ABAnalysis:
    """Plan first, then (only if the plan is met) one two-sided test of treatment vs control.

    ``outcomes`` holds matured, labelled predictions with ``model_version``, ``decision``,
    ``tx_fraud`` and ``tx_amount``.
    """
    required = planned_sample_size(metric, params)
    versions = outcomes[MODEL_VERSION_COLUMN].astype(str)
    arms = {
        name: arm_outcomes(outcomes[versions == name], metric, review_cost)
        for name in (control, treatment)
    }
    n_c, n_t = arms[control].size, arms[treatment].size
    unit = (
        "labelled frauds"
        if metric == "recall"
        else "genuine payments"
        if metric == "false_alert_rate"
        else "transactions"
    )
    if min(n_c, n_t) < required:
        return ABAnalysis(
            metric,
            control,
            treatment,
            required,
            n_c,
            n_t,
            False,
            None,
            False,
            f"keep the test running: the plan needs {required:,} {unit} per arm, "
            f"have {n_c:,} (v{control}) and {n_t:,} (v{treatment}); no p-value before that",
        )
    if metric in BINARY_METRICS:
        result = two_proportion_z_test(
            int(arms[control].sum()), n_c, int(arms[treatment].sum()), n_t, params.alpha
        )
    else:
        result = welch_t_test(arms[control], arms[treatment], params.alpha)
    significant = result.p_value < params.alpha
    # For false alerts lower is better; for recall and net benefit higher is better.
    better = result.difference < 0 if metric == "false_alert_rate" else result.difference > 0
    if not significant:
        conclusion = (
            f"no significant difference in {metric} (p = {result.p_value:.3g} >= {params.alpha:g})"
        )
    else:
        winner = treatment if better else control
        conclusion = (
            f"v{winner} is better on {metric} (p = {result.p_value:.3g} < {params.alpha:g})"
        )
    return ABAnalysis(
        metric, control, treatment, required, n_c, n_t, True, result, significant, conclusion
    )


def load_outcomes(
    predictions: Path | str, labels: Path, as_of: str | None, delay_days: int
) -> pd.DataFrame:
    """Served decisions joined with matured labels (same maturity rule as the performance job)."""
    label_frame = read_labels(labels)
    if label_frame.empty:
        raise MonitoringInputError(f"{labels}: no labelled transactions")
    now = pd.Timestamp(as_of) if as_of else label_frame[TX_DATETIME].max()
    matured, _ = matured_predictions(
        read_log(predictions), label_frame, now - pd.Timedelta(days=delay_days)
    )
    return matured


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.ab",
        description="A/B analysis of two model versions' served decisions (fixed horizon).",
    )
    parser.add_argument(
        "--predictions", help="prediction-log directory or s3:// URI (default: run/predictions)"
    )
    parser.add_argument("--labels", type=Path, help="labelled transactions (default: data/live)")
    parser.add_argument("--control", help="control model version (default: the older version)")
    parser.add_argument("--treatment", help="treatment model version (default: the newer version)")
    parser.add_argument(
        "--metric", choices=("recall", "false_alert_rate", "net_benefit"), default="recall"
    )
    parser.add_argument("--as-of", help="'now' for label maturity (default: newest labelled tx)")
    parser.add_argument("--json", action="store_true", help="print the analysis as JSON")
    return parser


def _default_arms(outcomes: pd.DataFrame) -> tuple[str, str]:
    versions = sorted(
        outcomes[MODEL_VERSION_COLUMN].astype(str).unique(), key=lambda v: (len(v), v)
    )
    if len(versions) != 2:
        raise MonitoringInputError(
            f"model_version: an A/B split needs exactly two versions in the log, found "
            f"{len(versions)} ({', '.join(versions) or 'none'}); pass --control/--treatment"
        )
    return versions[0], versions[1]


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: prints the plan and (if met) the test; exit 2 on bad input."""
    args = _parser().parse_args(argv)
    try:
        params = load_params()
        outcomes = load_outcomes(
            args.predictions or default_prediction_log_dir(),
            args.labels or paths().live_dir,
            args.as_of,
            params.featurize.label_delay_days,
        )
        control, treatment = (
            (args.control, args.treatment)
            if args.control and args.treatment
            else _default_arms(outcomes)
        )
        analysis = analyse_ab(
            outcomes,
            control,
            treatment,
            args.metric,
            params.monitor.ab,
            params.evaluate.review_cost,
        )
    except Exception as exc:  # noqa: BLE001 -- CLI contract: one line and exit 2, no traceback
        return fail("A/B analysis", exc)
    if args.json:
        print(json.dumps(analysis.as_dict(), indent=2))
        return EXIT_OK
    print(
        f"A/B on {analysis.metric}: control v{analysis.control} vs treatment v{analysis.treatment}"
    )
    print(
        f"plan: {analysis.required_per_arm:,} per arm (alpha {params.monitor.ab.alpha:g}, power "
        f"{params.monitor.ab.power:g}); have {analysis.n_control:,} / {analysis.n_treatment:,}"
    )
    if analysis.result is not None:
        r = analysis.result
        print(
            f"{r.test}: {r.control_value:.4f} -> {r.treatment_value:.4f}, difference "
            f"{r.difference:+.4f} ({1 - params.monitor.ab.alpha:.0%} CI {r.ci_low:+.4f} .. "
            f"{r.ci_high:+.4f}), statistic {r.statistic:.3f}, p = {r.p_value:.3g}, "
            f"{r.effect_size_name} {r.effect_size:+.3f}"
        )
    print(analysis.conclusion)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
