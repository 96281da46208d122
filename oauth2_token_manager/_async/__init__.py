"""The token managers; scripts/unasync.py tells how the two flavours relate."""
