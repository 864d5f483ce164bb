"""The Shapes model: a small Stable-Diffusion-shaped model of our own, trained on drawn shapes with exact captions."""
