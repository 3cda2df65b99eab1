"""Thin views: validate input, call one service, render."""
