"""MLflow "model from code" file stored with every registered version (see model_package.py).

MLflow executes this file to build the pyfunc (`mlflow models serve`, `mlflow.pyfunc.load_model`),
so it only names the class from the installed package; the exporter and the worker never run it.
"""

import mlflow

from slo_pipeline.adapters.mlflow_pyfunc import DetectorPyfunc

mlflow.models.set_model(DetectorPyfunc())
