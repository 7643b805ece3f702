"""Cost: what a configuration needs from the hardware, measured on the machine at hand.

Submodules are imported on demand (``from leanrec.cost.hardware import machine_info``) so
that importing this package stays cheap and never pulls in torch or onnxruntime.
"""
