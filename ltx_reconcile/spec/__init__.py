"""Spec files: what the user asks for, loaded, validated and resolved into `ImageSpec`s."""
