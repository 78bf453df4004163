"""A light HTML view of a drift report: what the ZenML dashboard shows in its artifact frame.

Evidently's own report is a 4 MB page of JavaScript that the dashboard's small frame left blank for over a minute. This
view is plain HTML with inline SVG histograms (no script, no outside file, a few tens of kB): what is compared, the
verdict, each column's test and its reference and current distributions, and where the whole Evidently report is.
"""

from __future__ import annotations

import html

from fercore.monitoring.drift import EMBEDDING_THRESHOLD, Distribution, DriftResult

REFERENCE, CURRENT = "#8c8c8c", "#e8710a"
STYLE = ("body{font-family:sans-serif;font-size:14px;margin:12px;color:#222}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}.drift{color:#b00020;font-weight:bold}"
         ".ok{color:#1b7a1b}figure{display:inline-block;margin:4px 12px 4px 0}figcaption{font-size:12px}")


def histogram_svg(d: Distribution, width: int = 220, height: int = 90) -> str:
    """Reference (grey) and current (orange) shares per bin, side by side, as an inline SVG, the range below."""
    ref, cur = d.reference / max(d.reference.sum(), 1), d.current / max(d.current.sum(), 1)
    top, step = max(ref.max(initial=0), cur.max(initial=0)) or 1.0, width / max(len(ref), 1)
    bars = []
    for k in range(len(ref)):
        for offset, share, colour in ((0.1, ref[k], REFERENCE), (0.5, cur[k], CURRENT)):
            h = (height - 14) * share / top
            bars.append(f'<rect x="{(k + offset) * step:.1f}" y="{height - 14 - h:.1f}" width="{0.4 * step:.1f}" '
                        f'height="{h:.1f}" fill="{colour}"/>')
    labels = (f'<text x="0" y="{height - 2}" font-size="10">{d.labels[0]}</text>'
              f'<text x="{width}" y="{height - 2}" font-size="10" text-anchor="end">{d.labels[-1]}</text>')
    return f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">{"".join(bars)}{labels}</svg>'


def shares_table(d: Distribution) -> str:
    """A categorical column's share of rows per category, reference against current."""
    ref, cur = d.reference / max(d.reference.sum(), 1), d.current / max(d.current.sum(), 1)
    rows = "".join(f"<tr><td>{html.escape(label)}</td><td>{r:.1%}</td><td>{c:.1%}</td></tr>"
                   for label, r, c in zip(d.labels, ref, cur))
    return f"<table><tr><th>category</th><th>reference</th><th>current</th></tr>{rows}</table>"


def _distribution(column: str, d: Distribution) -> str:
    body = histogram_svg(d) if d.numeric else shares_table(d)
    return f"<figure>{body}<figcaption>{html.escape(column)}</figcaption></figure>"


def _columns_table(result: DriftResult) -> str:
    rows = "".join(f"<tr><td>{html.escape(c.column)}</td><td>{html.escape(c.method)}</td><td>{c.value:.3g}</td>"
                   f"<td>{c.threshold:g}</td><td class=\"{'drift' if c.drifted else 'ok'}\">"
                   f"{'yes' if c.drifted else 'no'}</td></tr>" for c in result.columns)
    return ("<table><tr><th>column</th><th>test</th><th>value</th><th>threshold</th><th>drifted</th></tr>"
            f"{rows}</table>") if rows else ""


def _verdict(result: DriftResult) -> str:
    share = (f"Share of drifted columns {result.drift_share:.2f}: <span class=\"{'drift' if result.dataset_drift else 'ok'}"
             f"\">{'drift' if result.dataset_drift else 'no drift'}</span>.")
    if result.embedding_drift_score is None:
        return share
    return (f"{share} Embeddings: a classifier tells reference from current with ROC AUC "
            f"{result.embedding_drift_score:.3f} (drift above {EMBEDDING_THRESHOLD}): <span class=\""
            f"{'drift' if result.embedding_drift else 'ok'}\">{'drift' if result.embedding_drift else 'no drift'}</span>.")


def light_html(result: DriftResult, title: str, full_report: tuple[str, str] | None = None) -> str:
    """The view of ``result``: ``full_report`` is (link, what it is) of the whole Evidently report."""
    figures = "".join(_distribution(column, d) for column, d in result.distributions.items())
    legend = (f'<p><span style="color:{REFERENCE}">&#9632; reference</span> &nbsp; <span style="color:{CURRENT}">&#9632; '
              "current</span> (share of rows per bin)</p>") if any(d.numeric for d in result.distributions.values()) else ""
    link = (f'<p>The whole Evidently report: <a href="{html.escape(full_report[0])}" target="_blank">'
            f"{html.escape(full_report[1])}</a>.</p>") if full_report else ""
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title><style>{STYLE}</style>"
            f"</head><body><h3>{html.escape(title)}</h3><p>{html.escape(result.about)}</p><p>{_verdict(result)}</p>"
            f"{_columns_table(result)}{legend}{figures}{link}</body></html>")


def drift_pages(data: DriftResult, prediction: DriftResult, titles: tuple[str, str], run_link: str, folder: str
                ) -> tuple[str, str]:
    """The light views of a run's two reports, each linking to its whole Evidently report, logged as
    ``<folder>/data_drift.html`` and ``<folder>/prediction_drift.html`` in the MLflow run at ``run_link``."""
    return tuple(light_html(result, title, (run_link, f"{folder}/{file} in the MLflow run (its Artifacts tab)"))
                 for result, title, file in zip((data, prediction), titles, ("data_drift.html", "prediction_drift.html")))
