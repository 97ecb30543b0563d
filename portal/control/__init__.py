"""Dual control for sensitive credentials: policies (which credentials need what), the gate
(what a person still needs to see a password), four-eyes access requests with break-glass,
check-outs and the rotation owed after them, and the periodic job that closes what expired."""
