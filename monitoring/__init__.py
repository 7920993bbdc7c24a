"""Monitoring: is the champion still fit for the traffic it serves?

* ``monitoring.drift`` (``make drift``) -- Evidently drift of a prediction-log window (or a
  transactions file) against the champion's own training reference sample;
* ``monitoring.performance`` -- metrics on predictions whose fraud labels have matured;
* ``monitoring.trigger`` -- on drift: retrain locally or send a GitHub repository_dispatch;
* ``monitoring.canary`` (``make canary``) -- champion vs candidate behind a splitter, verdict;
* ``monitoring.ab`` -- A/B significance test with the sample size fixed up front.

Shared: ``monitoring.window`` (building the current window), ``monitoring.outputs`` (the
JSON summary / report / exit-code contract) and ``monitoring.prometheus`` (metrics).
Alert rules (``monitoring/alerts``) and dashboards (``monitoring/dashboards``) live beside.
"""
