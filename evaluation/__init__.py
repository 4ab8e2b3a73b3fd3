"""Evaluation of synthetic slides: slides -> crops -> features -> statistics -> metric (pFID, FID, KID, P/R)."""
