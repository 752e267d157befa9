"""Offline tools: backtest replay and evaluation against labels."""
