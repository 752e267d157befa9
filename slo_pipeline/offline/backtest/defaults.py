"""Backtest defaults shared by the argument parser and the run, kept apart so neither imports the other."""

from __future__ import annotations

# Defaults are the production detector's, in samples; see docs/detection.md for the choices.
# The one exception: CSV files (no --detector) are scored at the operating point chosen once on
# the NAB AWS corpus, 1.5 alarms/week (grid 1, 1.5, 2, 3 over five seeds: 53.8, 56.7, 55.2,
# 55.4). A configured detector keeps its own budget (production default: 1/week).
CSV_DEFAULT_BUDGET = 1.5
# Files start cold: NAB's shortest AWS file has 1,243 rows, so its first model sees 186; the
# production minimum (500) would leave it unscored. A configured detector keeps its own minimum.
CSV_DEFAULT_MIN_TRAINING_SAMPLES = 100
# The alert rule for CSV files, in time so that any step works: 2 and 15 samples at NAB's 5-minute
# step (the values chosen there, docs/detection.md); a 1-hour file gets 1 and 2. A configured
# detector or a Prometheus range is replayed with the shipped rule (rules/anomaly.rules.yml).
CSV_DEFAULT_FOR_SECONDS = 600
CSV_DEFAULT_KEEP_FIRING_SECONDS = 4500
# CSV files choose a seasonal baseline at each training where it halves the spread (seasonality.py);
# live detectors opt in, because it makes the exporter fetch a season of history.
CSV_DEFAULT_SEASONALITY = "auto"
# CSV files get the distribution-shift features (spread ratio, spike density); live detectors opt
# in (`windows.shift`), because on a mostly-zero error ratio they cost lead time (docs/detection.md).
CSV_DEFAULT_SHIFT_FEATURES = True
# ...but only where the medium window is short against a day: windows count samples, so at a
# 15-minute step the medium window (30) spans 7.5 h and at 1 hour 30 h, and its spread ratio then
# follows the daily cycle rather than a change of distribution. 3 h keeps them at NAB's 5-minute
# step (2.5 h) and finer; chosen with the resampled AWS sets (docs/detection.md).
CSV_SHIFT_MAX_MEDIUM_SECONDS = 3 * 3600


def csv_shift_features(step_seconds: int, medium_samples: int) -> bool:
    """Whether a CSV file at this step gets the distribution-shift features by default."""
    return CSV_DEFAULT_SHIFT_FEATURES and step_seconds * medium_samples <= CSV_SHIFT_MAX_MEDIUM_SECONDS
