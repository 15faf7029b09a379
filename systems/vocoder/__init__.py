"""Unit-to-speech models: unit HiFi-GAN generators, the F0 quantizer, discriminators, losses,
checkpoint layouts and training."""
