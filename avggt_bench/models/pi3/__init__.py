"""π³ (yyfz233/Pi3), key for key with the official checkpoint."""
