"""The SER methods (models and their baselines), built on fastser's ops and nn modules."""
