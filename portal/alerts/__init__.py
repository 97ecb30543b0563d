"""Alerts: events into a durable outbox and their delivery with retries (`notifications`),
the e-mail and webhook channels (`channels`), and the Prometheus metrics (`metrics`).
"""
