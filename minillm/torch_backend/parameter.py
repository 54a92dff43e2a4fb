"""Parameter: torch's own ``nn.Parameter`` (``.data`` and ``.grad``), the same role as
``minillm.reference.Parameter``."""
from torch.nn import Parameter

__all__ = ["Parameter"]
