"""Detector cards shipped with colliderlab (package data)."""
