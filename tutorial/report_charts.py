"""Inline SVG charts for the run report: no script, no external resource, works offline."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape as _e

from tutorial.report_facts import FeatureShap, PRCurve, Reason

#: One colour per compared model, champion first.
COLOURS = ("#1f5fa8", "#d9731a", "#2e8b57", "#8e44ad")


def pr_curve_svg(curves: Sequence[PRCurve], width: int = 560, height: int = 380) -> str:
    """Precision (y) against recall (x) for each curve, as inline SVG with axes and a legend."""
    left, right, top, bottom = 56, 16, 16, 48
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(recall: float) -> float:
        return left + recall * plot_w

    def y(precision: float) -> float:
        return top + (1 - precision) * plot_h

    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart pr-curve" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            'aria-label="precision-recall curves">'
        )
    ]
    for tick in (0, 0.2, 0.4, 0.6, 0.8, 1.0):
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{top + plot_h}" '
            'class="grid"/>'
            f'<line x1="{left}" y1="{y(tick):.1f}" x2="{left + plot_w}" y2="{y(tick):.1f}" '
            'class="grid"/>'
            f'<text x="{x(tick):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{tick:g}</text>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>'
        )
    parts.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="frame"/>'
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 10}" text-anchor="middle">recall</text>'
        f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" '
        'text-anchor="middle">precision</text>'
    )
    for i, curve in enumerate(curves):
        colour = COLOURS[i % len(COLOURS)]
        # Sorted by recall so the polyline reads left to right.
        points = sorted(zip(curve.recall, curve.precision))
        path = " ".join(f"{x(r):.1f},{y(p):.1f}" for r, p in points)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" '
            f'data-version="{_e(curve.version)}"/>'
        )
        ly = top + 14 + 18 * i
        parts.append(
            f'<line x1="{left + plot_w - 200}" y1="{ly - 4}" x2="{left + plot_w - 180}" '
            f'y2="{ly - 4}" stroke="{colour}" stroke-width="3"/>'
            f'<text x="{left + plot_w - 174}" y="{ly}">{_e(curve.label)} '
            f"(AP {curve.average_precision:.4f})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def contribution_svg(reasons: Sequence[Reason], width: int = 760) -> str:
    """Horizontal bars of each reason's contribution (log-odds) around zero, as inline SVG."""
    label_w, pad, row_h = 300, 12, 30
    height = pad * 2 + row_h * len(reasons) + 24
    bar_area = width - label_w - 2 * pad
    biggest = max((abs(r.contribution) for r in reasons), default=1.0) or 1.0
    zero = label_w + pad + bar_area / 2
    scale = (bar_area / 2 - 64) / biggest  # room for the value label past the longest bar
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart contributions" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            'aria-label="feature contributions to the fraud score">'
        ),
        f'<line x1="{zero:.1f}" y1="{pad}" x2="{zero:.1f}" y2="{height - pad - 18}" class="axis"/>',
    ]
    for i, reason in enumerate(reasons):
        top = pad + i * row_h
        length = abs(reason.contribution) * scale
        start = zero if reason.contribution >= 0 else zero - length
        cls = "raises" if reason.contribution > 0 else "lowers"
        value = "missing" if reason.value is None else f"{reason.value:,.4g}"
        text_x = start + length + 4 if reason.contribution >= 0 else start - 4
        anchor = "start" if reason.contribution >= 0 else "end"
        parts.append(
            f'<text x="{label_w}" y="{top + 19}" text-anchor="end">'
            f"{_e(reason.feature)} = {_e(value)}</text>"
            f'<rect x="{start:.1f}" y="{top + 6}" width="{max(length, 1):.1f}" height="{row_h - 12}" '
            f'class="{cls}"><title>{_e(reason.text)}</title></rect>'
            f'<text x="{text_x:.1f}" y="{top + 19}" text-anchor="{anchor}" class="value">'
            f"{reason.contribution:+.3f}</text>"
        )
    parts.append(
        f'<text x="{zero:.1f}" y="{height - 8}" text-anchor="middle" class="caption">'
        "← lowers risk · contribution to the log-odds · raises risk →</text></svg>"
    )
    return "".join(parts)


def mean_abs_shap_svg(features: Sequence[FeatureShap], units: str, width: int = 760) -> str:
    """Horizontal bars of each feature's mean |SHAP| (largest first, as given), as inline SVG."""
    label_w, pad, row_h = 240, 12, 26
    height = pad * 2 + row_h * len(features) + 24
    start = label_w + pad
    biggest = max((f.mean_abs_shap for f in features), default=1.0) or 1.0
    scale = (width - start - pad - 64) / biggest  # room for the value label past the bar
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart mean-abs-shap" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="mean absolute SHAP value per feature ({_e(units)})">'
        ),
        f'<line x1="{start}" y1="{pad}" x2="{start}" y2="{height - pad - 18}" class="axis"/>',
    ]
    for i, item in enumerate(features):
        top = pad + i * row_h
        length = item.mean_abs_shap * scale
        parts.append(
            f'<text x="{label_w}" y="{top + 17}" text-anchor="end">{_e(item.feature)}</text>'
            f'<rect x="{start}" y="{top + 5}" width="{max(length, 1):.1f}" height="{row_h - 10}" '
            f'class="importance" data-feature="{_e(item.feature)}">'
            f"<title>{_e(item.feature)}: mean |SHAP| {item.mean_abs_shap:.4f} {_e(units)}</title>"
            f'</rect><text x="{start + length + 4:.1f}" y="{top + 17}" class="value">'
            f"{item.mean_abs_shap:.3f}</text>"
        )
    parts.append(
        f'<text x="{start + (width - start) / 2:.1f}" y="{height - 8}" text-anchor="middle" '
        f'class="caption">mean |SHAP value| ({_e(units)}): how far the feature moves the score'
        "</text></svg>"
    )
    return "".join(parts)
