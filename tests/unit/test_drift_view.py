"""The light view of a drift report: plain HTML, what the ZenML dashboard shows (no Evidently needed)."""

from __future__ import annotations

import numpy as np

from fercore.monitoring.drift import ColumnDrift, DriftResult, categorical_distribution, numeric_distribution
from fercore.monitoring.drift_view import drift_pages, histogram_svg, light_html, shares_table


def test_numeric_columns_share_their_bins_and_categories_are_counted():
    d = numeric_distribution(np.array([0.0, 0.0, 1.0]), np.array([1.0, 2.0]), bins=2)
    assert d.labels == ["0", "1", "2"] and d.reference.tolist() == [2, 1] and d.current.tolist() == [0, 2] and d.numeric
    c = categorical_distribution(["sad", "happy", "happy"], ["fear"])
    assert c.labels == ["fear", "happy", "sad"] and c.reference.tolist() == [0, 2, 1] and c.current.tolist() == [1, 0, 0]


def test_bars_are_shares_of_rows_scaled_to_the_tallest():
    svg = histogram_svg(numeric_distribution(np.array([0.0, 0.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0, 0.0]), bins=2),
                        width=200, height=114)
    # reference 0.5 | 0.5, current 0.25 | 0.75: the tallest (0.75) is 100 px high
    assert '<rect x="10.0" y="33.3" width="40.0" height="66.7" fill="#8c8c8c"/>' in svg
    assert '<rect x="50.0" y="66.7" width="40.0" height="33.3" fill="#e8710a"/>' in svg
    assert '<rect x="150.0" y="0.0" width="40.0" height="100.0" fill="#e8710a"/>' in svg
    assert ">0</text>" in svg and ">1</text>" in svg
    table = shares_table(categorical_distribution(["happy", "sad"], ["happy"] * 3 + ["sad"]))
    assert "<tr><td>happy</td><td>50.0%</td><td>75.0%</td></tr>" in table


def test_the_page_says_what_is_compared_the_verdict_and_where_the_whole_report_is():
    result = DriftResult("<html>4 MB of Evidently</html>", 0.4, False, 0.61, True,
                         [ColumnDrift("brightness", "K-S p_value", 0.05, 0.01),
                          ColumnDrift("contrast", "K-S p_value", 0.05, 0.3)],
                         "Reference: 200 faces; current: <new> faces.",
                         {"brightness": numeric_distribution(np.arange(10.0), np.arange(10.0) + 3)})
    page = light_html(result, "Image drift", ("http://127.0.0.1:5000/#/experiments/1/runs/r", "promotion/data_drift.html"))
    assert "<script" not in page and "Evidently</html>" not in page  # light: nothing to run, not the whole report
    assert "<p>Reference: 200 faces; current: &lt;new&gt; faces.</p>" in page
    assert 'Share of drifted columns 0.40: <span class="ok">no drift</span>.' in page
    assert 'ROC AUC 0.610 (drift above 0.55): <span class="drift">drift</span>.' in page
    assert '<td>brightness</td><td>K-S p_value</td><td>0.01</td><td>0.05</td><td class="drift">yes</td>' in page
    assert '<td>contrast</td><td>K-S p_value</td><td>0.3</td><td>0.05</td><td class="ok">no</td>' in page
    assert page.count("<svg") == 1 and "<figcaption>brightness</figcaption>" in page
    assert '<a href="http://127.0.0.1:5000/#/experiments/1/runs/r" target="_blank">promotion/data_drift.html</a>' in page
    data, prediction = drift_pages(result, result, ("A", "B"), "http://x/run", "monitor")
    assert "monitor/data_drift.html in the MLflow run" in data and "monitor/prediction_drift.html in the MLflow run" in prediction
