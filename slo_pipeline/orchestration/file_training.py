"""Train a detector from a file instead of Prometheus (`slo-pipeline train NAME --input FILE.csv`,
`mlflow run . -e train`): the same snapshot, fit, validation, registration and promotion as the
worker, only the history comes from the file.

A detector the configuration does not name gets the default detector settings, with the step
taken from the file (the median spacing of its rows, as `slo-pipeline backtest` reads it).
"""

from __future__ import annotations

from pathlib import Path

from slo_pipeline.adapters import lake
from slo_pipeline.adapters.lake_rows import block_rows, rows_block
from slo_pipeline.adapters.prometheus import SeriesBlock
from slo_pipeline.adapters.series_files import InputError, read_series_csv
from slo_pipeline.orchestration.retrain import RetrainOutcome, fit_and_judge, training_data
from slo_pipeline.settings import ConfigError, DetectorConfig, Settings


def detector_for_input(settings: Settings, name: str, step_seconds: int, source: Path) -> DetectorConfig:
    """The configured detector `name`, or the defaults with the file's step; a configured step
    that disagrees with the file is an input error (its windows count samples of that step)."""
    try:
        detector = settings.pipeline.detector(name)
    except ConfigError:
        return DetectorConfig(name=name, query=f"(input file {source.name})", step_seconds=step_seconds)
    if detector.step_seconds != step_seconds:
        raise InputError(
            f"{source}: rows are {step_seconds}s apart, but detector {name!r} is configured with a step of "
            f"{detector.step_seconds}s"
        )
    return detector


def train_from_file(settings: Settings, name: str, path: Path) -> RetrainOutcome:
    """The file's rows are merged into the data lake first, then the detector trains on the
    lake slice of the file's range, as the worker trains on Prometheus' range."""
    series = read_series_csv(path)
    detector = detector_for_input(settings, name, series.step_seconds, path)
    if detector.signals:
        raise InputError(f"{path}: detector {name!r} is multivariate; train it from Prometheus")
    start, end = float(series.epoch_seconds[0]), float(series.epoch_seconds[-1])
    file_block = SeriesBlock(
        labels=[{"column": column} for column in series.columns],
        timestamps=series.epoch_seconds,
        values=series.values,
    )
    lake.merge_rows(settings.data_lake, name, block_rows(name, file_block))
    lake_slice = lake.read_slice(settings.data_lake, name, start=start, end=end)
    block = rows_block(lake_slice.rows, start=start, end=end, step_seconds=detector.step_seconds, signals=())
    data = training_data(settings, detector, block, lake_slice, end=end)
    return fit_and_judge(settings, detector, data)
