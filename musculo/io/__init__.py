"""Readers and writers of the file formats musculo exchanges with labs and with OpenSim."""
