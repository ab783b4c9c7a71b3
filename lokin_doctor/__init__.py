"""lokin-doctor: why the LOK IN page says "Impossible de se connecter au serveur", and the fix."""

__version__ = "0.1.0"
