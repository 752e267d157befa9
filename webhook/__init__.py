"""The Alertmanager webhook (Flask under gunicorn) and the retrain worker."""
