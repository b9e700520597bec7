"""Generic OTP-style supervision on pykka (no Tinker imports)."""
