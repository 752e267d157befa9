"""Scoring detections against labelled anomaly windows: NAB's score and event-level metrics."""
