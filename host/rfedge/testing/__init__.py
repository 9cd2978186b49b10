"""Test doubles and host builds of device code: an emulated ESP ROM serial loader (rom_loader) and
the on-device DSP compiled for the host (device_dsp)."""
