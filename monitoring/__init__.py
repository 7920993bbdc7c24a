"""Monitoring: is the champion still fit for the traffic it serves?

* ``monitoring.drift`` (``make drift``) -- the drift job: a prediction-log window (or a
  transactions file) against the champion's own training reference sample, judged by
  ``monitoring.drift_analysis`` (Evidently: what counts as drift, which features it names);
* ``monitoring.performance`` -- metrics on predictions whose fraud labels have matured;
* ``monitoring.trigger`` -- on drift: retrain locally or send a GitHub repository_dispatch;
* ``monitoring.canary`` (``make canary``) -- champion vs candidate behind a splitter, verdict
  (``monitoring.canary_policy``: the verdict; ``monitoring.canary_splitter``: the traffic);
* ``monitoring.ab`` -- A/B significance test with the sample size fixed up front.

Shared: ``monitoring.window`` (building the current window), ``monitoring.outputs`` (the
JSON summary / report / exit-code contract, default locations) and ``monitoring.prometheus``
(metrics, with prometheus_client).
Alert rules (``monitoring/alerts``) and dashboards (``monitoring/dashboards``) live beside.
"""
