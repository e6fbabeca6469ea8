"""alpaca_train: supervised fine-tuning on Alpaca-style datasets (the Stanford Alpaca recipe)."""
__version__ = "0.1.0"
