"""Baseline training recipes, written as their users write them, for compare_recipes.py."""
