"""The five SER methods and their baselines, as nn.Modules over feature tensors."""
