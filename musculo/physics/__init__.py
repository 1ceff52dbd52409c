"""Differentiable EMG-driven Hill-type muscle model (torch), trial data loading and calibration."""
