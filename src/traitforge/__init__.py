"""traitforge: instil traits into a language model with synthetic data, and measure the result."""

__version__ = "0.1.0"
